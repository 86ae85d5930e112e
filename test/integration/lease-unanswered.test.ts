/**
 * A lease write applied by the server whose answer comes after the write's deadline (a loaded server, a slow
 * replicated commit, a congested link): the contender or leader that made it finds its own value in the record
 * and holds the lease from that write. Without that, a contender waited out the TTL of its own record before
 * writing again, and a leader whose renewal was applied unanswered found its next compare-and-set failing and
 * stepped down. Real nats-server and JetStream KV; a TCP proxy holds back the server's answers after the write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { startStallProxy, type StallProxy } from '../helpers/stall-proxy.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { LeaseValue, jetstream, kvKeySubject, leaseKeys } from '../../protocols/index.ts';

let nats: TestNats;
let proxy: StallProxy;
let admin: Bus;
const buses: Bus[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  proxy = await startStallProxy(nats.url);
  admin = await Bus.connect({ servers: nats.url, name: 'lease-unanswered-admin', ...nats.as('admin'), log: silentLogger() });
});
afterAll(async () => {
  await Promise.all([admin, ...buses].map((b) => b?.close()));
  await proxy?.close();
  await nats?.stop();
});

const key = leaseKeys.clusterPlanner();
// the write itself (HPUB: it carries a message id), not a read of the key (a direct get names the subject too)
const writeSubject = `PUB ${kvKeySubject(jetstream.leasesBucket, key)} `;

async function contender(holder: string, ttlMs: number): Promise<LeaderLease> {
  const b = await Bus.connect({ servers: proxy.url, name: `lease-unanswered-${holder}`, ...nats.as('cluster', holder), log: silentLogger() });
  buses.push(b);
  return new LeaderLease({ bus: b, key, holder, ttlMs, renewMs: 1000, opTimeoutMs: 1000, log: silentLogger() });
}

describe('a lease write applied while its answer was lost', () => {
  it('an acquire: the contender holds the lease from that write, without waiting out its own record', async () => {
    const kv = await admin.kv(jetstream.leasesBucket, { history: 1 });
    // a holder that stopped renewing: its lease lapses in 1.5 s
    const goneRev = await kv.put(key, LeaseValue.encode({ v: 1, holder: 'cm-gone', acquiredMs: Date.now() - 10_000, expiresMs: Date.now() + 1500, term: 3 }));
    const lease = await contender('cm-a', 4000);
    const elected: { term: number; revision: number; atMs: number }[] = [];
    lease.on('elected', ({ term }: { term: number }) => void kv.get(key).then((e) => elected.push({ term, revision: e!.revision, atMs: Date.now() })));
    // the acquire (the first write to the key) reaches the server; its answer and all after it come 2.5 s late
    const stalled = proxy.stallAfter(writeSubject, 2500);
    await lease.start();
    await stalled;
    const writtenAt = Date.now();
    try {
      await new Promise((r) => setTimeout(r, 5000));
      expect(elected.length, 'elected once').toBe(1);
      // elected on its one write: term above the lapsed one's, no second write after its own record lapsed
      expect(elected[0]).toMatchObject({ term: Math.max(3, goneRev) + 1, revision: goneRev + 1 });
      console.log(`elected ${elected[0]!.atMs - writtenAt} ms after its write reached the server (its answer held back 2.5 s; TTL 4 s)`);
      expect(elected[0]!.atMs - writtenAt, 'elected before its own record would have lapsed (4 s after the write)').toBeLessThan(4000);
      expect(lease.isLeader()).toBe(true);
    } finally {
      await lease.stop();
    }
  }, 20_000);

  it('a renewal: the leader keeps its lease and its term', async () => {
    const kv = await admin.kv(jetstream.leasesBucket, { history: 1 });
    await kv.delete(key);
    const lease = await contender('cm-b', 6000);
    const lost: string[] = [];
    lease.on('lost', ({ reason }: { reason: string }) => lost.push(reason));
    await lease.start();
    expect(lease.isLeader()).toBe(true);
    const term = lease.term();
    try {
      // the next renewal reaches the server; its answer and all after it come 2 s late (within the 6-s TTL)
      await proxy.stallAfter(writeSubject, 2000);
      await new Promise((r) => setTimeout(r, 5000));
      expect(lost, 'the leader stepped down').toEqual([]);
      expect(lease.isLeader()).toBe(true);
      expect(lease.term()).toBe(term);
      // and it still renews: the record's expiry keeps moving
      const before = LeaseValue.decode((await kv.get(key))!.value);
      await new Promise((r) => setTimeout(r, 1500));
      const after = LeaseValue.decode((await kv.get(key))!.value);
      expect(after.holder).toBe('cm-b');
      expect(after.expiresMs).toBeGreaterThan(before.expiresMs);
    } finally {
      await lease.stop();
    }
  }, 20_000);
});
