/**
 * The emulated GPU backend over a stand-in emulator (node:http): reads that overlap share one GET of
 * /admin/gpu (the instance manager reads power and energy together every second), a read after them asks
 * again, the calls go over one kept-alive connection, and a server that does not answer is a
 * GpuTransportError at the backend's deadline.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatedGpuControl } from '../../src/gpu/emulated.ts';
import { GpuTransportError } from '../../src/gpu/errors.ts';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** A stand-in emulator: GET /admin/gpu answers with energy growing by 1000 mJ per GET. */
async function emulator(o: { silent?: boolean } = {}): Promise<{ url: string; gets: () => number; posts: () => number; connections: () => number }> {
  let gets = 0, posts = 0, connections = 0;
  server = createServer((req, res) => {
    if (o.silent && req.url === '/admin/gpu' && gets > 0) return; // never answers after the first
    if (req.method === 'GET' && req.url === '/admin/gpu') {
      gets++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ gpuCount: 2, supportedClocksMhz: [1000, 1980], clockMhz: 1980, lockedMinMhz: null, lockedMaxMhz: null, maxClockMhz: 1980, powerMw: [100_000, 200_000], energyMj: [1000 * gets, 2000 * gets] }));
      return;
    }
    posts++;
    req.resume();
    req.on('end', () => res.end());
  });
  server.on('connection', (_s: Socket) => {
    connections++;
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, gets: () => gets, posts: () => posts, connections: () => connections };
}

describe('EmulatedGpuControl', () => {
  it('power and energy read together cost one GET; the next read asks again; one kept-alive connection', async () => {
    const e = await emulator();
    const gpu = await EmulatedGpuControl.open({ backend: 'emulated', gpuIds: [1], emulatorUrl: e.url });
    const g0 = e.gets();
    const [p, en] = await Promise.all([gpu.readPowerMw(), gpu.readEnergyMj()]);
    expect(e.gets() - g0).toBe(1);
    expect(p).toEqual([200_000]);
    expect(en).toEqual([2000 * e.gets()]);
    // not a cache: a read after that one is answered by a new GET with the emulator's new figures
    const en2 = await gpu.readEnergyMj();
    expect(e.gets() - g0).toBe(2);
    expect(en2).toEqual([2000 * e.gets()]);
    await gpu.lockClocks(1000, 1980);
    expect(e.posts()).toBeGreaterThanOrEqual(2); // the reset at open, the lock
    expect(e.connections()).toBe(1);
    await gpu.close();
  });

  it('a server that stops answering is a GpuTransportError at the deadline; the read after it asks again', async () => {
    const e = await emulator({ silent: true });
    const gpu = await EmulatedGpuControl.open({ backend: 'emulated', gpuIds: [0], emulatorUrl: e.url, timeoutMs: 300, resetOnStart: false });
    const t0 = Date.now();
    const err = await gpu.readPowerMw().then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(GpuTransportError);
    expect((err as Error).message).toContain('no answer within 300 ms');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    // the failed read is not shared with the next one
    const again = await gpu.readPowerMw().then(() => null, (x: unknown) => x);
    expect(again).toBeInstanceOf(GpuTransportError);
    await gpu.close();
  });
});
