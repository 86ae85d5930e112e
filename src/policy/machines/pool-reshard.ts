/**
 * The pool machine's re-shard (src/policy/machines/pool.ts poolStep): the epoch on the pool's arrivals since the
 * last (policy epochArrivalLoad, planSharding; the MILP's solve is an effect answered with 'planned'), the decision (never
 * leaving a loaded pool dark), and its staggered execution, one unit at a time: start the new instance first where
 * its GPUs are free, else drain, stop, and start on the freed GPUs; each wait bounded. No unit begins before the
 * record a successor finishes it from is stored. Pure helpers of poolStep: they edit the state poolStep handed them
 * and add effects.
 */
import type { NodeCommand } from '../../../protocols/control.ts';
import type { InstanceConfig } from '../types.ts';
import type { CurrentInstance } from '../reshard-matching.ts';
import { aliveInstances, poolEpochLoad, poolLoad } from './router.ts';
import { instanceIdOf, nodeCmd, startAnswered, stopUnreported } from './pool-reconcile.ts';
import { darkReshardUnit, epochArrivalLoad, grantGpusPerServer, isAlignedBlock, guardedPoolLoad, planPoolShards, poolPrefixReuse, recordPoolArrivals, reshardSteps, unitSteps, windowPeak, type PoolShardDecision, type PoolShardInput, type StaggerUnit } from '../pool-shards.ts';
import { milpFallback, milpSolveInput } from '../pool-shards-milp.ts';
import type { Phase, PoolEffect, PoolMachineConfig, PoolMachineState, Step } from './pool-types.ts';

/** A node's answer to a command: a reconciliation's is counted off; a re-shard start's moves its unit on (ready wait, or a retry). */
export function nodeResult(s: PoolMachineState, fx: PoolEffect[], cmd: NodeCommand, ok: boolean, purpose: 'reconcile' | 'reshard', now: number, cfg: PoolMachineConfig): void {
  if (purpose === 'reconcile') {
    s.reconciling = Math.max(0, s.reconciling - 1);
    if (cmd.op !== 'start_instance') return;
    // a start the node refused (its GPUs held): not starting, and the next start of it waits its backoff
    if (!ok) s.starting.delete(cmd.instanceId);
    startAnswered(s, cmd.instanceId, ok, now);
    return;
  }
  const r = s.reshard;
  const p = r?.phase;
  if (!r || p?.kind !== 'start' || cmd.op !== 'start_instance' || cmd.instanceId !== p.id) return;
  if (ok) {
    s.starting.set(p.id, { atMs: now, node: p.node, gpuIds: p.gpuIds });
    s.reshard = { ...r, phase: { kind: 'ready', id: p.id, untilMs: now + cfg.healthDeadlineMs } };
  } else {
    // the node frees GPUs only once the old instance manager exited (clocks reset): retry while busy
    s.reshard = { ...r, phase: { ...p, inFlight: false, retryAtMs: now + 250 } };
  }
  reshardAdvance(s, fx, now, cfg);
}

/** The re-shard epoch: the pool's measured load (burst-guarded) planned into a layout, by the heuristic here or the MILP as an effect. */
export function reshardEpoch(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig, force: boolean): void {
  // an assignment held from an earlier lead, unconfirmed since (assignmentUnread), may grant GPUs the planner gave
  // another pool: no plan over it (the epoch timer keeps running; the next epoch plans once it is confirmed)
  if (s.assignmentUnread) return;
  if (!s.leader || s.reshard || s.reconciling > 0 || !s.assignment || !cfg.profile || s.starting.size || s.planning) return;
  const live = aliveInstances(s);
  // a change in progress: next epoch (an instance asleep through sleep mode is settled: one of the layout)
  if (!live.length || live.some((x) => x.state !== 'ready' && x.state !== 'sleeping')) return;
  // the pool's arrivals since the last epoch, those of instances stopped since included (its instances' estimates until it counted any)
  const { load: counted, next } = epochArrivalLoad(s.epochArrivals, cfg.epochMs, cfg.timeScale);
  s.epochArrivals = next;
  const measured = counted ?? poolEpochLoad(s);
  // the burst guard: the split keeps what the window's highest minute needs; the instances it does not need are left out
  s.recentLoad = recordPoolArrivals(s.recentLoad, {}, now, cfg.burstWindowMs ?? 0);
  const { load: peak, guarded } = guardedPoolLoad(measured, windowPeak(s.recentLoad, cfg.timeScale));
  const input: PoolShardInput = {
    profile: cfg.profile, load: measured, ...(guarded ? { peak, allowIdleGpus: true } : {}), gpus: s.assignment.grants.reduce((n, g) => n + g.gpuIds.length, 0), current: live.map((x) => x.tp), ...poolPrefixReuse(live),
    epochS: cfg.epochMs / 1000, gpusPerServer: grantGpusPerServer(s.assignment), headroom: cfg.headroom, ...(cfg.overhead ? { overhead: cfg.overhead } : {}),
  };
  const heuristic = planPoolShards(input);
  if (cfg.planner === 'milp' && heuristic) {
    // the solve is the shell's (a worker live, HiGHS in the simulator); a pool without load has nothing to solve
    const eq1 = milpSolveInput(input);
    if (eq1) {
      s.planning = { input, heuristic };
      fx.push({ kind: 'solve', input: eq1, force });
      return;
    }
    decideReshard(s, fx, milpFallback(heuristic, 'no load'), now, cfg, force);
    return;
  }
  decideReshard(s, fx, heuristic, now, cfg, force);
}

/** Take or keep a plan (never one that leaves a loaded pool dark), and begin it when taken. */
export function decideReshard(s: PoolMachineState, fx: PoolEffect[], plan: PoolShardDecision | undefined, now: number, cfg: PoolMachineConfig, force: boolean): void {
  if (!plan) return;
  const live = aliveInstances(s);
  let [take, summary] = [plan.take, plan.summary];
  // never dark while it carries load (a unit draining every serving instance first holds every request for an engine start)
  const dark = take && !cfg.reshardKeepsServing && Object.values(poolLoad(s)).some((v) => v > 0) ? darkReshardUnit(...reshardPlacement(s, plan.target)) : undefined;
  if (dark) {
    take = false;
    summary = `${summary}; not taken: its TP${dark.tp} unit on GPUs [${[...dark.gpus].sort((x, y) => x - y).join(',')}] drains ${dark.from.join(', ')} first and leaves the pool with no instance serving while the new one starts`;
  }
  fx.push({
    kind: 'event', event: 'reshard', summary: `${cfg.pool}: ${take ? 'take' : 'keep'} ${summary}`, decision: { take, target: plan.target, force, ...(dark ? { dark: true } : {}) },
    inputs: { ...plan.inputs, instances: live.map((x) => ({ id: x.id, tp: x.tp, node: x.node, gpuIds: x.gpuIds })) },
  });
  if (take) beginReshard(s, fx, plan.target, now, cfg);
}

/** The pool's instances on global GPU indices (server k of the grants = k * gps) and the staggered units to `target`. */
function reshardPlacement(s: PoolMachineState, target: InstanceConfig[]): [CurrentInstance[], StaggerUnit[]] {
  const a = s.assignment!;
  const gps = grantGpusPerServer(a);
  const nodeIdx = new Map(a.grants.map((g, k) => [g.node, k]));
  // inFlight: which of like instances a scale-in stops, and when (policy stopsByLoad)
  const current = aliveInstances(s).map((x) => ({ id: x.id, tp: x.tp, gpus: x.gpuIds.map((g) => (nodeIdx.get(x.node ?? '') ?? 0) * gps + g), inFlight: x.queued + x.running }));
  return [current, reshardSteps(current, target, gps, a.grants.flatMap((g, k) => g.gpuIds.map((x) => k * gps + x))).flat()];
}

/**
 * Staggered re-shard (policy staggerSteps over matchReshard: the placement that keeps the most weights in
 * place), one unit at a time, capacity added before it is removed. A unit whose GPUs are free (memory
 * allows) starts the new instance first and retires the old ones once it is ready; otherwise the old ones
 * drain first (the pool dispatches to the others, or holds requests while nothing is ready), then the new
 * one starts on their GPUs.
 */
function beginReshard(s: PoolMachineState, fx: PoolEffect[], target: InstanceConfig[], now: number, cfg: PoolMachineConfig): void {
  const a = s.assignment!;
  const gps = grantGpusPerServer(a);
  const nodeIdx = new Map(a.grants.map((g, k) => [g.node, k]));
  const granted = new Set(a.grants.flatMap((g, k) => g.gpuIds.map((x) => k * gps + x)));
  const [current, units] = reshardPlacement(s, target);
  if (units.some((u) => u.gpus.some((g) => !granted.has(g)))) {
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard placement leaves the granted GPUs; not executed`, decision: { target, units }, inputs: { grants: a.grants } });
    return;
  }
  // an instance runs on an aligned block of its server (its id names those GPUs; the cluster's credentials are made for those ids)
  const unaligned = units.find((u) => u.kind !== 'stop' && !isAlignedBlock(u.gpus.map((g) => g % gps), u.tp));
  if (unaligned) {
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard places a TP${unaligned.tp} on GPUs [${unaligned.gpus.join(',')}], no aligned block (no instance id names them); not executed`, decision: { target, units }, inputs: { grants: a.grants } });
    return;
  }
  fx.push({
    kind: 'event', event: 'reshard', summary: `${cfg.pool}: executing ${units.length} staggered unit(s)`, decision: { units: units.map((u) => ({ kind: u.kind, tp: u.tp, gpus: u.gpus, from: u.from })) },
    inputs: { current, target, gpusPerServer: gps },
  });
  // no command before the record is stored: a leader killed after its first drain leaves its successor the target
  s.reshard = { target, units, unit: -1, todo: [], gps, startedMs: now, current, nodeIdx, storeUntilMs: now + RESHARD_STORE_MS };
  fx.push({ kind: 'persist_reshard', epoch: a.epoch, target, state: 'running', ack: now });
}

/** How long a re-shard waits for its record to be stored before it is not executed, ms. */
const RESHARD_STORE_MS = 10_000;

/** The store's answer to the record of the re-shard begun at `ack`: its first unit begins, or it is not executed. */
export function reshardStored(s: PoolMachineState, fx: PoolEffect[], ack: number, ok: boolean, now: number, cfg: PoolMachineConfig): void {
  const r = s.reshard;
  if (!r || r.storeUntilMs === undefined || r.startedMs !== ack) return;
  if (!ok || now > r.storeUntilMs) {
    s.reshard = undefined;
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard not executed: its record was not stored (a successor could not finish it)`, decision: { target: r.target, stored: false }, inputs: {} });
    return;
  }
  s.reshard = { ...r, storeUntilMs: undefined };
  nextUnit(s, fx, now, cfg);
  reshardAdvance(s, fx, now, cfg);
}

/** The steps of the next unit (or the end of the re-shard). */
function nextUnit(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const r = s.reshard!;
  const unit = r.unit + 1;
  const u = r.units[unit];
  if (!u) {
    s.target = r.target;
    s.reshard = undefined;
    if (s.assignment) fx.push({ kind: 'persist_reshard', epoch: s.assignment.epoch, target: r.target, state: 'complete' });
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard complete in ${now - r.startedMs} ms`, decision: { complete: true, target: r.target, instances: aliveInstances(s).map((x) => ({ id: x.id, tp: x.tp })) }, inputs: {} });
    return;
  }
  const a = s.assignment!;
  const node = a.grants[Math.floor(u.gpus[0]! / r.gps)]!.node;
  // ascending (the node agent starts an instance on these GPUs in this order); the instance id names the lowest GPU and the
  // count. The GPUs need not be adjacent: the matching keeps weights in place (TP4 [0,1,2,3] -> TP2 [0,2] and [1,3])
  const local = u.gpus.map((g) => g % r.gps).sort((x, y) => x - y);
  const toGlobal = (n: string | undefined, g: number) => (r.nodeIdx.get(n ?? '') ?? 0) * r.gps + g;
  const busy = new Set(aliveInstances(s).filter((x) => !u.from.includes(x.id)).flatMap((x) => x.gpuIds.map((g) => toGlobal(x.node, g))));
  const fromGpus = new Set(r.current.filter((c) => u.from.includes(c.id)).flatMap((c) => c.gpus));
  const id = instanceIdOf(cfg.pool, node, local);
  // policy unitSteps: the order the simulator's executor runs too
  // (reshardKeepsServing) the new instance is built beside the ones it replaces, which serve until it is ready
  const steps = unitSteps(u, (g) => !cfg.reshardKeepsServing && (fromGpus.has(g) || busy.has(g)));
  const todo: Step[] = u.kind === 'stop'
    ? [{ kind: 'retire', ids: u.from, why: 're-shard: stop' }]
    : steps[0] === 'start'
      // memory allows: the new instance first, the old ones serve until it is ready
      ? steps.map((k): Step => (k === 'start' ? { kind: 'start', node, gpuIds: local, id, why: 're-shard: start' } : { kind: 'retire', ids: u.from, why: `re-shard: replaced by ${id}` }))
      : [{ kind: 'retire', ids: u.from, why: 're-shard: stop first (GPUs reused)' }, { kind: 'start', node, gpuIds: local, id, why: 're-shard: start on freed GPUs' }];
  s.reshard = { ...r, unit, todo, phase: undefined, unitNode: node, unitLocal: local };
}

/** Enter a step: its commands go out, its wait begins. */
function enter(s: PoolMachineState, fx: PoolEffect[], step: Step, now: number, cfg: PoolMachineConfig): Phase {
  if (step.kind === 'retire') {
    for (const id of step.ids) fx.push({ kind: 'drain', instance: id, reason: step.why });
    return { kind: 'drain', ids: step.ids, why: step.why, sinceMs: now, untilMs: now + 60_000 };
  }
  fx.push({ kind: 'node', node: step.node, cmd: startCmd(cfg.pool, step), purpose: 'reshard' });
  return { kind: 'start', node: step.node, gpuIds: step.gpuIds, id: step.id, why: step.why, untilMs: now + 30_000, retryAtMs: 0, inFlight: true };
}

function startCmd(pool: string, p: { node: string; gpuIds: number[]; id: string; why: string }): NodeCommand {
  return { v: 1, op: 'start_instance', instanceId: p.id, pool, tp: p.gpuIds.length as 1 | 2 | 4 | 8, gpuIds: p.gpuIds, reason: p.why };
}

/** The re-shard moves on as far as its waits allow. */
export function reshardAdvance(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  for (let guard = 0; guard < 64 && s.reshard; guard++) {
    const r = s.reshard;
    if (r.storeUntilMs !== undefined) return now > r.storeUntilMs ? reshardStored(s, fx, r.startedMs, false, now, cfg) : undefined;
    if (!r.phase) {
      const [step, ...rest] = r.todo;
      if (!step) {
        fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: unit ${r.units[r.unit]!.kind} TP${r.units[r.unit]!.tp} on ${r.unitNode} [${(r.unitLocal ?? []).join(',')}] done`, decision: { kind: r.units[r.unit]!.kind, tp: r.units[r.unit]!.tp, node: r.unitNode, gpuIds: r.unitLocal, from: r.units[r.unit]!.from }, inputs: {} });
        nextUnit(s, fx, now, cfg);
        continue;
      }
      s.reshard = { ...r, todo: rest, phase: enter(s, fx, step, now, cfg) };
      continue;
    }
    const p = r.phase;
    const inst = (id: string) => s.instances.get(id);
    let done = false;
    switch (p.kind) {
      case 'drain':
        // empty by a status sent after the drain (an older one may predate requests still in flight to it)
        if (p.ids.every((id) => { const t = inst(id); return !t?.alive || (t.lastSeenMs > p.sinceMs && t.status.queued === 0 && t.status.running === 0); }) || now > p.untilMs) {
          for (const id of p.ids) nodeCmd(s, fx, inst(id)?.status.node, { v: 1, op: 'stop_instance', instanceId: id, graceMs: 10_000, reason: p.why }, 'reshard');
          s.reshard = { ...r, phase: { kind: 'stopped', ids: p.ids, why: p.why, untilMs: now + 20_000 } };
          continue;
        }
        break;
      case 'stopped':
        done = p.ids.every((id) => !inst(id)?.alive) || now > p.untilMs;
        break;
      case 'start':
        if (p.inFlight) break;
        if (now >= p.untilMs) done = true; // the node never took it: the unit goes on without it
        else if (now >= p.retryAtMs) {
          fx.push({ kind: 'node', node: p.node, cmd: startCmd(cfg.pool, p), purpose: 'reshard' });
          s.reshard = { ...r, phase: { ...p, inFlight: true } };
        }
        break;
      case 'ready': {
        const t = inst(p.id);
        done = (t?.alive === true && t.status.state === 'ready') || now > p.untilMs;
        // past its wait without one status: the node is told to stop it (it holds the GPUs until then)
        if (done && t?.alive !== true) stopUnreported(s, fx, p.id, 'reshard', cfg);
        break;
      }
    }
    if (!done) return;
    s.reshard = { ...r, phase: undefined };
  }
}

/** The previous leader's unfinished re-shard, begun again from the layout now once every instance is ready and nothing starts. */
export function resumeReshard(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const live = aliveInstances(s);
  if (s.reconciling > 0 || s.starting.size || s.planning || !live.length || live.some((x) => x.state !== 'ready' && x.state !== 'sleeping')) return;
  const target = s.pendingReshard!;
  s.pendingReshard = undefined;
  beginReshard(s, fx, target, now, cfg);
}
