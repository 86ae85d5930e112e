/**
 * The simulator's pool level (src/sim/pool-leader.ts) for the tests of one re-shard epoch: a SimPoolLeader led at
 * `now`, assigned the pool's GPUs (whole servers; the instances packed on them in TP order, largest first, then the
 * GPUs no instance holds), told each instance's status, then its epoch: the decision event its machine publishes.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { PoolAssignment } from '../../protocols/control.ts';
import { SimPoolLeader, type LeaderInstance, type PoolMachineConfig, type StatusReport } from '../../src/sim/pool-leader.ts';
import type { InstanceConfig, LoadByType } from '../../src/policy/types.ts';

export interface PoolView { id: string; tp: number; ready: boolean; clockMhz: number; load: LoadByType; epochLoad?: LoadByType; prefix?: { lookup: number; hit: number } | undefined }
export interface EpochDecision { take: boolean; target: InstanceConfig[]; event: { summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> } }

type Inst = LeaderInstance & { view: PoolView };

export function epochDecision(cfg: PoolMachineConfig, types: RequestType[], views: PoolView[], gps: number, now: number, poolGpus: number): EpochDecision | undefined {
  const used: boolean[][] = [];
  const insts: Inst[] = [];
  for (const v of [...views].sort((a, b) => b.tp - a.tp)) {
    let placed = false;
    for (let n = 0; !placed; n++) {
      const u = (used[n] ??= new Array<boolean>(gps).fill(false));
      for (let g = 0; g + v.tp <= gps && !placed; g += v.tp) {
        if (u.slice(g, g + v.tp).some((x) => x)) continue;
        for (let x = g; x < g + v.tp; x++) u[x] = true;
        insts.push({ id: v.id, tp: v.tp, clockMhz: v.clockMhz, state: v.ready ? 'active' : 'starting', served: true, node: `server-${n}`, gpuIds: Array.from({ length: v.tp }, (_, x) => g + x), startedMs: 0, view: v });
        placed = true;
      }
    }
  }
  const servers = Math.ceil(poolGpus / gps);
  const assignment: PoolAssignment = { v: 1, pool: cfg.pool, types, epoch: 1, state: 'active', issuedBy: 'test', atMs: now, grants: Array.from({ length: servers }, (_, n) => ({ node: `server-${n}`, gpuIds: Array.from({ length: gps }, (_, g) => g) })) };
  let decision: EpochDecision | undefined;
  const leader = new SimPoolLeader<Inst>(cfg, types, {
    admit: (_i, req) => ({ v: 1, id: req.id, ok: false }),
    answer: () => {},
    report: (i): StatusReport => ({ loadByType: i.view.load, ...(i.view.epochLoad ? { epochLoadByType: i.view.epochLoad } : {}), ...(i.view.prefix ? { prefixCacheTokens: i.view.prefix } : {}) }),
    // the instances are the layout the test gives: reconciliation's starts on GPUs they leave free are refused
    node: () => false,
    event: (e) => {
      if (e.event === 'reshard' && typeof e.decision.take === 'boolean') decision ??= { take: e.decision.take, target: e.decision.target as InstanceConfig[], event: { summary: e.summary, decision: e.decision, inputs: e.inputs } };
    },
  }, now);
  leader.sync(insts, now);
  leader.assign(assignment, insts, now);
  leader.epoch(insts, now);
  return decision;
}
