/**
 * A pool leader whose lease is lost and won again while its takeover reads wait (the inventory and dispatched
 * buckets not answering): the first lead's takeover, its reads answered after the second election, takes no lead
 * and serves nothing; only the second lead serves the pool (one service subscribed per subject, not two).
 *
 * Real nats-server with the project's permissions; the PoolLeader runs in the test process on a pool-role connection
 * through a TCP proxy that holds back what the server sends (test/helpers/stall-proxy.ts) for longer than the lease's
 * TTL, so its renewals go unanswered and its lease lapses on its own clock. Its opens of the two buckets wait until
 * the test lets them through (the connection itself is real), as a bucket whose stream does not answer: each read
 * attempt waits out its deadline (1 s, doubling).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInbox } from '@nats-io/nats-core';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { startStallProxy, type StallProxy } from '../helpers/stall-proxy.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { MoveRequest, jetstream, serviceName, serviceSubjects, subjects } from '../../protocols/index.ts';

const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
/** the proxy holds the server's answers this long: the lease (TTL 1 s) lapses on the leader's clock and on the server's record. */
const STALL_MS = 3500;

let nats: TestNats;
let proxy: StallProxy;
let admin: Bus;
let bus: Bus;
let leader: PoolLeader | undefined;

beforeAll(async () => {
  nats = await startNatsServer();
  proxy = await startStallProxy(nats.url);
  admin = await Bus.connect({ servers: nats.url, name: 'pool-race-admin', ...nats.as('admin'), log: silentLogger() });
  // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
  await setUpBuckets(admin);
}, 30_000);

afterAll(async () => {
  await leader?.stop().catch(() => {});
  await bus?.close().catch(() => {});
  await admin?.close();
  await proxy?.close();
  await nats?.stop();
}, 30_000);

/** How many answers one move request (no request to move: the leader answers at once) gets within `ms`; the server's no-responders status, empty, is none. */
async function moveAnswers(pool: string, ms = 1000): Promise<number> {
  const inbox = createInbox();
  let n = 0;
  const sub = admin.nc.subscribe(inbox, { callback: (_err, m) => { if (m.data.length) n++; } });
  admin.nc.publish(subjects.poolMove(pool), MoveRequest.encode({ v: 1, from: 'race-instance', pool, requests: [], reason: 'test: count the move services' }), { reply: inbox });
  await sleep(ms);
  sub.unsubscribe();
  return n;
}

/**
 * The move services of `id` (the leader serves dispatch, move and control together) that took a move request sent
 * just before (its NATS Service API STATS: one endpoint per subscription). The server passes one reply per request
 * on (the roles' allow_responses), so a second service subscribed is seen here, not in the answers.
 */
async function moveServices(pool: string, id: string): Promise<number> {
  await moveAnswers(pool, 500);
  const r = await admin.nc.request(serviceSubjects.control('STATS', serviceName('pool'), id), '', { timeout: 2000 });
  const stats = JSON.parse(new TextDecoder().decode(r.data)) as { endpoints: { subject: string; num_requests: number }[] };
  return stats.endpoints.filter((e) => e.subject === subjects.poolMove(pool) && e.num_requests > 0).length;
}

describe('a pool leader that loses its lease and wins it again during its takeover reads', () => {
  it('serves the pool once: the first lead, its reads answered after the second election, takes no lead', async () => {
    const pool = 'pool-race';
    const id = 'pm-race';
    const real = await Bus.connect({ servers: proxy.url, name: id, ...as('pool', id), log: silentLogger() });
    bus = real;
    // its served subjects listed as endpoints, as an actor's (src/runtime/actor.ts)
    real.startService({ name: serviceName('pool'), id, version: 'test', description: 'pool leader under test' });
    // the opens of the pool state's buckets wait until `open` (each attempt gives up at its deadline and tries again)
    let open = false;
    const waiting: (() => void)[] = [];
    let opens = 0;
    const gated = new Proxy(real, {
      get(t, p) {
        if (p === 'kv') {
          return async (bucket: string, opts?: Parameters<Bus['kv']>[1]) => {
            if ((bucket === jetstream.inventoryBucket || bucket === jetstream.dispatchedBucket) && !open) {
              opens++;
              await new Promise<void>((r) => waiting.push(r));
            }
            return t.kv(bucket, opts);
          };
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const config = parseConfig({
      pools: [{ id: pool, types: [...TYPES] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1000 },
      timeouts: { takeoverReadMs: 30_000 },
    });
    leader = new PoolLeader({ pool, types: [...TYPES], holder: id, bus: gated, config, log: silentLogger() });
    const l = leader;
    /** whether it leads, at each change from its first election on. */
    const held: boolean[] = [];
    const sampler = setInterval(() => {
      const x = l.isLeader();
      if (held.at(-1) !== x && (held.length || x)) held.push(x);
    }, 20);
    try {
      await l.start();
      // the third attempt's first read (opens 1-4: the first two attempts' reads, 1 s and 2 s each): it waits 4 s, and the second read 4 s more
      await waitUntil(() => opens >= 5, 20_000, 'the takeover in its third read attempt');
      expect(held, 'led from its election on').toEqual([true]);
      proxy.stall(STALL_MS);
      await waitUntil(() => held.length >= 3, 15_000, 'the lease lost and won again');
      expect(held.slice(0, 3), 'led, lost, led again').toEqual([true, false, true]);
      // the buckets answer: the first lead's reads and the second's complete
      open = true;
      for (const r of waiting.splice(0)) r();
      await waitUntil(async () => (await moveAnswers(pool, 500)) > 0, 20_000, 'the pool served');
      await sleep(1000);
      expect(held.length, 'not lost again').toBe(3);
      expect(await moveAnswers(pool), 'answers to one move request').toBe(1);
      expect(await moveServices(pool, id), 'move services answering').toBe(1);
    } finally {
      clearInterval(sampler);
    }
  }, 90_000);
});
