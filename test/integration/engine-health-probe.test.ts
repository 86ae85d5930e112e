/**
 * The instance manager's periodic /health probe of its engine (VllmEngine.probeHealth, every
 * timeouts.engineHealth.intervalMs) goes over the lean HTTP/1.1 client's kept-alive connection as the engine's other
 * small calls: true on 200, false on another status or no answer within its deadline, and a few hundred us of CPU
 * per probe (fetch: ~700 us, this process's side of a local server included).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VllmEngine, type ProcessEngineSpec } from '../../src/engine/vllm.ts';

let server: Server;
let status = 200;
let hang = false;
let engine: VllmEngine;

beforeAll(async () => {
  server = createServer((_req, res) => {
    if (hang) return;
    res.writeHead(status);
    res.end('');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  engine = new VllmEngine({ host: '127.0.0.1', port: (server.address() as AddressInfo).port } as ProcessEngineSpec);
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('the engine health probe', () => {
  it('answers by the status within its deadline, at a few hundred us of CPU per probe', async () => {
    expect(await engine.probeHealth(1000)).toBe(true);
    status = 503;
    expect(await engine.probeHealth(1000)).toBe(false);
    status = 200;
    for (let i = 0; i < 50; i++) expect(await engine.probeHealth(1000)).toBe(true);
    const N = 400;
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) await engine.probeHealth(1000);
    const c = process.cpuUsage(c0);
    const usPerProbe = (c.user + c.system) / N;
    console.log(`health probe: ${usPerProbe.toFixed(0)} us of CPU per probe (this process: the client and the local server)`);
    expect(usPerProbe).toBeLessThan(400); // fetch: ~700 us
    hang = true;
    const t0 = Date.now();
    expect(await engine.probeHealth(300)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1500);
  });
});
