/**
 * How `dynamollm chaos` follows a kill (src/cli/commands/chaos.ts): a watcher reads the process tree only
 * until its victim is back, the watchers share one read per period, and a standby manager's kill is not
 * followed for a new leader that never comes. Each read of /proc costs CPU that the restarting actors need,
 * and a watcher's read blocks the harness's own load generator.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadRange, sharedRead, watchKill, type Kill, type Proc } from '../../src/cli/commands/chaos.ts';
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
