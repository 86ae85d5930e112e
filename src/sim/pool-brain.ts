/**
 * One simulated pool manager's re-shard epoch: the pool machine (src/policy/machines/pool.ts, the code the
 * live pool leader runs) decides on the statuses the pool's instances report, on the simulator's virtual
 * clock. The simulator hands it what the live leader would hold at its epoch timer: the pool's assignment
 * (its GPUs, the instances packed onto whole servers in TP order) and one status per instance (its TP,
 * state and measured load), then steps its 'reshard_epoch' and reads the decision it publishes. How the
 * decision is carried out (the staggered units, their start and drain waits) is the simulator's engine
 * model: the new layout serves after tau x Table VI + resync (./control.ts). No decision is taken here.
 * What the live machine carries from one epoch to the next and decides with is carried here too: its burst window
 * (the minutes of arrivals its instances' statuses report, fed by the simulator between epochs through the same
 * policy recordPoolArrivals), its arrivals since its last epoch (the epoch's load, policy addEpochArrivals: the
 * instance machines' admissions in step fidelity, the arrivals routed to the pool in fluid) and the layout of its
 * last re-shard (the instances serving now), so that the granted GPUs that layout leaves out stay out.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolMachineConfig, type PoolMachineState } from '../policy/machines/pool.ts';
import type { InstanceConfig } from '../policy/types.ts';
import type { Eq1Input, Eq1Result } from '../policy/milp.ts';
import type { MilpSolveOutcome } from '../policy/pool-shards-milp.ts';
import { addEpochArrivals, recordPoolArrivals, type EpochArrivals, type PoolLoadSample } from '../policy/pool-shards.ts';

export type { PoolLoadSample } from '../policy/pool-shards.ts';
export type { PoolMachineConfig } from '../policy/machines/pool.ts';

export interface SimPoolInstance { id: string; tp: number; ready: boolean; clockMhz: number; load: Partial<Record<RequestType, number>>; epochLoad?: Partial<Record<RequestType, number>>; prefix?: { lookup: number; hit: number } | undefined }

export interface PoolReshardDecision {
  take: boolean;
  target: InstanceConfig[];
  recentLoad: PoolLoadSample[];
  /** the machine's decision event, as the live pool leader logs it. */
  event: { summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> };
}

/**
 * The pool machine's re-shard decision for these instances; undefined when it takes none this epoch (an
 * instance not ready, an instance outside the profile's TP degrees).
 */
export function poolReshardDecision(
  cfg: PoolMachineConfig, types: RequestType[], instances: SimPoolInstance[], gpusPerServer: number, now: number, poolGpus?: number, pool?: object, solve?: (input: Eq1Input) => Eq1Result,
): PoolReshardDecision | undefined {
  const recentLoad = (pool && windows.get(pool)) ?? [];
  const placed = packOnServers(instances, gpusPerServer);
  if (!placed) return undefined;
  const grants = new Map<string, number[]>();
  for (const p of placed) grants.set(p.node, [...(grants.get(p.node) ?? []), ...p.gpuIds]);
  // the pool's GPUs that no instance holds (whole servers first, as the cluster grants them) are granted too
  let free = (poolGpus ?? 0) - placed.reduce((n, p) => n + p.gpuIds.length, 0);
  for (let n = 0; free > 0 && n < 1024; n++) {
    const have = new Set(grants.get(`server-${n}`) ?? []);
    for (let g = 0; g < gpusPerServer && free > 0; g++) {
      if (have.has(g)) continue;
      have.add(g);
      free--;
    }
    if (have.size) grants.set(`server-${n}`, [...have]);
  }
  const assignment: PoolAssignment = {
    v: 1, pool: cfg.pool, types, epoch: 1, state: 'active', issuedBy: 'sim', atMs: now,
    grants: [...grants].map(([node, gpuIds]) => ({ node, gpuIds: gpuIds.sort((a, b) => a - b) })),
  };
  // what the machine carries from its previous epochs: its burst window, and the layout its last re-shard set (the
  // instances serving now), so that reconciliation starts nothing on the GPUs that layout leaves out
  const counts = new Map<number, number>();
  for (const i of instances) counts.set(i.tp, (counts.get(i.tp) ?? 0) + 1);
  const target = [...counts].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp, count })) as InstanceConfig[];
  let s: PoolMachineState = { ...initialPoolState(types), recentLoad, target };
  const step = (ev: Parameters<typeof poolStep>[1]): PoolEffect[] => {
    const r = poolStep(s, ev, now, cfg);
    s = r.state;
    return r.effects;
  };
  for (const [k, i] of instances.entries()) {
    const p = placed[k]!;
    const status: InstanceStatus = {
      v: 1, id: i.id, pool: cfg.pool, node: p.node, tp: i.tp as InstanceStatus['tp'], gpuIds: p.gpuIds, state: i.ready ? 'ready' : 'starting', startedMs: 0, seq: 1, sentMs: now,
      clockMhz: i.clockMhz, maxClockMhz: i.clockMhz, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: i.load, ...(i.epochLoad ? { epochLoadByType: i.epochLoad } : {}), ...(i.prefix ? { prefixCacheTokens: i.prefix } : {}),
    };
    step({ type: 'status', status });
  }
  step({ type: 'lead', stored: assignment });
  // the arrivals it counted while it led (a lead restarts the count; this machine has led since the pool's first traffic)
  const counted = pool && epochs.get(pool);
  if (counted) s = { ...s, epochArrivals: counted };
  const fx = step({ type: 'reshard_epoch' });
  // planner 'milp': the machine's solve, answered at once (HiGHS on this thread, where the live leader's worker runs it)
  for (const e of [...fx]) {
    if (e.kind !== 'solve') continue;
    if (!solve) throw new Error(`${cfg.pool}: planner 'milp' needs a solver`);
    let solved: MilpSolveOutcome;
    try {
      solved = { result: solve(e.input) };
    } catch (err) {
      solved = { error: (err as Error).message };
    }
    fx.push(...step({ type: 'planned', force: e.force, solved }));
  }
  if (pool) {
    windows.set(pool, s.recentLoad);
    if (s.epochArrivals) epochs.set(pool, s.epochArrivals);
  }
  for (const e of fx) if (e.kind === 'event' && e.event === 'reshard' && typeof e.decision.take === 'boolean') return { take: e.decision.take, target: e.decision.target as InstanceConfig[], recentLoad: s.recentLoad, event: { summary: e.summary, decision: e.decision, inputs: e.inputs } };
  return undefined;
}

/** A simulated instance's machine, whose admission counter recordSimPoolArrivals reads. */
interface WithAdmitted { brain?: { s: { admitted: Partial<Record<RequestType, number>> } } }
/** each instance machine's counter at the last record (what the live machine keeps as the instance's last status). */
const seen = new WeakMap<WithAdmitted, Partial<Record<RequestType, number>>>();
/** each simulated pool's burst window (the pool machine's recentLoad), carried between its epochs. */
const windows = new WeakMap<object, PoolLoadSample[]>();
/** each simulated pool's arrivals since its last re-shard epoch (the pool machine's epochArrivals). */
const epochs = new WeakMap<object, EpochArrivals>();
/** when each simulated pool's first arrivals were recorded (the live machine's trafficAtMs): its minutes count from there. */
const origins = new WeakMap<object, number>();

/** The burst window the simulated pool's machine holds now. */
export function burstWindowOf(pool: object): PoolLoadSample[] {
  return windows.get(pool) ?? [];
}

/**
 * The pool machine's burst window and its count for the next re-shard epoch get the pool's arrivals since the last call (policy recordPoolArrivals, which
 * the live machine runs on each status with the increments of its instances' cumulative admittedByType): the
 * increments of the simulated instance machines' own counters (step fidelity; the simulator calls it at the live
 * status interval). Its minutes count from the first call that records arrivals, as the live machine's count from
 * the first status that shows admissions (trafficAtMs).
 */
export function recordSimPoolArrivals(pool: { instances: WithAdmitted[] }, now: number, windowMs: number): void {
  const add: Partial<Record<RequestType, number>> = {};
  for (const i of pool.instances) {
    const cur = i.brain?.s.admitted;
    if (!cur) continue;
    const last = seen.get(i) ?? {};
    for (const [t, n] of Object.entries(cur) as [RequestType, number][]) if (n > (last[t] ?? 0)) add[t] = (add[t] ?? 0) + n - (last[t] ?? 0);
    seen.set(i, { ...cur });
  }
  if (!origins.has(pool) && Object.keys(add).length) origins.set(pool, now);
  windows.set(pool, recordPoolArrivals(burstWindowOf(pool), add, now, windowMs, origins.get(pool)));
  const counted = addEpochArrivals(epochs.get(pool), add, now);
  if (counted) epochs.set(pool, counted);
}

/**
 * Fluid fidelity (no instance machines): the arrivals routed to the pool in the tick [fromMs, now) (counts by type,
 * REQUEST_TYPES order; none: the tick is counted empty), into the burst window and the count for the next re-shard
 * epoch, as recordSimPoolArrivals records the instance machines' admissions: the epoch reads the pool's arrivals over
 * the ticks since its last reading, counted from the start of the first tick that had any.
 */
export function recordFluidPoolArrivals(pool: object, counts: ArrayLike<number>, now: number, windowMs: number, fromMs = now): void {
  const add: Partial<Record<RequestType, number>> = {};
  REQUEST_TYPES.forEach((t, k) => {
    if ((counts[k] ?? 0) > 0) add[t] = counts[k]!;
  });
  windows.set(pool, recordPoolArrivals(burstWindowOf(pool), add, now, windowMs));
  const acc = epochs.get(pool) ?? (Object.keys(add).length ? { sinceMs: fromMs, lastMs: fromMs, counts: {} } : undefined);
  const counted = addEpochArrivals(acc, add, now);
  if (counted) epochs.set(pool, counted);
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
