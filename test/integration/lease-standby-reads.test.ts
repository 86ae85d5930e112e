/**
 * A standby contending for a lease that a live leader holds reads the own layout's record each attempt and nothing
 * more: the other bucket layout's records (src/runtime/lease-other-layout.ts, five JetStream message gets with one
 * bucket) are read only once the own layout shows the lease free. Counted by an admin connection that sees every
 * `$JS.API.STREAM.MSG.GET` request on a real nats-server; the standby still takes the lease within its renewal
 * period after the leader releases it, and two never lead at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { leaseBuckets, leaseKeys, MAX_LEASE_BUCKETS } from '../../protocols/index.ts';

let nats: TestNats;
const buses: Bus[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  nats = await startNatsServer();
  // the buckets, as the cluster manager makes them (a pool manager may not create one)
  const admin = await Bus.connect({ servers: nats.url, name: 'lease-standby-admin', ...nats.as('admin'), log: silentLogger() });
  buses.push(admin);
  await setUpBuckets(admin);
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

describe('a standby waiting on a live leader', () => {
  it("reads no record of the other layout while the leader lives; reads them once the lease is free, then leads", async () => {
    const connect = async (id: string) => {
      const b = await Bus.connect({ servers: nats.url, name: `lease-standby-${id}`, ...nats.as('pool', id), log: silentLogger() });
      buses.push(b);
      return b;
    };
    const watcher = await Bus.connect({ servers: nats.url, name: 'lease-standby-watch', ...nats.as('admin'), log: silentLogger() });
    buses.push(watcher);
    const others = new Set(leaseBuckets(MAX_LEASE_BUCKETS).map((b) => `$JS.API.STREAM.MSG.GET.KV_${b}`));
    let otherReads = 0;
    watcher.nc.subscribe('$JS.API.STREAM.MSG.GET.>', { callback: (_e, m) => { if (others.has(m.subject)) otherReads++; } });
    await watcher.nc.flush();

    const key = leaseKeys.poolLeader('standby-reads');
    const opts = { key, ttlMs: 1500, renewMs: 300, log: silentLogger() };
    const leader = new LeaderLease({ bus: await connect('pm-a'), holder: 'pm-a', ...opts });
    const standby = new LeaderLease({ bus: await connect('pm-b'), holder: 'pm-b', ...opts });
    let both = false;
    const check = setInterval(() => { if (leader.isLeader() && standby.isLeader()) both = true; }, 5);
    try {
      await leader.start();
      for (const end = Date.now() + 10_000; !leader.isLeader(); await sleep(20)) if (Date.now() > end) throw new Error('the first contender never led');
      await sleep(200);
      const atStandbyStart = otherReads;
      await standby.start();
      // ~10 attempts of the standby at its 300-ms period
      await sleep(3000);
      expect(standby.isLeader()).toBe(false);
      expect(otherReads - atStandbyStart, 'other-layout reads while the leader lived').toBe(0);
      // the leader gives the lease back: the standby reads the other layout (free there too) and leads
      const released = Date.now();
      await leader.stop();
      for (const end = Date.now() + 5000; !standby.isLeader(); await sleep(10)) if (Date.now() > end) throw new Error('the standby never led');
      expect(Date.now() - released).toBeLessThan(2000);
      expect(otherReads - atStandbyStart).toBeGreaterThanOrEqual(MAX_LEASE_BUCKETS);
      expect(both).toBe(false);
    } finally {
      clearInterval(check);
      await standby.stop();
      await leader.stop();
    }
  }, 30_000);
});
