/**
 * `planner: milp`: the rule that takes or keeps the MILP's split (policy milpShardDecision) is pure and the pool
 * machine's, so the live pool leader (whose worker only solves) and the simulator (which solves with HiGHS on its own
 * thread, `simulate --pool-planner milp`) decide alike on the same solve.
 */
import { describe, it, expect } from 'vitest';
import { profileFor, simulate } from '../../src/sim/index.ts';
import { planPoolShards, type PoolShardInput } from '../../src/policy/pool-shards.ts';
import { milpShardDecision, milpSolveInput, type MilpSolveOutcome } from '../../src/policy/pool-shards-milp.ts';
import { initialPoolState, poolStep, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { maxClockOf } from '../../src/policy/energy.ts';
import { instanceStatusMaker } from '../helpers/instance-status.ts';

const profile = profileFor('llama2-70b', 'h100');
const input: PoolShardInput = { profile, load: { SS: 2, SM: 2 }, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0 };
const optimal = (groups: { tp: 2 | 4 | 8; count: number }[], energy: number): MilpSolveOutcome => ({
  result: { status: 'Optimal', feasible: true, energy, solveMs: 1, variables: 2, config: groups.map((g) => ({ pool: 'pool', ...g, clockMhz: 1980, loadPerInstance: 1, powerW: 1 })) },
});

describe('the MILP re-shard rule (policy milpShardDecision)', () => {
  const h = planPoolShards(input)!;
  const currentJ = Number(h.inputs.currentEnergyJ);

  it('solves Eq. 1 at max clock for the pool\'s load; nothing to solve without load', () => {
    expect(milpSolveInput(input)).toEqual({ profile, pools: [{ id: 'pool', loadByType: { SS: 2, SM: 2 } }], gpus: 8, epochS: 300, clocks: [maxClockOf(profile)] });
    expect(milpSolveInput({ ...input, load: {} })).toBeUndefined();
  });

  it('takes a split whose gain over the epoch pays the reconfiguration cost, keeps one whose gain does not', () => {
    expect(h.inputs.currentFeasible).toBe(true);
    const big = milpShardDecision(input, h, optimal([{ tp: 8, count: 1 }], 0));
    expect(big).toMatchObject({ take: true, target: [{ tp: 8, count: 1 }], inputs: { planner: 'milp' } });
    const small = milpShardDecision(input, h, optimal([{ tp: 8, count: 1 }], currentJ - 1));
    expect(small).toMatchObject({ take: false, target: [{ tp: 8, count: 1 }] });
    expect(small.summary).toMatch(/^2xTP4 -> 1xTP8 \(MILP\): gain 1 J does not pay the reconfiguration cost \d+ J$/);
    expect(milpShardDecision(input, h, optimal([{ tp: 4, count: 2 }], 0))).toMatchObject({ take: false, summary: '2xTP4 -> 2xTP4 (MILP): the MILP optimum is the current split' });
  });

  it('the heuristic decides on a solve error or an infeasible MILP', () => {
    expect(milpShardDecision(input, h, { error: 'MILP solve exceeded its 5000 ms deadline' })).toMatchObject({ take: h.take, target: h.target, inputs: { planner: 'heuristic', milpFallback: 'MILP solve exceeded its 5000 ms deadline' } });
    const infeasible: MilpSolveOutcome = { result: { status: 'Infeasible', feasible: false, energy: NaN, solveMs: 1, variables: 2, config: [] } };
    expect(milpShardDecision(input, h, infeasible).inputs).toMatchObject({ planner: 'heuristic', milpFallback: 'MILP Infeasible' });
  });

  it('the pool machine decides on the solve it asked for: the solver\'s outcome, not a decision, comes back', () => {
    const cfg: PoolMachineConfig = { pool: 'pool-SS', holder: 'pm-1', profile, headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'milp' };
    const T0 = 1_700_000_000_000;
    let s: PoolMachineState = initialPoolState(['SS']);
    const at = (ms: number, ev: Parameters<typeof poolStep>[1]) => {
      const r = poolStep(s, ev, T0 + ms, cfg);
      s = r.state;
      return r.effects;
    };
    const status = instanceStatusMaker('pool-SS', T0);
    for (const g of [[0, 1, 2, 3], [4, 5, 6, 7]]) at(0, { type: 'status', status: status(`pool-SS-node-0-g${g[0]}x4`, { gpuIds: g, loadByType: { SS: 2 } }) });
    at(10, { type: 'lead', stored: { v: 1, pool: 'pool-SS', types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm', atMs: T0 } });
    for (const g of [[0, 1, 2, 3], [4, 5, 6, 7]]) at(20, { type: 'status', status: status(`pool-SS-node-0-g${g[0]}x4`, { gpuIds: g, loadByType: { SS: 2 } }) });
    const [solve] = at(300_000, { type: 'reshard_epoch' }).filter((e) => e.kind === 'solve');
    expect(solve).toMatchObject({ kind: 'solve', input: { pools: [{ id: 'pool', loadByType: { SS: 4 } }], gpus: 8 } });
    const fx = at(300_100, { type: 'planned', solved: { error: 'worker exited' } });
    const [ev] = fx.filter((e) => e.kind === 'event' && e.event === 'reshard');
    expect(ev).toMatchObject({ inputs: { planner: 'heuristic', milpFallback: 'worker exited' } });
    expect(s.planning).toBeUndefined();
  });
});

describe('simulate --pool-planner milp', () => {
  it('runs the pool machine with the MILP planner: every re-shard decision is the MILP rule\'s (or its heuristic fallback, said so)', async () => {
    const planners: unknown[] = [];
    const trace = { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 12 * 60_000 } as const;
    await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 4, policy: 'scale-shard', fidelity: 'fluid', trace, rateScale: 0.2, poolPlanner: 'milp' }, undefined, {
      onPoolDecision: (_pool, _t, e) => planners.push(e.inputs.planner),
    });
    expect(planners.length).toBeGreaterThan(0);
    expect(planners).toContain('milp');
  }, 60_000);
});
