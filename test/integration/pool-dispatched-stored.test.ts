/**
 * A pool leader answers a dispatch with its admission only once the request's entry is in the dispatched list
 * (jetstream.dispatchedBucket), the list a successor adopts (issue 13: the list survives the leader's death). A
 * leader that dies right after its answer leaves the request known to the next one.
 *
 * Real nats-server with the project's permissions; the PoolLeader runs in the test process on a pool-role
 * connection whose writes to the dispatched bucket are held back 400 ms (a slow store: a loaded server, a
 * replicated commit), the connection itself real. The test plays the pool's one instance (statuses, admission).
 * The second case times dispatch on the same store without the hold (its figures are printed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KV } from '@nats-io/kv';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig } from '../../actors/common/config.ts';
import {
  Admission, DispatchedEntry, InferenceRequest, InstanceStatus, controlSubjects, dispatchedKeys, jetstream, subjects,
  type InferenceRequest as Req, type InstanceStatus as Status,
} from '../../protocols/index.ts';

const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
const HOLD_MS = 400;
let nats: TestNats;
let admin: Bus;
const buses: Bus[] = [];
const leaders: PoolLeader[] = [];
const timers: NodeJS.Timeout[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
  // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
  await setUpBuckets(admin);
}, 30_000);

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  for (const l of leaders) await l.stop().catch(() => {});
  for (const b of buses) await b.close().catch(() => {});
  await admin?.close();
  await nats?.stop();
}, 30_000);

/** A pool-role connection whose puts to the dispatched bucket start `holdMs` late. */
async function slowStoreBus(id: string, holdMs: number): Promise<Bus> {
  const real = await Bus.connect({ servers: nats.url, name: id, ...as('pool', id), log: silentLogger() });
  buses.push(real);
  const slow = (kv: KV): KV => new Proxy(kv, {
    get(t, p) {
      if (p === 'put') return async (...a: Parameters<KV['put']>) => (await sleep(holdMs), t.put(...a));
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
  return new Proxy(real, {
    get(t, p) {
      if (p === 'kv') return async (bucket: string, opts?: Parameters<Bus['kv']>[1]) => (bucket === jetstream.dispatchedBucket && holdMs > 0 ? slow(await t.kv(bucket, opts)) : t.kv(bucket, opts));
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/** The pool's one instance, played by the test: a ready status every 250 ms, and an admission that says yes. */
function instance(pool: string): string {
  const id = `${pool}-n0-g0x2`;
  let seq = 0;
  const startedMs = Date.now();
  const publish = () => {
    const st: Status = {
      v: 1, id, pool, node: 'n0', tp: 2, gpuIds: [0, 1], state: 'ready', startedMs, seq: seq++, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
      queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
    };
    admin.publish(controlSubjects.instanceStatus(pool, id), InstanceStatus, st);
  };
  admin.serve(subjects.instanceAdmit(id), InferenceRequest, Admission, async (r) => ({ v: 1 as const, id: r.id, ok: true, instance: id }), { capacity: 4096, concurrency: 256 });
  publish();
  timers.push(setInterval(publish, 250));
  return id;
}

async function leading(pool: string, holdMs: number): Promise<{ inst: string; kv: KV }> {
  const inst = instance(pool);
  await admin.nc.flush();
  const config = parseConfig({ pools: [{ id: pool, types: [...TYPES] }], liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 } });
  const l = new PoolLeader({ pool, types: [...TYPES], holder: `pm-${pool}`, bus: await slowStoreBus(`pm-${pool}`, holdMs), config, log: silentLogger() });
  leaders.push(l);
  await l.start();
  const kv = await admin.kv(jetstream.dispatchedBucket, { ttl: 3_600_000 });
  // serving dispatch, the instance heard: a first request admitted
  for (const end = Date.now() + 20_000; ; await sleep(100)) {
    const a = await admin.request(subjects.poolDispatch(pool), InferenceRequest, request(`${pool}-probe-${Date.now()}`), Admission, { timeoutMs: 3000 }).catch(() => undefined);
    if (a?.ok) break;
    if (Date.now() > end) throw new Error(`${pool}: no admission from its leader`);
  }
  return { inst, kv };
}

function request(id: string): Req {
  const now = Date.now();
  return { v: 1, id, model: 'llama2-70b', kind: 'completion', prompt: 'hello', inputTokens: 10, maxTokens: 20, arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), type: 'SS' };
}

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

describe("a dispatch's admission and the dispatched list", () => {
  it(`the entry is readable when the admission arrives, on a store ${HOLD_MS} ms slow (concurrent dispatches not one after the other)`, async () => {
    const pool = 'pool-slowstore';
    const { inst, kv } = await leading(pool, HOLD_MS);
    const ids = Array.from({ length: 20 }, (_, i) => `slow-${i}`);
    const t0 = Date.now();
    const got = await Promise.all(ids.map(async (id) => {
      const a = await admin.request(subjects.poolDispatch(pool), InferenceRequest, request(id), Admission, { timeoutMs: 5000 });
      const e = await kv.get(dispatchedKeys.entry(pool, id));
      return { a, entry: e?.value.length ? DispatchedEntry.decode(e.value) : undefined };
    }));
    const tookMs = Date.now() - t0;
    expect(got.map((g) => g.a.ok)).toEqual(ids.map(() => true));
    expect(got.map((g) => g.entry?.instance)).toEqual(ids.map(() => inst));
    expect(got.map((g) => g.entry?.req.id)).toEqual(ids);
    // 20 stores of 400 ms each in flight together, not 8 s one after another
    expect(tookMs).toBeLessThan(HOLD_MS * 5);
  }, 60_000);

  it('dispatch latency with the store awaited (figures printed): every entry stored at its answer', async () => {
    const pool = 'pool-timed';
    const { kv } = await leading(pool, 0);
    const N = 400, CONCURRENCY = 32;
    const lat: number[] = [];
    let next = 0;
    const missing: string[] = [];
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) {
        const id = `timed-${next++}`;
        const s = performance.now();
        const a = await admin.request(subjects.poolDispatch(pool), InferenceRequest, request(id), Admission, { timeoutMs: 5000 });
        lat.push(performance.now() - s);
        expect(a.ok).toBe(true);
        if (!(await kv.get(dispatchedKeys.entry(pool, id)))?.value.length) missing.push(id);
      }
    }));
    const wallMs = Date.now() - t0;
    // what the wait adds to a dispatch: one put's acknowledgement, timed here on the same store at the same concurrency
    const puts: number[] = [];
    let k = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (k < N) {
        const key = dispatchedKeys.entry('pool-puts', `put-${k++}`);
        const s = performance.now();
        await kv.put(key, DispatchedEntry.encode({ v: 1, req: request(key.split('.').pop()!), instance: 'i', atMs: Date.now() }));
        puts.push(performance.now() - s);
      }
    }));
    console.log(`dispatch round trip, ${N} requests at concurrency ${CONCURRENCY}: p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms, ${(N / (wallMs / 1000)).toFixed(0)} req/s; `
      + `entries missing at the answer: ${missing.length}; a dispatched-entry put alone: p50 ${pct(puts, 0.5).toFixed(2)} ms, p99 ${pct(puts, 0.99).toFixed(2)} ms`);
    expect(missing).toEqual([]);
  }, 120_000);
});
