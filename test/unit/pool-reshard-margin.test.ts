/**
 * The pool's hold against near ties (src/policy/sharding.ts RESHARD_MARGIN, planPoolShards' default), event by event
 * on the pool machine (src/policy/machines/pool.ts, the live pool leader's and the simulator's): a split whose saving
 * a load off by the margin would not pay is not taken; a clear saving is; a current split that cannot carry the
 * load is left at once, for a split that carries the load with the margin; overloaded (no split carries the load), a
 * split whose capacity is within the margin of the current one's is not taken, a clearly larger one is.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import { planPoolShards } from '../../src/policy/pool-shards.ts';
import { RESHARD_MARGIN, planSharding, overheadTable } from '../../src/policy/sharding.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const POOL = 'pool-all';
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic', profile,
};
const assignment: PoolAssignment = { v: 1, pool: POOL, types: ['SS', 'LS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 };
const A = `${POOL}-node-0-g0x4`, B = `${POOL}-node-0-g4x4`;

function status(id: string, load: Partial<Record<RequestType, number>>): InstanceStatus {
  const m = /-g(\d+)x(\d+)$/.exec(id)!;
  const tp = Number(m[2]);
  return {
    v: 1, id, pool: POOL, node: 'node-0', tp: tp as 4, gpuIds: Array.from({ length: tp }, (_, i) => Number(m[1]) + i), state: 'ready', startedMs: T0, seq: 1, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: load,
  };
}

/** A leader of one 8-GPU server running 2xTP4, each instance measuring half of `load`; its re-shard epoch's decision. */
function epoch(load: Partial<Record<RequestType, number>>, c: PoolMachineConfig = cfg): { take: boolean; target: { tp: number; count: number }[]; summary: string; units: number } {
  let s: PoolMachineState = initialPoolState(['SS', 'LS']);
  const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
    const r = poolStep(s, ev, T0 + ms, c);
    s = r.state;
    return r.effects;
  };
  const fx = [...at(0, { type: 'lead', term: 1 }), ...at(0, { type: 'assign', ref: 1, assignment })];
  for (const e of fx) if (e.kind === 'node') at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
  const half = Object.fromEntries(Object.entries(load).map(([t, v]) => [t, v / 2]));
  for (const id of [A, B]) at(20, { type: 'status', status: status(id, half) });
  const out = at(300_000, { type: 'reshard_epoch' }).filter((e) => e.kind === 'event' && e.event === 'reshard');
  const d = out[0] as Extract<PoolEffect, { kind: 'event' }>;
  const dec = d.decision as { take: boolean; target: { tp: number; count: number }[] };
  return { take: dec.take, target: dec.target, summary: d.summary, units: out.filter((e) => (e as { summary: string }).summary.includes('executing')).length };
}

const gpusOf = (t: { tp: number; count: number }[]) => t.reduce((n, c) => n + c.tp * c.count, 0);

describe('pool re-shard: hold against near ties', () => {
  it('the margin is a tenth', () => {
    expect(RESHARD_MARGIN).toBe(0.1);
  });

  it('a near tie keeps the current split: 4xTP2 saves a little more than its cost at the measured load, less 10% lower', () => {
    const d = epoch({ SS: 0.13 });
    expect(d.take).toBe(false);
    expect(d.target).toEqual([{ tp: 2, count: 4 }]);
    expect(d.units).toBe(0);
    expect(d.summary).toMatch(/^pool-all: keep 2xTP4 -> 4xTP2: gain \S+ J over 300 s \(the least over the load \+-10%: \S+ J\) does not pay the reconfiguration cost \S+ J$/);
    // the saving at the measured load alone pays the cost: without the margin the epoch would re-shard
    const bare = planPoolShards({ profile, load: { SS: 0.13 }, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2, margin: 0 })!;
    expect(bare.take).toBe(true);
  });

  it('a clear saving re-shards', () => {
    const d = epoch({ SS: 0.3 });
    expect(d.take).toBe(true);
    expect(d.target).toEqual([{ tp: 2, count: 4 }]);
    expect(d.units).toBe(1);
    expect(d.summary).toMatch(/take 2xTP4 -> 4xTP2: saves \S+ J over 300 s \(the least over the load \+-10%: \S+ J\) > reconfiguration cost/);
  });

  it('a current split that cannot carry the load within SLO is left at once, for one that carries it with the margin', () => {
    const d = epoch({ LS: 0.42 });
    expect(d.take).toBe(true);
    expect(d.summary).toContain('current split cannot carry 0.42 req/s within SLO');
    // the target carries the load x (1 + margin): kept as the current split, it is not left at that load
    const p = (current: number[], l: number) => planSharding({ profile, loadByType: { LS: l }, gpus: 8, current: current.map((tp) => ({ tp: tp as 2 | 4 | 8, count: 1 })), epochS: 300, overhead: overheadTable(), headroom: 0.2 });
    const after = d.target.flatMap((c) => Array<number>(c.count).fill(c.tp));
    expect(gpusOf(d.target)).toBe(8);
    expect(p(after, 0.42 * (1 + RESHARD_MARGIN)).currentFeasible).toBe(true);
    // without the margin the epoch moves to the cheapest split that carries 0.42 req/s exactly, which 10% more load overloads
    const bare = planPoolShards({ profile, load: { LS: 0.42 }, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2, margin: 0 })!;
    expect(bare.target).not.toEqual(d.target);
    expect(p(bare.target.flatMap((c) => Array<number>(c.count).fill(c.tp)), 0.42 * (1 + RESHARD_MARGIN)).currentFeasible).toBe(false);
  });

  // the simulator's overlap re-shard (the old layout serves until the new one is up): a 2xTP4 -> 1xTP8 unit is not dark
  const overlap: PoolMachineConfig = { ...cfg, reshardKeepsServing: true };

  it('overloaded, a split of no more than the margin above the current capacity is not taken (the first day\'s one-server S, M and ML pool)', () => {
    // 3.8 req/s that no split of 8 GPUs carries within SLO: 1xTP8 carries 2.6% more of this mix than 2xTP4
    const mix = { ML: 1.5, SM: 1.0, MS: 0.8, MM: 0.5 };
    const d = epoch(mix, overlap);
    expect(d.take).toBe(false);
    expect(d.target).toEqual([{ tp: 4, count: 2 }]);
    expect(d.units).toBe(0);
    expect(d.summary).toMatch(/^pool-all: keep 2xTP4 -> 2xTP4: overloaded: no split of 8 GPUs carries 3\.8 req\/s within SLO; the current split's capacity \(3\.7\d* req\/s\) is within 10% of the highest \(3\.8\d* req\/s\): kept$/);
    // without the margin the highest-capacity split is taken
    const bare = planPoolShards({ profile, load: mix, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2, margin: 0 })!;
    expect(bare.take).toBe(true);
    expect(bare.target).toEqual([{ tp: 8, count: 1 }]);
  });

  it('overloaded, a split of clearly more capacity is taken: ML alone, 1xTP8 carries 19% more than 2xTP4', () => {
    const d = epoch({ ML: 3 }, overlap);
    expect(d.take).toBe(true);
    expect(d.target).toEqual([{ tp: 8, count: 1 }]);
    expect(d.summary).toContain('overloaded: no split of 8 GPUs carries 3 req/s within SLO; taking the highest-capacity split');
  });

  it('an infeasible current split is left even where the margin would hold a feasible one (safety before the hold)', () => {
    const d = planPoolShards({ profile, load: { LS: 0.42 }, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2, margin: 5 })!;
    expect(d.take).toBe(true);
    expect(d.inputs.currentFeasible).toBe(false);
  });
});
