/**
 * The leader lease on a replicated bucket (issue 13, multi-host: JetStream R3), on a real 3-server NATS
 * cluster on loopback. Contenders on all three servers find the lease expired at the same moment and try to
 * take it together, round after round: exactly one wins each round, and no two share a term.
 *
 * nats-server 2.9.10 (what CI runs) lets two KV updates expecting the same revision both succeed on an R3
 * stream when they arrive together (its per-subject revision check runs before the raft proposal, not when
 * the write is applied): a plain `kv.update` compare-and-set elected two leaders of one term in most rounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { LeaseValue, jetstream, leaseKeys } from '../../protocols/index.ts';

let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
const buses: Bus[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  for (const [i, url] of cluster.urls.entries()) {
    const b = await Bus.connect({ servers: url, name: `lease-r3-${i}`, ...as('admin'), log: silentLogger() });
    b.jetstreamReplicas = 3;
    buses.push(b);
  }
  // R3 needs the cluster's meta leader: wait until the replicated bucket can be made
  for (const until = Date.now() + 30_000; ;) {
    try {
      await buses[0]!.kv(jetstream.leasesBucket, { history: 1 });
      break;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}, 60_000);

afterAll(async () => {
  for (const b of buses) await b.close();
  await cluster?.stop();
});

describe('leader lease on an R3 bucket', () => {
  it('contenders on three servers taking an expired lease together: one winner per round, one holder per term', async () => {
    const key = leaseKeys.poolLeader('r3race');
    const kv = await buses[0]!.kv(jetstream.leasesBucket, { history: 1 });
    const rounds = 30;
    const holdersOfTerm = new Map<number, Set<string>>();
    const winners: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // a lease that lapsed: everyone may take it now
      await kv.put(key, LeaseValue.encode({ v: 1, holder: 'gone', acquiredMs: 0, expiresMs: 1, term: 0 }));
      const leases = buses.flatMap((bus, i) => [0, 1].map((j) => new LeaderLease({ bus, key, holder: `c${round}-${i}-${j}`, ttlMs: 3000, renewMs: 1000 })));
      let won = 0;
      for (const l of leases) {
        l.on('elected', ({ holder, term }: { holder: string; term: number }) => {
          won++;
          (holdersOfTerm.get(term) ?? holdersOfTerm.set(term, new Set()).get(term)!).add(holder);
        });
      }
      await Promise.all(leases.map((l) => l.start()));
      winners.push(won);
      // no one steps in at a renewal either: at most one believes it leads
      await new Promise((r) => setTimeout(r, 50));
      expect(leases.filter((l) => l.isLeader()).length, `round ${round}`).toBeLessThanOrEqual(1);
      for (const l of leases) await l.stop();
    }
    expect(winners.filter((w) => w !== 1), `winners per round: ${winners.join(',')}`).toEqual([]);
    expect([...holdersOfTerm].filter(([, s]) => s.size > 1).map(([t, s]) => `term ${t}: ${[...s].join(', ')}`)).toEqual([]);
  }, 60_000);
});
