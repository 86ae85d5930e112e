/**
 * One simulated pool manager's re-shard epoch: the pool machine (src/policy/machines/pool.ts, the code the
 * live pool leader runs) decides on the statuses the pool's instances report, on the simulator's virtual
 * clock. The simulator hands it what the live leader would hold at its epoch timer: the pool's assignment
 * (its GPUs, the instances packed onto whole servers in TP order) and one status per instance (its TP,
 * state and measured load), then steps its 'reshard_epoch' and reads the decision it publishes. How the
 * decision is carried out (the staggered units, their start and drain waits) is the simulator's engine
 * model: the new layout serves after tau x Table VI + resync (./engine.ts). No decision is taken here.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolMachineConfig, type PoolMachineState } from '../policy/machines/pool.ts';
import type { InstanceConfig } from '../policy/types.ts';

export interface SimPoolInstance { id: string; tp: number; ready: boolean; clockMhz: number; load: Partial<Record<RequestType, number>> }

export interface PoolReshardDecision { take: boolean; target: InstanceConfig[] }

/**
 * The pool machine's re-shard decision for these instances; undefined when it takes none this epoch (an
 * instance not ready, an instance outside the profile's TP degrees).
 */
export function poolReshardDecision(cfg: PoolMachineConfig, types: RequestType[], instances: SimPoolInstance[], gpusPerServer: number, now: number): PoolReshardDecision | undefined {
  const placed = packOnServers(instances, gpusPerServer);
  if (!placed) return undefined;
  const grants = new Map<string, number[]>();
  for (const p of placed) grants.set(p.node, [...(grants.get(p.node) ?? []), ...p.gpuIds]);
  const assignment: PoolAssignment = {
    v: 1, pool: cfg.pool, types, epoch: 1, state: 'active', issuedBy: 'sim', atMs: now,
    grants: [...grants].map(([node, gpuIds]) => ({ node, gpuIds: gpuIds.sort((a, b) => a - b) })),
  };
  let s: PoolMachineState = initialPoolState(types);
  const step = (ev: Parameters<typeof poolStep>[1]): PoolEffect[] => {
    const r = poolStep(s, ev, now, cfg);
    s = r.state;
    return r.effects;
  };
  for (const [k, i] of instances.entries()) {
    const p = placed[k]!;
    const status: InstanceStatus = {
      v: 1, id: i.id, pool: cfg.pool, node: p.node, tp: i.tp as InstanceStatus['tp'], gpuIds: p.gpuIds, state: i.ready ? 'ready' : 'starting', startedMs: 0, seq: 1, sentMs: now,
      clockMhz: i.clockMhz, maxClockMhz: i.clockMhz, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: i.load,
    };
    step({ type: 'status', status });
  }
  step({ type: 'lead', stored: assignment });
  const fx = step({ type: 'reshard_epoch' });
  for (const e of fx) if (e.kind === 'event' && e.event === 'reshard' && typeof e.decision.take === 'boolean') return { take: e.decision.take, target: e.decision.target as InstanceConfig[] };
  return undefined;
}

/** Instances on whole servers, largest TP first, each on the first aligned free GPUs; undefined when a TP does not fit a server. */
function packOnServers(instances: SimPoolInstance[], gps: number): { node: string; gpuIds: number[] }[] | undefined {
  const used: boolean[][] = [];
  const out: { node: string; gpuIds: number[] }[] = [];
  const order = [...instances.keys()].sort((a, b) => instances[b]!.tp - instances[a]!.tp);
  for (const k of order) {
    const tp = instances[k]!.tp;
    if (tp > gps) return undefined;
    let done = false;
    for (let n = 0; !done; n++) {
      const u = (used[n] ??= new Array<boolean>(gps).fill(false));
      for (let g = 0; g + tp <= gps && !done; g += tp) {
        if (u.slice(g, g + tp).some((x) => x)) continue;
        for (let x = g; x < g + tp; x++) u[x] = true;
        out[k] = { node: `server-${n}`, gpuIds: Array.from({ length: tp }, (_, x) => g + x) };
        done = true;
      }
    }
  }
  return out;
}
