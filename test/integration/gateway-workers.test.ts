/**
 * Gateway worker processes behind one address (`gateway.workers`, src/runtime/workers.ts), on a real
 * `dynamollm actor gateway` process against a real nats-server: with 2 workers both serve the port (each a
 * replica with its own id, x-dynamollm-gateway), both hold their own NATS connection (their /livez says
 * connected), /metrics on any worker counts what every worker served (the primary aggregates their
 * registries), the cluster's request series once (from the instances' request counts in their telemetry, monotonic
 * across an instance's restart; the records on the wire read by no worker), and each worker's data plane (gateway.dataPlane auto: native where dist/native/relay.so is built), a
 * SIGKILLed worker leaves the port serving and is restarted, and SIGTERM drains them all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { descendants, killTree, suitePids } from '../helpers/procs.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';
import { subjects } from '../../protocols/subjects.ts';
import { InstanceTelemetry, RequestRecord } from '../../protocols/messages.ts';

let nats: TestNats;
let gw: ChildProcess;
let port: number;
/** /livez answers the test got, by status code (every one was counted by the worker that gave it). */
const livezAnswered = new Map<number, number>();

/** GET /livez on a fresh connection (no keep-alive: the primary hands out connections, not requests). */
function livez(): Promise<{ status: number; replica: string; nats: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/livez', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        let nats = '';
        try {
          nats = String((JSON.parse(body) as { nats?: string }).nats);
        } catch {
          // not JSON
        }
        livezAnswered.set(res.statusCode ?? 0, (livezAnswered.get(res.statusCode ?? 0) ?? 0) + 1);
        resolve({ status: res.statusCode ?? 0, replica: String(res.headers['x-dynamollm-gateway'] ?? ''), nats });
      });
    });
    req.on('error', () => resolve({ status: 0, replica: '', nats: '' }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** GET `path` on a fresh connection. */
function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}

/** Replica ids seen answering 200 with NATS connected over `n` fresh connections; failures counted. */
async function sample(n: number): Promise<{ ids: Set<string>; failed: number; seen: string[] }> {
  const ids = new Set<string>();
  const seen: string[] = [];
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const r = await livez();
    seen.push(`${r.status}:${r.replica}:${r.nats}`);
    if (r.status === 200 && r.nats === 'connected') ids.add(r.replica);
    else failed++;
  }
  return { ids, failed, seen };
}

async function until<T>(f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out; last sample ${JSON.stringify((await sample(4)).seen)}, processes ${JSON.stringify([...descendants([gw.pid!])])}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** the worker processes: forked with the primary's command line (tsx's esbuild service is a descendant too). */
const workerPids = () => suitePids([gw.pid!], 'actor gateway').filter((p) => p !== gw.pid);

beforeAll(async () => {
  nats = await startNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'dyn-gw-workers-'));
  const cfg = join(dir, 'cluster.json');
  port = await freePort();
  writeFileSync(cfg, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port, workers: 2 } }));
  gw = spawn(process.execPath, launchArgs('gateway', ['--id', 'gw-k', '--config', cfg]), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', NATS_URL: nats.url, NATS_USER: 'gateway', NATS_PASSWORD: nats.creds('gateway').pass },
  });
}, 30_000);

afterAll(async () => {
  if (gw?.pid) killTree([gw.pid]);
  await nats?.stop();
});

describe('gateway workers', () => {
  it('two workers serve one port, each its own replica with its own NATS connection', async () => {
    const ids = await until(async () => {
      const s = await sample(12);
      return s.ids.size === 2 ? s.ids : undefined;
    });
    expect([...ids].sort()).toEqual(['gw-k-w0', 'gw-k-w1']);
    expect(workerPids()).toHaveLength(2);
  }, 90_000);

  it('/metrics on any worker counts what every worker served', async () => {
    for (let k = 0; k < 4; k++) {
      const text = await get('/metrics');
      expect(text.status).toBe(200);
      // each answered /livez was counted by the one worker that answered it: the sum over the workers
      for (const [code, n] of livezAnswered) {
        const m = new RegExp(`^dynamollm_gateway_http_requests_total\\{route="/livez",code="${code}"\\} (\\S+)$`, 'm').exec(text.body);
        expect(Number(m?.[1]), `code ${code}: ${text.body.split('\n').filter((l) => l.includes('/livez')).join(' | ')}`).toBe(n);
      }
      // one process series per replica, not one per worker
      expect(text.body.match(/^# TYPE dynamollm_gateway_http_requests_total /gm)).toHaveLength(1);
      // gateway.dataPlane auto (the default): each worker loaded the native plane `npm run build` built, or stayed on js without it
      expect(text.body).toMatch(new RegExp(`^dynamollm_gateway_data_plane\\{plane="${existsSync('dist/native/relay.so') ? 'native' : 'js'}"\\} 2$`, 'm'));
      expect(text.body).toMatch(/^dynamollm_gateway_native_spans_total 0$/m);
    }
  }, 60_000);

  it('a killed worker leaves the port serving and is restarted', async () => {
    const before = workerPids();
    process.kill(before[0]!, 'SIGKILL');
    // once the primary has forked its successor (so it took the dead one out of its rotation), the port keeps
    // answering through the other worker while the new one starts
    await until(async () => (workerPids().some((p) => !before.includes(p)) ? true : undefined));
    const during = await sample(10);
    expect(during.seen.filter((x) => !x.startsWith('200:'))).toEqual([]);
    const ids = await until(async () => {
      const s = await sample(12);
      return s.ids.size === 2 && s.failed === 0 ? s.ids : undefined;
    });
    expect(workerPids()).toHaveLength(2);
    expect(workerPids()).not.toContain(before[0]);
    expect([...ids].sort()).toEqual(['gw-k-w0', 'gw-k-w1']);
  }, 90_000);

  it("counts the cluster's requests from the instances' request counts: once per replica, monotonic across an instance restart, no record read", async () => {
    const admin = await Bus.connect({ servers: nats.url, ...nats.creds('admin'), name: 'test-instance', log: silentLogger() });
    const rec = (id: string, over: Partial<RequestRecord> = {}): RequestRecord => ({
      v: 1, id, model: 'm', type: 'SS', pool: 'pool-SS', instance: 'i-c', outcome: 'ok', promptTokens: 10, completionTokens: 4, ttftMs: 80, energyJ: 2, energySource: 'modelled', sloMet: true, finishedMs: Date.now(), ...over,
    });
    // the instance's telemetry with its counts, 4 times (every worker hears each), and the value /metrics gives on every answer
    const publish = async (startedMs: number, tally: RequestTally) => {
      for (let i = 0; i < 4; i++) {
        admin.publish(subjects.telInstance('i-c'), InstanceTelemetry, {
          v: 1, id: 'i-c', pool: 'pool-SS', tp: 1, gpus: [0], clockMhz: 1980, maxClockMhz: 1980, powerW: 300, energyJ: 100, energySource: 'modelled',
          queued: 0, running: 0, loadByType: {}, state: 'running', sentMs: Date.now(), requests: tally.counts(startedMs),
        });
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const series = (body: string, name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
    const read = async () => {
      const { body } = await get('/metrics');
      return {
        ok: series(body, 'dynamollm_requests_total', 'model_name="m",type="SS",pool="pool-SS",outcome="ok"'),
        rejected: series(body, 'dynamollm_rejections_total', 'model_name="m",type="SS",pool="pool-SS"'),
        energyJ: series(body, 'dynamollm_request_energy_joules_total', 'model_name="m",type="SS",pool="pool-SS",source="modelled"'),
        ttfts: series(body, 'dynamollm_request_ttft_seconds_count', 'model_name="m",type="SS",pool="pool-SS"'),
      };
    };
    /** until /metrics says `ok` requests, then several answers (any worker's primary, the workers' registries): each the same */
    const settled = async (ok: number) => {
      await until(async () => ((await read()).ok === ok ? true : undefined), 20_000);
      return Promise.all(Array.from({ length: 4 }, read));
    };
    try {
      // records on the wire, as instances publish them for their consumers: no gateway counts them
      for (let i = 0; i < 5; i++) admin.publish(subjects.telRequest('pool-SS'), RequestRecord, rec(`stray-${i}`));
      const first = new RequestTally();
      for (let i = 0; i < 3; i++) first.add(rec(`a-${i}`));
      first.add(rec('a-rej', { outcome: 'rejected', ttftMs: undefined, energyJ: 0, sloMet: false }));
      await publish(1000, first);
      expect(await settled(3)).toEqual(Array(4).fill({ ok: 3, rejected: 1, energyJ: 6, ttfts: 3 }));
      // the instance restarted (another start time): its counts from 0 add to what the first process counted
      const second = new RequestTally();
      for (let i = 0; i < 2; i++) second.add(rec(`b-${i}`));
      await publish(2000, second);
      expect(await settled(5)).toEqual(Array(4).fill({ ok: 5, rejected: 1, energyJ: 10, ttfts: 5 }));
    } finally {
      await admin.close();
    }
  }, 90_000);

  it('SIGTERM drains every worker and the primary exits 0', async () => {
    const pids = workerPids();
    const exited = new Promise<number | null>((r) => gw.once('exit', (code) => r(code)));
    gw.kill('SIGTERM');
    expect(await exited).toBe(0);
    const alive = pids.filter((p) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive).toEqual([]);
  }, 60_000);
});
