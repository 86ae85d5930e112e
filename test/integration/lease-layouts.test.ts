/**
 * Leader leases across two bucket layouts (src/runtime/lease.ts, "Layouts"): managers configured with different
 * `nats.jetstreamReplicas` (a rolling upgrade, a mistaken config) contend on the one bucket `dyn_v1_leases` (N = 1)
 * and on the buckets `dyn_v1_leases_<i>` (N = 3). Real 3-server NATS cluster on loopback, tagged dyn-lease-<i>.
 *
 * - a holder on one layout: the contender on the other is never elected while it lives (sampled every 20 ms), and
 *   is elected once it stops; both ways round.
 * - contenders of the two layouts starting together, round after round: never two leaders at one 5-ms sample, and
 *   one leads each round.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { bucketsWhenReady, leaseBucketsOf } from '../helpers/planner-fixture.ts';
import { until } from '../helpers/lease-watch.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { leaseBuckets, leaseKeys } from '../../protocols/index.ts';

const TTL_MS = 1500;
const RENEW_MS = 500;
let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
const buses: Bus[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  for (const [i, url] of cluster.urls.entries()) {
    const b = await Bus.connect({ servers: url, name: `lease-layouts-${i}`, ...as('pool', `pm-${i}`), log: silentLogger() });
    b.jetstreamReplicas = 3;
    buses.push(b);
  }
  // the buckets of both layouts, made by an admin (a pool manager may not create a bucket)
  const b0 = await Bus.connect({ servers: cluster.urls[0]!, name: 'lease-layouts-admin', ...as('admin'), log: silentLogger() });
  b0.jetstreamReplicas = 3;
  buses.push(b0);
  await bucketsWhenReady(b0, () => Promise.all([leaseBucketsOf(b0), openLeaseBucket(b0, leaseBuckets(1)[0]!, 0, 1)]));
}, 60_000);

afterAll(async () => {
  for (const b of buses) await b.close();
  await cluster?.stop();
});

const lease = (server: number, key: string, holder: string, replicas: number) =>
  new LeaderLease({ bus: buses[server]!, key, holder, replicas, ttlMs: TTL_MS, renewMs: RENEW_MS, log: silentLogger() });

describe('a lease contended on two bucket layouts (different nats.jetstreamReplicas)', () => {
  for (const [first, second] of [[1, 3], [3, 1]] as const) {
    it(`a holder on N=${first}: a contender on N=${second} never leads while it lives, and leads once it stops`, async () => {
      const key = leaseKeys.poolLeader(`layouts${first}`);
      const a = lease(0, key, `a${first}`, first);
      const b = lease(1, key, `b${second}`, second);
      await a.start();
      await until('the first contender elected', 10_000, () => a.isLeader());
      let bElected = false;
      b.on('elected', () => (bElected = true));
      await b.start();
      let both = 0;
      const timer = setInterval(() => (both += a.isLeader() && b.isLeader() ? 1 : 0), 20);
      await sleep(3 * TTL_MS);
      clearInterval(timer);
      expect(both, 'samples with two leaders').toBe(0);
      expect(bElected, `N=${second} elected while N=${first} leads`).toBe(false);
      expect(a.isLeader()).toBe(true);
      await a.stop();
      await until(`N=${second} elected after N=${first} stopped`, TTL_MS + 2 * RENEW_MS, () => b.isLeader());
      await b.stop();
    }, 30_000);
  }

  it('contenders of the two layouts starting together: never two leaders, one per round', async () => {
    const rounds = 8;
    const winners: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const key = leaseKeys.poolLeader(`together${round}`);
      const ls = [lease(0, key, `one-${round}`, 1), lease(1, key, `three-${round}`, 3), lease(2, key, `three-b-${round}`, 3)];
      let most = 0;
      const sampler = setInterval(() => (most = Math.max(most, ls.filter((l) => l.isLeader()).length)), 5);
      await Promise.all(ls.map((l) => l.start()));
      await until(`round ${round}: a leader`, 3 * TTL_MS, () => ls.some((l) => l.isLeader()));
      await sleep(2 * RENEW_MS);
      clearInterval(sampler);
      winners.push(ls.filter((l) => l.isLeader()).length);
      expect(most, `round ${round}: leaders at one sample`).toBeLessThanOrEqual(1);
      for (const l of ls) await l.stop();
    }
    expect(winners).toEqual(Array(rounds).fill(1));
  }, 90_000);
});
