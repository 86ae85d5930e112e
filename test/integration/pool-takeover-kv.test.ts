/**
 * A pool leader taking over while JetStream is briefly unavailable (issue 13): the lease bucket answers, but
 * the buckets of the pool's stored state (the inventory's assignment, the previous leader's dispatched
 * requests) fail their first reads, as when their streams elect a leader or a NATS node restarts. The new
 * leader retries them with backoff inside timeouts.takeoverReadMs, so it adopts the list: a request the
 * previous leader dispatched to an instance that never reports again has its stream ended (retryable) once
 * that instance counts as dead. Past the budget it leads without the state, and says so in a failure event.
 *
 * Real nats-server with the project's permissions; the PoolLeader runs in the test process on a pool-role
 * connection whose KV opens of those two buckets are made to fail (the connection itself is real).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, waitFor as until } from '../helpers/wait.ts';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { startStallProxy } from '../helpers/stall-proxy.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig } from '../../actors/common/config.ts';
import {
  Admission, DecisionEvent, DispatchedEntry, InferenceRequest, TokenChunk, dispatchedKeys, jetstream, subjects,
  type DecisionEvent as Ev, type InferenceRequest as Req, type TokenChunk as Chunk,
} from '../../protocols/index.ts';
import { DynError } from '../../protocols/errors.ts';

let nats: TestNats;
let admin: Bus;
const buses: Bus[] = [];
const leaders: PoolLeader[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
  // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
  await setUpBuckets(admin);
}, 30_000);

afterAll(async () => {
  for (const l of leaders) await l.stop().catch(() => {});
  for (const b of buses) await b.close().catch(() => {});
  await admin?.close();
  await nats?.stop();
}, 30_000);

const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;

/** A pool-role connection whose opens of the inventory and dispatched buckets fail while `failing()` says so. */
async function flakyBus(id: string, failing: (bucket: string) => boolean): Promise<Bus> {
  const real = await Bus.connect({ servers: nats.url, name: id, ...as('pool', id), log: silentLogger() });
  buses.push(real);
  return new Proxy(real, {
    get(t, p) {
      if (p === 'kv') {
        return (bucket: string, opts?: Parameters<Bus['kv']>[1]) =>
          (bucket === jetstream.inventoryBucket || bucket === jetstream.dispatchedBucket) && failing(bucket)
            ? Promise.reject(new DynError('unavailable', `JetStream: stream for ${bucket} has no leader (injected)`, { retryable: true }))
            : t.kv(bucket, opts);
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

function leader(pool: string, bus: Bus, takeoverReadMs: number): PoolLeader {
  const config = parseConfig({
    pools: [{ id: pool, types: [...TYPES] }],
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    timeouts: { takeoverReadMs },
  });
  const l = new PoolLeader({ pool, types: [...TYPES], holder: `pm-${pool}`, bus, config, log: silentLogger() });
  leaders.push(l);
  return l;
}

function request(id: string): Req {
  const now = Date.now();
  return { v: 1, id, model: 'llama2-70b', kind: 'completion', prompt: 'hello', inputTokens: 10, maxTokens: 20, arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), type: 'SS' };
}

/**
 * What a previous leader of `pool` left: one request dispatched to an instance that will never report again; the
 * request's stream and the failure events, collected.
 */
async function leftDispatched(pool: string, prefix: string): Promise<{ req: ReturnType<typeof request>; chunks: Chunk[]; events: Ev[] }> {
  const req = request(`${prefix}-${Date.now()}`);
  const kv = await admin.kv(jetstream.dispatchedBucket, { ttl: 3_600_000 });
  await kv.put(dispatchedKeys.entry(pool, req.id), DispatchedEntry.encode({ v: 1, req, instance: `${pool}-n0-g0x1`, atMs: Date.now(), startedMs: Date.now() - 60_000 }));
  const chunks: Chunk[] = [];
  admin.subscribe(subjects.stream(req.id), TokenChunk, (c) => void chunks.push(c), { capacity: 64 });
  const events: Ev[] = [];
  admin.subscribe(subjects.eventsOfKind('failure'), DecisionEvent, (e) => void events.push(e), { capacity: 256 });
  return { req, chunks, events };
}

describe('pool takeover while the KV is briefly unavailable', () => {
  it("retries the stored state's reads: the previous leader's dispatched request is adopted and its dead instance's stream ended", async () => {
    const pool = 'pool-kvflap';
    const { chunks, events } = await leftDispatched(pool, 'kvflap');
    // each bucket fails its first two opens (the first read and its first retry)
    const fails = new Map<string, number>();
    const bus = await flakyBus('pm-kvflap', (b) => {
      const n = (fails.get(b) ?? 0) + 1;
      fails.set(b, n);
      return n <= 2;
    });
    const l = leader(pool, bus, 10_000);
    await l.start();
    await until(() => (l.isLeader() ? true : undefined), 15_000, 'the lease');
    // the instance gets deadAfterMs to report, then its request's stream ends with a retryable error (the gateway sends it again)
    const end = await until(() => chunks.find((c) => c.error), 20_000, "the end of the adopted request's stream");
    expect(end.error).toMatchObject({ code: 'unavailable', retryable: true });
    expect(end.done).toBe(true);
    expect(fails.get(jetstream.dispatchedBucket)).toBeGreaterThanOrEqual(3);
    expect(events.filter((e) => e.actor === pool && /without/.test(e.summary))).toEqual([]);
  }, 60_000);

  it('past takeoverReadMs it leads without the stored state (dispatch served) and says so in a failure event', async () => {
    const pool = 'pool-kvdown';
    const events: Ev[] = [];
    admin.subscribe(subjects.eventsOfKind('failure'), DecisionEvent, (e) => void events.push(e), { capacity: 256 });
    const bus = await flakyBus('pm-kvdown', () => true);
    const l = leader(pool, bus, 1500);
    await l.start();
    const ev = await until(() => events.find((e) => e.actor === pool && /without/.test(e.summary)), 20_000, 'the failure event');
    expect(ev.decision).toMatchObject({ assignmentRead: false, dispatchedRead: false });
    // it leads: dispatch is answered (no instance yet: a retryable refusal), not left without responders
    const a = await admin.request(subjects.poolDispatch(pool), InferenceRequest, request(`kvdown-${Date.now()}`), Admission, { timeoutMs: 5000 });
    expect(a.ok).toBe(false);
    expect(a.error?.retryable).toBe(true);
  }, 60_000);

  it('a state unreadable past takeoverReadMs is read on while it leads: the dispatched request adopted late has its dead instance\'s stream ended', async () => {
    const pool = 'pool-kvlate';
    const { chunks, events } = await leftDispatched(pool, 'kvlate');
    // the buckets fail until the leader has led without them (JetStream electing for longer than the budget)
    let down = true;
    const bus = await flakyBus('pm-kvlate', () => down);
    const l = leader(pool, bus, 1500);
    await l.start();
    await until(() => events.find((e) => e.actor === pool && /without/.test(e.summary)), 20_000, 'the failure event');
    expect(chunks).toEqual([]);
    down = false;
    const end = await until(() => chunks.find((c) => c.error), 20_000, "the end of the request adopted after the lead");
    expect(end.error).toMatchObject({ code: 'unavailable', retryable: true });
    expect(end.done).toBe(true);
  }, 60_000);

  it("a read whose answer is lost with its connection is sent again within the budget (not after JetStream's 5-s default)", async () => {
    const pool = 'pool-kvcut';
    const events: Ev[] = [];
    admin.subscribe(subjects.eventsOfKind('failure'), DecisionEvent, (e) => void events.push(e), { capacity: 256 });
    const proxy = await startStallProxy(nats.url);
    try {
      const bus = await Bus.connect({ servers: proxy.url, name: 'pm-kvcut', ...as('pool', 'pm-kvcut'), log: silentLogger() });
      buses.push(bus);
      // the first read of the pool's stored assignment reaches the server; the connection dies before its answer
      const cut = proxy.cutAfter(`GET.KV_${jetstream.inventoryBucket}`);
      const config = parseConfig({
        pools: [{ id: pool, types: [...TYPES] }],
        liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 6000 },
        timeouts: { takeoverReadMs: 4000 },
      });
      const l = new PoolLeader({ pool, types: [...TYPES], holder: 'pm-kvcut', bus, config, log: silentLogger() });
      leaders.push(l);
      await l.start();
      await cut;
      // it leads with its state read: dispatch answered, and no "leads without" failure event past the 4-s budget
      const a = await until(() => (l.isLeader() ? true : undefined), 5000, 'the lease').then(async () => {
        for (const end = Date.now() + 8000; ; await sleep(200)) {
          try {
            return await admin.request(subjects.poolDispatch(pool), InferenceRequest, request(`kvcut-${Date.now()}`), Admission, { timeoutMs: 1000 });
          } catch (err) {
            if (Date.now() > end) throw err;
          }
        }
      });
      expect(a.ok).toBe(false); // no instance yet: a retryable refusal from the leader
      await sleep(1000);
      expect(events.filter((e) => e.actor === pool && /without/.test(e.summary)).map((e) => e.summary)).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});
