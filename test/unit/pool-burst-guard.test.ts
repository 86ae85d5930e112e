/**
 * The pool's burst guard (src/policy/pool-shards.ts): the window of minutes of arrivals (recordPoolArrivals), its
 * highest minute (windowPeak), the guarded load, and the re-shard plan that leaves out the instances the window's
 * highest minute does not need (planPoolShards with `peak`); the pool machine that feeds the window from its
 * instances' statuses (admittedByType) and plans with it, event by event on a virtual clock.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { admittedBetween, guardedPoolLoad, planPoolShards, POOL_BURST_WINDOW_EPOCHS, POOL_LOAD_BUCKET_MS, poolBurstWindowMs, recordPoolArrivals, windowPeak, type PoolLoadSample } from '../../src/policy/pool-shards.ts';

const profile = profileFor('llama2-70b', 'h100');
const MIN = POOL_LOAD_BUCKET_MS;
const W = 30 * MIN;

describe('burst window', () => {
  it('minutes count from an origin (the pool\'s first traffic) when one is given', () => {
    let w: PoolLoadSample[] = [];
    w = recordPoolArrivals(w, { SS: 3 }, 40_000, W, 40_000);
    w = recordPoolArrivals(w, { SS: 2 }, 99_000, W, 40_000);
    w = recordPoolArrivals(w, { SS: 1 }, 100_000, W, 40_000);
    expect(w).toEqual([{ atMs: 40_000, counts: { SS: 5 } }, { atMs: 100_000, counts: { SS: 1 } }]);
  });

  it('adds arrivals to the minute they arrive in and drops minutes that ended a window ago', () => {
    let w: PoolLoadSample[] = [];
    w = recordPoolArrivals(w, { SS: 3 }, 10_000, W);
    w = recordPoolArrivals(w, { SS: 2, LS: 1 }, 50_000, W);
    w = recordPoolArrivals(w, { SS: 1 }, MIN + 5_000, W);
    expect(w).toEqual([{ atMs: 0, counts: { SS: 5, LS: 1 } }, { atMs: MIN, counts: { SS: 1 } }]);
    // nothing arrived: the window only ages
    expect(recordPoolArrivals(w, {}, MIN + 6_000, W)).toEqual(w);
    // minute 0 ended at 1 min; at 31 min it is a whole window old
    w = recordPoolArrivals(w, {}, W + MIN, W);
    expect(w).toEqual([{ atMs: MIN, counts: { SS: 1 } }]);
    expect(recordPoolArrivals(w, { SS: 1 }, W + MIN, 0)).toEqual([]);
  });

  it('stays bounded: one bucket per minute of the window', () => {
    let w: PoolLoadSample[] = [];
    for (let t = 0; t < 3 * W; t += 5_000) w = recordPoolArrivals(w, { SS: 1 }, t, W);
    expect(w.length).toBeLessThanOrEqual(W / MIN + 1);
    expect(w.every((x) => x.counts.SS === MIN / 5_000)).toBe(true);
  });

  it('the highest minute is the busiest minute with its own mix, as req/s (not per-type maxima of different minutes)', () => {
    const w: PoolLoadSample[] = [
      { atMs: 0, counts: { SS: 60, LS: 0 } },
      { atMs: MIN, counts: { SS: 30, LS: 60 } },
      { atMs: 2 * MIN, counts: { LS: 80 } },
    ];
    expect(windowPeak(w)).toEqual({ SS: 0.5, LS: 1 });
    expect(windowPeak([])).toEqual({});
  });

  it('the guarded load is the per-type max of the measured load and the highest minute; no window, no guard', () => {
    expect(guardedPoolLoad({ SS: 2, LS: 0.1 }, { SS: 1, LS: 1.5 })).toEqual({ load: { SS: 2, LS: 1.5 }, guarded: true });
    expect(guardedPoolLoad({ SS: 2 }, {})).toEqual({ load: { SS: 2 }, guarded: false });
    expect(guardedPoolLoad({ SS: 2 }, undefined)).toEqual({ load: { SS: 2 }, guarded: false });
  });
});

describe('re-shard plan under the burst guard', () => {
  const base = { profile, load: { SS: 1 }, gpus: 16, current: [4, 4, 4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2 };

  it('without a guard every granted GPU is in an instance', () => {
    const d = planPoolShards(base)!;
    expect(d.target.reduce((n, c) => n + c.tp * c.count, 0)).toBe(16);
  });

  it('keeps what the highest minute needs, more for a larger burst, and leaves the rest out of any instance', () => {
    const gpusFor = (peak: number) => {
      const d = planPoolShards({ ...base, peak: { SS: peak }, allowIdleGpus: true })!;
      return { gpus: d.target.reduce((n, c) => n + c.tp * c.count, 0), d };
    };
    const quiet = gpusFor(1), burst = gpusFor(20), big = gpusFor(60);
    expect(quiet.gpus).toBeLessThan(16);
    expect(burst.gpus).toBeGreaterThan(quiet.gpus);
    expect(big.gpus).toBeGreaterThan(burst.gpus);
    expect(quiet.d.summary).toMatch(/burst guard: carries the recent window's highest minute \(1\.00 req\/s\), \d+ of 16 GPUs in no instance/);
    // the split kept is the unguarded split's shape, with fewer instances
    const full = planPoolShards(base)!;
    for (const c of big.d.target) expect(c.count).toBeLessThanOrEqual(full.target.find((x) => x.tp === c.tp)?.count ?? 0);
  });

  it('a burst no split of the shape carries keeps the unguarded split (never fewer GPUs than the measured load needs)', () => {
    const d = planPoolShards({ ...base, load: { SS: 1 }, peak: { SS: 10_000 }, allowIdleGpus: true })!;
    expect(d.target).toEqual(planPoolShards(base)!.target);
  });
});

// ---------------------------------------------------------------- the pool machine, event by event
const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const cfg = (o: Partial<PoolMachineConfig> = {}): PoolMachineConfig => ({
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic', ...o,
});
const seqs = new Map<string, number>();
/** An instance's status (id `<pool>-<node>-g<first GPU>x<tp>`); `seq` counts per instance unless given. */
function status(id: string, o: Partial<InstanceStatus> = {}): InstanceStatus {
  const seq = o.seq ?? (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const m = /-(node-\d+)-g(\d+)x(\d+)$/.exec(id)!;
  const tp = Number(m[3]);
  return {
    v: 1, id, pool: POOL, node: m[1], tp: tp as 1 | 2 | 4 | 8, gpuIds: Array.from({ length: tp }, (_, i) => Number(m[2]) + i), state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
}
const assignment = (grants: { node: string; gpuIds: number[] }[]): PoolAssignment => ({ v: 1, pool: POOL, types: ['SS'], grants, epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 });
const G8 = (node: string) => ({ node, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] });
class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  constructor(readonly c: PoolMachineConfig) {}
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const { state, effects } = poolStep(this.s, ev, T0 + ms, this.c);
    this.s = state;
    return effects;
  }
  lead(ms: number, a: PoolAssignment): PoolEffect[] {
    return [...this.at(ms, { type: 'lead', term: 1 }), ...this.at(ms, { type: 'assign', ref: 1, assignment: a })];
  }
}
const nodeCmds = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));
const events = (fx: PoolEffect[], kind?: string) => fx.flatMap((e) => (e.kind === 'event' && (!kind || e.event === kind) ? [e] : []));

describe('pool machine: burst guard (a window of minutes of arrivals from the statuses\' admission counters)', () => {
  const a = `${POOL}-node-0-g0x4`, b = `${POOL}-node-0-g4x4`, c = `${POOL}-node-1-g0x4`, e = `${POOL}-node-1-g4x4`;
  const W = 1_800_000;
  /** a leader of two 8-GPU grants running four TP4 instances, each reporting a low measured load. */
  function pool(): Drive {
    const d = new Drive(cfg({ profile, burstWindowMs: W, headroom: 0.2 }));
    const fx = d.lead(0, assignment([G8('node-0'), G8('node-1')]));
    for (const cmd of nodeCmds(fx)) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
    for (const id of [a, b, c, e]) d.at(20, { type: 'status', status: status(id, { loadByType: { SS: 0.25 }, admittedByType: { SS: 100 } }) });
    return d;
  }
  const reshardOf = (fx: PoolEffect[]) => events(fx, 'reshard')[0]!.decision as { take: boolean; target: { tp: number; count: number }[] };
  const gpus = (t: { tp: number; count: number }[]) => t.reduce((n, x) => n + x.tp * x.count, 0);

  it('counts what each instance admitted between two statuses of the same process, into the minute it reports in, minutes counted from its first traffic', () => {
    const d = pool();
    expect(d.s.recentLoad).toEqual([]); // a first status counts nothing: the counter ran before this leader saw it
    d.at(30_000, { type: 'status', status: status(a, { admittedByType: { SS: 130, LS: 2 } }) });
    expect(d.s.trafficAtMs).toBe(T0 + 30_000);
    d.at(30_000, { type: 'status', status: status(b, { admittedByType: { SS: 110 } }) });
    // 59 s after the first traffic: its first minute (on the wall clock, T0 + 30 s and T0 + 89 s are in two minutes)
    expect(Math.floor((T0 + 30_000) / 60_000)).not.toBe(Math.floor((T0 + 89_000) / 60_000));
    d.at(89_000, { type: 'status', status: status(c, { admittedByType: { SS: 103 } }) });
    d.at(90_000, { type: 'status', status: status(a, { admittedByType: { SS: 131, LS: 2 } }) });
    expect(d.s.recentLoad).toEqual([{ atMs: T0 + 30_000, counts: { SS: 43, LS: 2 } }, { atMs: T0 + 90_000, counts: { SS: 1 } }]);
    // an out-of-order status, a restarted process (new startedMs) and a status without the counter count nothing
    const before = d.s.recentLoad;
    d.at(71_000, { type: 'status', status: status(a, { seq: 1, admittedByType: { SS: 999 } }) });
    d.at(72_000, { type: 'status', status: status(b, { startedMs: T0 + 60_000, admittedByType: { SS: 500 } }) });
    d.at(73_000, { type: 'status', status: status(e) });
    expect(d.s.recentLoad).toEqual(before);
  });

  it('a quiet pool with no burst in its window leaves the instances it does not need out; a burst minute keeps them', () => {
    const quiet = pool();
    quiet.at(100_000, { type: 'status', status: status(a, { loadByType: { SS: 0.25 }, admittedByType: { SS: 110 } }) });
    const q = reshardOf(quiet.at(300_000, { type: 'reshard_epoch' }));
    expect(q.take).toBe(true);
    expect(gpus(q.target)).toBeLessThan(16);
    // the same measured load, but 1,200 SS requests arrived within one minute of the window (20 req/s)
    const burst = pool();
    burst.at(100_000, { type: 'status', status: status(a, { loadByType: { SS: 0.25 }, admittedByType: { SS: 700 } }) });
    burst.at(100_000, { type: 'status', status: status(b, { loadByType: { SS: 0.25 }, admittedByType: { SS: 700 } }) });
    const fx = burst.at(300_000, { type: 'reshard_epoch' });
    const k = reshardOf(fx);
    expect(gpus(k.target)).toBeGreaterThan(gpus(q.target));
    // exactly the policy's plan for the measured load guarded by that minute
    const plan = planPoolShards({ profile, load: { SS: 1 }, peak: { SS: 20 }, allowIdleGpus: true, gpus: 16, current: [4, 4, 4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2 })!;
    expect(k.target).toEqual(plan.target);
    expect(events(fx, 'reshard')[0]!.summary).toBe(`${POOL}: ${plan.take ? 'take' : 'keep'} ${plan.summary}`);
  });

  it('the window is three re-shard epochs (the live pool leader and the simulator): a burst 10 min before the epoch holds instances, one 20 min before no longer', () => {
    expect(POOL_BURST_WINDOW_EPOCHS).toBe(3);
    expect(poolBurstWindowMs(300_000)).toBe(900_000);
    const held = (windowMs: number, epochAtMs: number): number => {
      const d = new Drive(cfg({ profile, burstWindowMs: windowMs, headroom: 0.2 }));
      const fx = d.lead(0, assignment([G8('node-0'), G8('node-1')]));
      for (const cmd of nodeCmds(fx)) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
      for (const id of [a, b, c, e]) d.at(20, { type: 'status', status: status(id, { loadByType: { SS: 0.25 }, admittedByType: { SS: 100 } }) });
      // a burst of 1,200 SS requests within the second minute, then a quiet trickle up to the epoch
      for (const id of [a, b]) d.at(100_000, { type: 'status', status: status(id, { loadByType: { SS: 0.25 }, admittedByType: { SS: 700 } }) });
      d.at(epochAtMs - 30_000, { type: 'status', status: status(a, { loadByType: { SS: 0.25 }, admittedByType: { SS: 712 } }) });
      return gpus(reshardOf(d.at(epochAtMs, { type: 'reshard_epoch' })).target);
    };
    const W3 = poolBurstWindowMs(300_000);
    expect(held(W3, 600_000)).toBeGreaterThan(held(W3, 1_200_000));
    // the cluster's 30-min window would still hold the burst's instances at 20 min
    expect(held(1_800_000, 1_200_000)).toBe(held(W3, 600_000));
  });

  it('without a window (burstWindowMs absent) the epoch keeps every granted GPU in an instance', () => {
    const d = new Drive(cfg({ profile, headroom: 0.2 }));
    const fx = d.lead(0, assignment([G8('node-0'), G8('node-1')]));
    for (const cmd of nodeCmds(fx)) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
    for (const id of [a, b, c, e]) d.at(20, { type: 'status', status: status(id, { loadByType: { SS: 0.25 }, admittedByType: { SS: 100 } }) });
    d.at(100_000, { type: 'status', status: status(a, { loadByType: { SS: 0.25 }, admittedByType: { SS: 700 } }) });
    expect(d.s.recentLoad).toEqual([]);
    const k = reshardOf(d.at(300_000, { type: 'reshard_epoch' }));
    expect(gpus(k.target)).toBe(16);
  });
});

describe('admission counter increments', () => {
  const st = (seq: number, startedMs: number, admittedByType?: Record<string, number>) => ({ seq, startedMs, ...(admittedByType ? { admittedByType } : {}) });
  it('counts the increments between two statuses of one process, and nothing it cannot count from', () => {
    expect(admittedBetween(st(1, 5, { SS: 10, LS: 3 }), st(2, 5, { SS: 14, LS: 3, MS: 1 }))).toEqual({ SS: 4, MS: 1 });
    expect(admittedBetween(undefined, st(1, 5, { SS: 10 }))).toBeUndefined();
    expect(admittedBetween(st(1, 5, { SS: 10 }), st(2, 9, { SS: 1 }))).toBeUndefined(); // a restart
    expect(admittedBetween(st(2, 5, { SS: 10 }), st(2, 5, { SS: 12 }))).toBeUndefined(); // not newer
    expect(admittedBetween(st(1, 5), st(2, 5, { SS: 12 }))).toBeUndefined(); // an older instance manager
  });
});
