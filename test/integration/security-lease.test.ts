/**
 * Issue 12, "leases are fenced", against a real nats-server: an undecodable lease record is not free,
 * terms only rise (also after garbage or a delete), and concurrent candidates with kills never give two
 * leaders at once. Leadership is sampled in this one process every few ms (one clock for all contenders).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { jetstream, leaseKeys } from '../../protocols/index.ts';

let nats: TestNats;
const buses: Bus[] = [];
async function bus(name: string, role: 'pool' | 'admin' = 'pool'): Promise<Bus> {
  const b = await Bus.connect({ servers: nats.url, name, ...nats.as(role, name), log: silentLogger(), reconnect: false });
  buses.push(b);
  return b;
}

beforeAll(async () => {
  nats = await startNatsServer();
  // the lease buckets, as the cluster manager or a deploy's admin makes them: a pool manager may not
  await setUpBuckets(await bus('setup', 'admin'));
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

const until = async (cond: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
};

describe('fenced leases (real JetStream KV)', () => {
  it('a corrupted record is not free: the standby waits a whole TTL, the leader steps down, terms rise; never two leaders', async () => {
    const key = leaseKeys.poolLeader('corrupt');
    const ttl = 800;
    const la = new LeaderLease({ bus: await bus('a'), key, holder: 'A', ttlMs: ttl, renewMs: 150 });
    const lb = new LeaderLease({ bus: await bus('b'), key, holder: 'B', ttlMs: ttl, renewMs: 150 });
    await la.start();
    await lb.start();
    expect(la.isLeader()).toBe(true);
    const termA = la.term()!;
    let both = 0;
    const sampler = setInterval(() => {
      if (la.isLeader() && lb.isLeader()) both++;
    }, 2);
    try {
      // an attacker (here: admin) writes garbage over the lease
      const kv = await (await bus('attacker', 'admin')).kv(jetstream.leasesBucket, { history: 1 });
      const tGarbage = Date.now();
      await kv.put(key, new Uint8Array([0xc1, 0xff, 0x00, 0x13]));
      // the leader's next renewal fails its compare-and-set: it steps down
      expect(await until(() => !la.isLeader(), ttl)).toBe(true);
      // the standby does not take the undecodable record at once ...
      await new Promise((r) => setTimeout(r, ttl / 2));
      expect(lb.isLeader()).toBe(false);
      // ... only once it stood unchanged for a TTL
      expect(await until(() => lb.isLeader(), 3 * ttl)).toBe(true);
      expect(Date.now() - tGarbage).toBeGreaterThanOrEqual(ttl);
      expect(lb.term()!).toBeGreaterThan(termA);
      // a delete does not reset terms either
      const termB = lb.term()!;
      await lb.stop();
      await kv.delete(key);
      await la.tick();
      expect(await until(() => la.isLeader(), 2 * ttl)).toBe(true);
      expect(la.term()!).toBeGreaterThan(termB);
    } finally {
      clearInterval(sampler);
      await la.stop();
      await lb.stop();
    }
    expect(both).toBe(0);
  });

  it('concurrent candidates with kills: at most one leader at any sample, and every new leader has a higher term', async () => {
    const key = leaseKeys.poolLeader('race');
    const ttl = 600;
    type C = { lease: LeaderLease; bus: Bus };
    const live: C[] = [];
    let n = 0;
    const spawn = async () => {
      const b = await bus(`c${n}`);
      const lease = new LeaderLease({ bus: b, key, holder: `C${n++}`, ttlMs: ttl, renewMs: 100 });
      live.push({ lease, bus: b });
      void lease.start();
    };
    for (let i = 0; i < 4; i++) await spawn();
    let overlaps = 0;
    const leaders: { holder: string; term: number }[] = [];
    const sampler = setInterval(() => {
      const now = live.filter((c) => c.lease.isLeader());
      if (now.length > 1) overlaps++;
      const l = now[0];
      if (l && leaders.at(-1)?.holder !== l.lease.holder) leaders.push({ holder: l.lease.holder, term: l.lease.term()! });
    }, 2);
    try {
      for (let round = 0; round < 5; round++) {
        expect(await until(() => live.some((c) => c.lease.isLeader()), 3 * ttl)).toBe(true);
        await new Promise((r) => setTimeout(r, 50)); // let the sampler see this leader
        // kill the leader: its connection goes away without releasing the lease
        const i = live.findIndex((c) => c.lease.isLeader());
        const [dead] = live.splice(i, 1);
        await dead!.bus.close();
        await spawn();
      }
      expect(await until(() => live.some((c) => c.lease.isLeader()), 3 * ttl)).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      clearInterval(sampler);
      for (const c of live) await c.lease.stop();
    }
    expect(overlaps).toBe(0);
    expect(leaders.length).toBeGreaterThanOrEqual(6);
    for (let i = 1; i < leaders.length; i++) expect(leaders[i]!.term).toBeGreaterThan(leaders[i - 1]!.term);
  });
});
