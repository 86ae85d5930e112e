/**
 * How `dynamollm chaos` follows a kill (src/cli/commands/chaos.ts): a watcher reads the process tree only
 * until its victim is back, the watchers share one read per period, and a standby manager's kill is not
 * followed for a new leader that never comes. Each read of /proc costs CPU that the restarting actors need,
 * and a watcher's read blocks the harness's own load generator.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadRange, sharedRead, timeByLeases, watchKill, type Kill, type Proc } from '../../src/cli/commands/chaos.ts';
import { LeaseLog, MajorityLeaseLog, leaseAround, type LeaseRecord } from '../../src/cli/chaos-leases.ts';
import type { ClusterStatus } from '../../protocols/messages.ts';

beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
afterEach(() => vi.useRealTimers());

/** A process tree where the victim (pm-1, pid 10) is back as pid 11 from the `backFrom`-th read on; counts the reads. */
function tree(backFrom: number): { read: () => Proc[]; reads: () => number } {
  let n = 0;
  return {
    read: () => {
      n++;
      return n >= backFrom ? [{ pid: 11, ppid: 1, kind: 'pool', id: 'pm-1' }] : [];
    },
    reads: () => n,
  };
}

describe('chaos kill watcher', () => {
  it('reads the process tree only until the victim is back, and does not wait 60 s for a standby to be replaced as leader', async () => {
    const t = tree(3);
    // the cluster status names pm-0 the leader of the only pool: pm-1 is a standby
    const status = { pools: [{ id: 'pool-all', leader: 'pm-0', instances: [] }] } as unknown as ClusterStatus;
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 10, atMs: Date.now() };
    let done = false;
    const w = watchKill(k, t.read, () => status, () => 0, { log: new LeaseLog(), pools: ['pool-all'] }).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(300);
    expect(k.restartMs).toBeGreaterThanOrEqual(300);
    expect(t.reads()).toBe(3);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(done).toBe(true);
    expect(t.reads()).toBe(3);
    expect(k.newLeaderMs).toBeUndefined();
    await w;
  });

  it('still follows the kill of a pool leader until the lease records name a new term', async () => {
    const t = tree(1);
    const status = { pools: [{ id: 'pool-all', leader: 'pm-1', instances: [] }] } as unknown as ClusterStatus;
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 10, atMs: Date.now() };
    const log = new LeaseLog();
    log.add(rec('pool.pool-all', 1, k.atMs - 3000, 'pm-1', 4, k.atMs - 3000));
    log.add(rec('pool.pool-all', 2, k.atMs - 400, 'pm-1', 4, k.atMs - 3000));
    let done = false;
    const w = watchKill(k, t.read, () => status, () => 0, { log, pools: ['pool-all'] }).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(5000);
    expect(done).toBe(false);
    log.add(rec('pool.pool-all', 3, Date.now(), 'pm-0', 5, Date.now() - 20));
    await vi.advanceTimersByTimeAsync(200);
    expect(done).toBe(true);
    expect(k.newLeaderMs).toBe(4980);
    expect(k.newLeader).toBe('pool-all:pm-0');
    expect(t.reads()).toBe(1);
    await w;
  });

  it("times a new leader by the term's acquisition, also when only a later renewal of it was read", async () => {
    const t = tree(1);
    const status = { pools: [{ id: 'pool-all', leader: 'pm-1', instances: [] }] } as unknown as ClusterStatus;
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 10, atMs: Date.now() };
    const log = new LeaseLog();
    log.add(rec('pool.pool-all', 7, k.atMs - 200, 'pm-1', 4, k.atMs - 9000));
    const w = watchKill(k, t.read, () => status, () => 0, { log, pools: ['pool-all'] });
    await vi.advanceTimersByTimeAsync(5000);
    // the acquisition (revision 8, 1.2 s after the kill) was overwritten while the harness's NATS server was dead:
    // the renewal read 4.9 s after the kill carries the term's acquisition time
    log.add(rec('pool.pool-all', 12, k.atMs + 4900, 'pm-0', 8, k.atMs + 1200));
    await vi.advanceTimersByTimeAsync(200);
    expect(k.newLeaderMs).toBe(1200);
    expect(k.led).toEqual(['pool-all']);
    await w;
  });

  it('an instance kill during a gap in the cluster status: its leave is timed no earlier than the first status answered after it, which is recorded', async () => {
    // the instance's manager back at the 3rd read of the tree (pid 11 under the same id)
    const read = (() => {
      let n = 0;
      return () => (++n >= 3 ? [{ pid: 11, ppid: 1, kind: 'instance', id: 'i1' }] : []) as Proc[];
    })();
    const ready = { pools: [{ id: 'pool-all', instances: [{ id: 'i1', state: 'ready' }] }] } as unknown as ClusterStatus;
    let status = ready;
    let statusAt = Date.now() - 300; // read before the kill; no planner answers for 5 s
    const k: Kill = { kind: 'instance', id: 'i1', pid: 10, atMs: Date.now() };
    const w = watchKill(k, read, () => status, () => statusAt, undefined);
    await vi.advanceTimersByTimeAsync(5000);
    expect(k.statusAfterMs).toBeUndefined();
    expect(k.outOfDispatchMs).toBeUndefined();
    status = { pools: [{ id: 'pool-all', instances: [] }] } as unknown as ClusterStatus;
    statusAt = Date.now();
    await vi.advanceTimersByTimeAsync(200);
    expect(k.statusAfterMs).toBe(5000);
    expect(k.outOfDispatchMs).toBeGreaterThanOrEqual(k.statusAfterMs!);
    await w;
  });

  it('a first status after the kill that lists the instance ready, its process back: the leave was missed, no figure', async () => {
    const read = () => [{ pid: 11, ppid: 1, kind: 'instance', id: 'i1' }] as Proc[];
    const status = { pools: [{ id: 'pool-all', instances: [{ id: 'i1', state: 'ready' }] }] } as unknown as ClusterStatus;
    let statusAt = Date.now() - 300;
    const k: Kill = { kind: 'instance', id: 'i1', pid: 10, atMs: Date.now() };
    let done = false;
    const w = watchKill(k, read, () => status, () => statusAt, undefined).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(3000);
    expect(done).toBe(false);
    statusAt = Date.now();
    await vi.advanceTimersByTimeAsync(200);
    expect(done).toBe(true);
    expect(k.statusAfterMs).toBe(3000);
    expect(k.outOfDispatchMs).toBeUndefined();
    await w;
  });

  it('shares one read among every caller within its period', async () => {
    let reads = 0;
    const read = sharedRead(() => ++reads, 250);
    expect([read(), read(), read()]).toEqual([1, 1, 1]);
    await vi.advanceTimersByTimeAsync(249);
    expect(read()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(read()).toBe(2);
    expect(reads).toBe(2);
  });
});

describe('chaos report: the load average', () => {
  it('gives the first, last, least and most of the samples taken during the run (2 decimals), null without any', () => {
    expect(loadRange([12.345, 30.1, 9.999, 17])).toEqual({ first: 12.35, last: 17, min: 10, max: 30.1, samples: 4 });
    expect(loadRange([0.5])).toEqual({ first: 0.5, last: 0.5, min: 0.5, max: 0.5, samples: 1 });
    expect(loadRange([])).toBeNull();
  });
});

/** A lease record of `key` at `revision`, written at `writtenMs`, naming `holder` in `term` acquired at `acquiredMs`. */
function rec(key: string, revision: number, writtenMs: number, holder: string, term: number, acquiredMs: number): LeaseRecord {
  return { key, revision, writtenMs, holder, term, acquiredMs, expiresMs: writtenMs + 1500 };
}

describe('who led at a kill and who took over: the lease records', () => {
  const T = 2_000_000;
  const P = 'cluster.planner';
  it('the record in force at the kill names the leader; the next term is the new one, timed by its acquisition', () => {
    const log = new LeaseLog();
    for (const r of [rec(P, 1, T - 9000, 'cm-1', 3, T - 9000), rec(P, 2, T - 500, 'cm-1', 3, T - 9000), rec(P, 4, T + 1250, 'cm-0', 4, T + 1200), rec(P, 5, T + 1750, 'cm-0', 4, T + 1200)]) log.add(r);
    const k: Kill = { kind: 'cluster', id: 'cm-1', pid: 1, atMs: T };
    timeByLeases(k, log, []);
    expect(k).toMatchObject({ leaderBefore: 'cm-1', newLeaderMs: 1200, newLeader: 'cm-0' });
  });
  it("a stale status naming the victim: the records say another held the lease, so it is a standby's kill, with nothing timed", () => {
    const log = new LeaseLog();
    log.add(rec(P, 1, T - 4000, 'cm-0', 9, T - 4000));
    log.add(rec(P, 2, T - 1000, 'cm-0', 9, T - 4000));
    log.add(rec(P, 3, T + 10_700, 'cm-0', 10, T + 10_700));
    const k: Kill = { kind: 'cluster', id: 'cm-1', pid: 1, atMs: T, leaderBefore: 'cm-1', statusSeenMs: T - 5000 };
    timeByLeases(k, log, []);
    expect(k.leaderBefore).toBe('cm-0');
    expect(k.newLeaderMs).toBeUndefined();
  });
  it("the victim's restarted process taking the lease again under its id is a new leader (a new term)", () => {
    const log = new LeaseLog();
    log.add(rec(P, 1, T - 300, 'cm-0', 2, T - 6000));
    log.add(rec(P, 2, T + 700, 'cm-0', 3, T + 650));
    const k: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: T };
    timeByLeases(k, log, []);
    expect(k).toMatchObject({ leaderBefore: 'cm-0', newLeaderMs: 650, newLeader: 'cm-0' });
  });
  it('a released lease, or one lapsed by the kill, names nobody; records that do not reach back to the kill leave the status\'s reading', () => {
    const log = new LeaseLog();
    log.add(rec(P, 1, T - 300, '', 2, T - 6000));
    const released: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: T, leaderBefore: 'cm-0' };
    timeByLeases(released, log, []);
    expect(released.leaderBefore).toBeUndefined();
    // the victim's last renewal expired 8 s before the kill (it was cut off from JetStream): not a leader's kill
    const lapsed = new LeaseLog();
    lapsed.add(rec(P, 1, T - 9500, 'cm-0', 2, T - 20_000));
    lapsed.add(rec(P, 2, T + 115_000, 'cm-1', 3, T + 115_000));
    const k0: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: T, leaderBefore: 'cm-0' };
    timeByLeases(k0, lapsed, []);
    expect(k0.leaderBefore).toBeUndefined();
    expect(k0.newLeaderMs).toBeUndefined();
    const late = new LeaseLog();
    late.add(rec(P, 9, T + 2000, 'cm-1', 5, T + 1500));
    const k: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: T, leaderBefore: 'cm-0' };
    timeByLeases(k, late, []);
    expect(k).toMatchObject({ leaderBefore: 'cm-0', newLeaderMs: 1500, newLeader: 'cm-1' });
  });
  it('several buckets (a NATS cluster): an acquisition counts once a majority holds it; a split given back leads nobody', () => {
    const b = [new LeaseLog(), new LeaseLog(), new LeaseLog()];
    // cm-1 led term 3 on all three buckets; at the kill's time bucket 2 was down
    for (const [i, rev] of [[0, 1], [1, 1], [2, 1]] as const) b[i]!.add(rec(P, rev, T - 9000, 'cm-1', 3, T - 9000));
    b[0]!.add(rec(P, 2, T - 400, 'cm-1', 3, T - 9000));
    b[1]!.add(rec(P, 2, T - 390, 'cm-1', 3, T - 9000));
    // after the kill: cm-2 took bucket 0 only (a split, given back), then cm-0 took buckets 0 and 1 (a majority)
    b[0]!.add(rec(P, 3, T + 2700, 'cm-2', 4, T + 2690));
    b[0]!.add(rec(P, 4, T + 2710, '', 4, T + 2690));
    b[0]!.add(rec(P, 5, T + 3100, 'cm-0', 5, T + 3050));
    b[1]!.add(rec(P, 3, T + 3120, 'cm-0', 5, T + 3050));
    const log = new MajorityLeaseLog(b);
    expect(log.records(P).map((r) => `${r.holder || '-'}:${r.term}`)).toEqual(['cm-1:3', 'cm-1:3', 'cm-1:3', 'cm-1:3', 'cm-1:3', 'cm-0:5', 'cm-0:5']);
    const k: Kill = { kind: 'cluster', id: 'cm-1', pid: 1, atMs: T };
    timeByLeases(k, log, []);
    expect(k).toMatchObject({ leaderBefore: 'cm-1', newLeaderMs: 3050, newLeader: 'cm-0' });
    // one bucket's records alone (a minority) name no leader
    const alone = new MajorityLeaseLog([b[0]!, new LeaseLog(), new LeaseLog()]);
    expect(alone.records(P)).toEqual([]);
  });
  it('pools: the victim led the pools whose lease names it at the kill, timed once each has a new term', () => {
    const log = new LeaseLog();
    for (const r of [rec('pool.a', 1, T - 100, 'pm-0', 1, T - 5000), rec('pool.b', 2, T - 200, 'pm-1', 1, T - 5000), rec('pool.c', 3, T - 9000, 'pm-0', 1, T - 9000), rec('pool.c', 4, T - 150, 'pm-1', 2, T - 160)]) log.add(r);
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 1, atMs: T, led: ['a'], statusSeenMs: T - 3000 };
    timeByLeases(k, log, ['a', 'b', 'c']);
    expect(k.led).toEqual(['b', 'c']);
    expect(k.leaderBefore).toBe('pm-0,pm-1,pm-1');
    expect(k.newLeaderMs).toBeUndefined();
    log.add(rec('pool.b', 5, T + 900, 'pm-0', 2, T + 850));
    timeByLeases(k, log, ['a', 'b', 'c']);
    expect(k.newLeaderMs).toBeUndefined();
    log.add(rec('pool.c', 6, T + 1400, 'pm-0', 3, T + 1300));
    timeByLeases(k, log, ['a', 'b', 'c']);
    expect(k).toMatchObject({ newLeaderMs: 1300, newLeader: 'b:pm-0,c:pm-0' });
  });
  it('the log keeps each revision once, in revision order, whatever order the watch and the poll read them in', () => {
    const log = new LeaseLog();
    expect(log.add(rec(P, 5, T, 'x', 1, T))).toBe(true);
    expect(log.add(rec(P, 3, T - 10, 'x', 1, T - 10))).toBe(true);
    expect(log.add(rec(P, 5, T, 'x', 1, T))).toBe(false);
    expect(log.records(P).map((r) => r.revision)).toEqual([3, 5]);
    expect(leaseAround(log.records(P), T - 5).at?.revision).toBe(3);
    expect(leaseAround(log.records(P), T - 11).at).toBeUndefined();
  });
});
