/**
 * Liveness apart from readiness, on real actor processes (`dynamollm actor`, the path the systemd units and
 * the k8s manifests use) against a real nats-server: credentials from the environment (NATS_URL, NATS_USER,
 * NATS_PASSWORD); /readyz answers 200 only when the actor can work; a NATS outage makes it unready but never
 * fails /livez (a restart would not help). The gateway is unready while the cluster has no ready instance.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import type { Role } from '../../protocols/permissions.ts';
import { freePort } from '../helpers/net.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';

let nats: TestNats;
let cfgPath: string;
const procs: ChildProcess[] = [];
let clusterHealth: string;
let gatewayBase: string;

function start(kind: string, id: string, role: string, extra: string[]): ChildProcess {
  const p = spawn(process.execPath, launchArgs(kind, ['--id', id, '--config', cfgPath, ...extra]), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', NATS_URL: nats.url, NATS_USER: role, NATS_PASSWORD: nats.creds(role as Role).pass },
  });
  procs.push(p);
  return p;
}

async function probe(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  } catch {
    return { status: 0, body: {} };
  }
}

async function until(url: string, status: number, ms = 30_000): Promise<Record<string, unknown>> {
  const end = Date.now() + ms;
  let last = { status: 0, body: {} as Record<string, unknown> };
  while (Date.now() < end) {
    last = await probe(url);
    if (last.status === status) return last.body;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url}: wanted ${status}, last ${last.status} ${JSON.stringify(last.body)}`);
}

beforeAll(async () => {
  nats = await startNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'dyn-health-'));
  cfgPath = join(dir, 'cluster.json');
  // no nats section: the URL and the credentials come from the environment only
  writeFileSync(cfgPath, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 }, gateway: { port: 0 } }));
  const [hp, gp] = [await freePort(), await freePort()];
  clusterHealth = `http://127.0.0.1:${hp}`;
  gatewayBase = `http://127.0.0.1:${gp}`;
  start('cluster', 'cm-h', 'cluster', ['--health', `127.0.0.1:${hp}`]);
  start('gateway', 'gw-h', 'gateway', ['--set', `port=${gp}`, '--set', 'host=127.0.0.1']);
});

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await nats?.stop();
});

describe('health endpoints', () => {
  it('a manager started with credentials from the environment gets ready; /livez and /readyz answer', async () => {
    const ready = await until(`${clusterHealth}/readyz`, 200);
    expect(ready).toMatchObject({ live: true, ready: true, state: 'running', nats: 'connected', kind: 'cluster', id: 'cm-h' });
    expect((await probe(`${clusterHealth}/livez`)).status).toBe(200);
    expect((await probe(`${clusterHealth}/other`)).status).toBe(404);
  });

  it('the gateway is alive but not ready while no instance can serve', async () => {
    await until(`${gatewayBase}/livez`, 200);
    // unready throughout; once the cluster leader answers, the reason is the missing instance
    const end = Date.now() + 30_000;
    let r = await probe(`${gatewayBase}/readyz`);
    while (r.body.reason !== 'no ready instance in the cluster' && Date.now() < end) {
      expect(r.status).toBe(503);
      await new Promise((res) => setTimeout(res, 200));
      r = await probe(`${gatewayBase}/readyz`);
    }
    expect(r.status).toBe(503);
    expect(r.body.reason).toBe('no ready instance in the cluster');
  });

  it('a NATS outage makes the actors unready, never dead', async () => {
    await nats.stop();
    const m = await until(`${clusterHealth}/readyz`, 503);
    expect(m.reason).toBe('NATS disconnected');
    expect((await probe(`${clusterHealth}/livez`)).status).toBe(200);
    const g = await until(`${gatewayBase}/readyz`, 503);
    expect(g.nats).toBe('disconnected');
    expect((await probe(`${gatewayBase}/livez`)).status).toBe(200);
  });
});
