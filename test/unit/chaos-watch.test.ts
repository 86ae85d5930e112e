/**
 * How `dynamollm chaos` follows a kill (src/cli/commands/chaos.ts): a watcher reads the process tree only
 * until its victim is back, the watchers share one read per period, and a standby manager's kill is not
 * followed for a new leader that never comes. Each read of /proc costs CPU that the restarting actors need,
 * and a watcher's read blocks the harness's own load generator.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { leadersFromElections, loadRange, newLeaderAfter, sharedRead, watchKill, type Elected, type Kill, type Proc } from '../../src/cli/commands/chaos.ts';
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
    const w = watchKill(k, t.read, () => status, () => 0, []).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(300);
    expect(k.restartMs).toBeGreaterThanOrEqual(300);
    expect(t.reads()).toBe(3);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(done).toBe(true);
    expect(t.reads()).toBe(3);
    expect(k.newLeaderMs).toBeUndefined();
    await w;
  });

  it('still follows the kill of a pool leader until a new one is elected', async () => {
    const t = tree(1);
    const status = { pools: [{ id: 'pool-all', leader: 'pm-1', instances: [] }] } as unknown as ClusterStatus;
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 10, atMs: Date.now() };
    const elected: { atMs: number; pool?: string; leader: string }[] = [];
    let done = false;
    const w = watchKill(k, t.read, () => status, () => 0, elected).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(5000);
    expect(done).toBe(false);
    elected.push({ atMs: Date.now(), pool: 'pool-all', leader: 'pm-0' });
    await vi.advanceTimersByTimeAsync(200);
    expect(done).toBe(true);
    expect(k.newLeaderMs).toBe(5000);
    expect(t.reads()).toBe(1);
    await w;
  });

  it('times a new leader by the elections\' own times, not by the order they arrived in', async () => {
    const t = tree(1);
    const status = { pools: [{ id: 'pool-all', leader: 'pm-1', instances: [] }] } as unknown as ClusterStatus;
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 10, atMs: Date.now() };
    const elected: { atMs: number; pool?: string; leader: string }[] = [];
    const w = watchKill(k, t.read, () => status, () => 0, elected);
    await vi.advanceTimersByTimeAsync(5000);
    // a later election arrives first; the one 1.2 s after the kill (sent while the observer was reconnecting) after it
    elected.push({ atMs: k.atMs + 4900, pool: 'pool-all', leader: 'pm-1' }, { atMs: k.atMs + 1200, pool: 'pool-all', leader: 'pm-0' });
    await vi.advanceTimersByTimeAsync(200);
    expect(k.newLeaderMs).toBe(1200);
    expect(k.led).toEqual(['pool-all']);
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

describe('who led at a kill: the elections after the last status read', () => {
  const T = 2_000_000;
  it("a stale status naming the victim: an election of another since makes it a standby's kill, with no new leader timed", () => {
    // status read 5 s before the kill named cm-1; cm-0 was elected 4 s before it (the 60-s kill of the 04:51 run)
    const k: Kill = { kind: 'cluster', id: 'cm-1', pid: 1, atMs: T, leaderBefore: 'cm-1', statusSeenMs: T - 5000 };
    const elected: Elected[] = [{ atMs: T - 4000, leader: 'cm-0' }, { atMs: T + 10_700, leader: 'cm-0' }];
    expect(newLeaderAfter(k, elected)).toBe(10_700);
    leadersFromElections(k, elected);
    expect(k.leaderBefore).toBe('cm-0');
    expect(newLeaderAfter(k, elected)).toBeUndefined();
  });
  it('a stale status naming another: an election of the victim since makes it a leader\'s kill', () => {
    const k: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: T, leaderBefore: 'cm-1', statusSeenMs: T - 3000 };
    const elected: Elected[] = [{ atMs: T - 2000, leader: 'cm-0' }, { atMs: T + 1500, leader: 'cm-1' }];
    leadersFromElections(k, elected);
    expect(newLeaderAfter(k, elected)).toBe(1500);
  });
  it('elections before the status read leave the status\'s leader', () => {
    const k: Kill = { kind: 'cluster', id: 'cm-1', pid: 1, atMs: T, leaderBefore: 'cm-1', statusSeenMs: T - 200 };
    leadersFromElections(k, [{ atMs: T - 4000, leader: 'cm-0' }]);
    expect(k.leaderBefore).toBe('cm-1');
  });
  it('pools: the victim led the pools whose last election since the status read names it', () => {
    const k: Kill = { kind: 'pool', id: 'pm-1', pid: 1, atMs: T, led: ['a'], statusSeenMs: T - 3000 };
    const elected: Elected[] = [{ atMs: T - 2000, pool: 'a', leader: 'pm-0' }, { atMs: T - 1000, pool: 'b', leader: 'pm-1' }, { atMs: T - 5000, pool: 'c', leader: 'pm-1' }];
    leadersFromElections(k, elected);
    expect(k.led).toEqual(['b']);
    const standby: Kill = { kind: 'pool', id: 'pm-1', pid: 1, atMs: T, led: ['a'], statusSeenMs: T - 3000 };
    leadersFromElections(standby, [{ atMs: T - 2000, pool: 'a', leader: 'pm-0' }]);
    expect(standby.led).toBeUndefined();
  });
});
