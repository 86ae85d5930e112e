/**
 * The simulator's pool level (src/sim/pool-leader.ts): one pool machine for the pool's whole life, driven event by
 * event on a virtual clock as the simulator drives it. Its assignment comes as an 'assign' (nodes and GPU ids), its
 * reconciliation's node commands make the instances (on the nodes and GPUs it chose), their statuses carry their
 * node, GPUs and cumulative admissions, its re-shard epoch runs on the timer it armed, decides on what it counted
 * since its last epoch, and its units are carried out through its node commands and drains.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { SimPoolLeader, type LeaderInstance, type PoolMachineConfig } from '../../src/sim/pool-leader.ts';
import type { NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import type { RequestType } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const TYPES: RequestType[] = ['SS', 'SM', 'MS', 'MM'];
// short and medium requests at a rate 1xTP8 cannot carry within SLO, 2xTP4 can (./sim-reshard-overlap.test.ts)
const RATE: Partial<Record<RequestType, number>> = { SS: 1.2, SM: 2.25, MS: 3.75, MM: 3 };

type Inst = LeaderInstance & { admitted: Partial<Record<RequestType, number>> };

function pool(o: Partial<PoolMachineConfig> = {}) {
  const cfg: PoolMachineConfig = {
    pool: 'pool-MM', holder: 'sim', profile, headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 60_000, healthDeadlineMs: 600_000,
    initialTp: 8, moveQueueAbove: 8, retryAfterS: 1, planner: 'heuristic', burstWindowMs: 180_000, reshardKeepsServing: true,
    overhead: { tauMs: 50, resyncS: 2, instanceStartS: 300 }, ...o,
  };
  let insts: Inst[] = [];
  const commands: { node: string; cmd: NodeCommand; purpose: string; atMs: number }[] = [];
  const drains: { id: string; atMs: number }[] = [];
  const decisions: { atMs: number; decision: Record<string, unknown>; inputs: Record<string, unknown> }[] = [];
  const leader = new SimPoolLeader<Inst>(cfg, TYPES, {
    admit: (_i, req) => ({ v: 1, id: req.id, ok: false }),
    answer: () => {},
    // the loads the instances estimate: far below what they admit (the epoch reads the admissions)
    report: (i) => ({ loadByType: { MM: 0.1 }, admittedByType: { ...i.admitted } }),
    node: (node, cmd, purpose, now) => {
      commands.push({ node, cmd, purpose, atMs: now });
      if (cmd.op === 'start_instance') {
        if (insts.some((i) => i.id === cmd.instanceId)) return false;
        insts = [...insts, { id: cmd.instanceId, tp: cmd.tp!, clockMhz: 1980, state: 'starting', node, gpuIds: cmd.gpuIds!, startedMs: now, served: true, admitted: {} }];
      }
      return true;
    },
    drain: (i, now) => {
      drains.push({ id: i.id, atMs: now });
      i.state = 'draining';
    },
    event: (e, now) => {
      if (e.event === 'reshard' && typeof e.decision.take === 'boolean') decisions.push({ atMs: now, decision: e.decision, inputs: e.inputs });
    },
  }, 0);
  const assignment = (epoch: number): PoolAssignment => ({ v: 1, pool: cfg.pool, types: TYPES, epoch, state: 'active', issuedBy: 'sim', atMs: 0, grants: [{ node: 'server-3', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }] });
  /** 500 ms of the world: started engines are up, drained ones gone, each serving instance admits its share of RATE, every status sent. */
  const half = (t: number) => {
    insts = insts.filter((i) => i.state !== 'draining');
    for (const i of insts) if (i.state === 'starting') i.state = 'active';
    const serving = insts.filter((i) => i.state === 'active');
    for (const i of serving) for (const [ty, r] of Object.entries(RATE) as [RequestType, number][]) i.admitted[ty] = (i.admitted[ty] ?? 0) + (r * 0.5) / serving.length;
    leader.sync(insts, t, 'all');
    leader.tick(insts, t);
  };
  return { leader, assignment, half, commands, drains, decisions, get insts() { return insts; } };
}

describe('the simulated pool level: one pool machine for the pool', () => {
  it('reconciles its assignment into instances on the granted nodes and GPUs, and its epoch runs on the timer it armed from the first traffic', () => {
    const p = pool();
    p.leader.assign(p.assignment(1), p.insts, 0);
    expect(p.commands.map((c) => [c.node, c.cmd.op, c.cmd.instanceId, c.cmd.gpuIds, c.purpose])).toEqual([['server-3', 'start_instance', 'pool-MM-server-3-g0x8', [0, 1, 2, 3, 4, 5, 6, 7], 'reconcile']]);
    // armed at the lead
    expect(p.leader.nextEpochMs()).toBe(60_000);
    // the first status that shows admissions (its second one, 1 s) starts its epochs
    for (let t = 500; t <= 1000; t += 500) p.half(t);
    expect(p.leader.nextEpochMs()).toBe(61_000);
  });

  it('decides at its epoch on the admissions its statuses counted, keeps its burst window across epochs, and carries the re-shard out through its own commands', () => {
    const p = pool();
    p.leader.assign(p.assignment(1), p.insts, 0);
    let t = 0;
    for (t = 500; t < p.leader.nextEpochMs(); t += 500) p.half(t);
    p.leader.epoch(p.insts, t);
    expect(p.decisions).toHaveLength(1);
    const first = p.decisions[0]!;
    // the pool's arrivals over the epoch (its statuses' admissions), not the 0.1 req/s its instances estimate
    const load = first.inputs.loadByType as Partial<Record<RequestType, number>>;
    for (const [ty, r] of Object.entries(RATE) as [RequestType, number][]) expect(load[ty]).toBeCloseTo(r, 6);
    expect(first.decision).toMatchObject({ take: true, target: [{ tp: 4, count: 2 }] });
    // its units: each TP4 starts beside the TP8 (overlap: the TP8 serves until they are up), then the TP8 drains
    for (let k = 0; k < 20 && p.leader.state.reshard; k++) p.half((t += 500));
    expect(p.leader.state.reshard).toBeUndefined();
    expect(p.leader.state.target).toEqual([{ tp: 4, count: 2 }]);
    const starts = p.commands.filter((c) => c.purpose === 'reshard' && c.cmd.op === 'start_instance');
    // on aligned blocks of the TP8's GPUs (policy startOnFreeGpus; the matching keeps weights on every other GPU, which no instance id names)
    expect(starts.map((c) => [c.node, c.cmd.gpuIds])).toEqual([['server-3', [0, 1, 2, 3]], ['server-3', [4, 5, 6, 7]]]);
    expect(p.drains.map((d) => d.id)).toEqual(['pool-MM-server-3-g0x8']);
    expect(p.drains[0]!.atMs).toBeGreaterThan(starts[0]!.atMs);
    expect(p.insts.map((i) => [i.id, i.state])).toEqual([['pool-MM-server-3-g0x4', 'active'], ['pool-MM-server-3-g4x4', 'active']]);
    // the burst window still holds the minutes before that epoch
    expect(p.leader.state.recentLoad[0]!.atMs).toBeLessThan(first.atMs - 30_000);
    // a new assignment of the same GPUs starts nothing: the layout is the machine's own re-shard's
    const before = p.commands.length;
    p.leader.assign(p.assignment(2), p.insts, t);
    expect(p.commands.length).toBe(before);
    // the next epoch decides on the arrivals since this one, on the layout it made
    const next = p.leader.nextEpochMs();
    expect(next).toBe(first.atMs + 60_000);
    for (t += 500; t < next; t += 500) p.half(t);
    p.leader.epoch(p.insts, t);
    expect(p.decisions).toHaveLength(2);
    expect(p.decisions[1]!.decision).toMatchObject({ take: false });
    // (within 2%: what the TP8 admitted in its last half second, between its last status and its drain, is not counted)
    expect((p.decisions[1]!.inputs.loadByType as Partial<Record<RequestType, number>>).MM).toBeGreaterThan(2.94);
    expect((p.decisions[1]!.inputs.loadByType as Partial<Record<RequestType, number>>).MM).toBeLessThanOrEqual(3 + 1e-9);
  });

  it('live (units) a re-shard whose first unit drains the pool\'s only instance (its GPUs held) is not taken: the pool would be dark', () => {
    const p = pool({ reshardKeepsServing: false });
    p.leader.assign(p.assignment(1), p.insts, 0);
    let t = 0;
    for (t = 500; t < p.leader.nextEpochMs(); t += 500) p.half(t);
    p.leader.epoch(p.insts, t);
    // one server at 1xTP8: each TP4 unit drains the only instance first, and the machine keeps the pool lit
    expect(p.decisions[0]!.decision).toMatchObject({ take: false, dark: true });
    expect(p.commands.filter((c) => c.purpose === 'reshard')).toEqual([]);
  });
});
