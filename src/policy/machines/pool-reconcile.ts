/**
 * The pool machine's reconciliation (src/policy/machines/pool.ts poolStep): stop instances on GPUs no longer
 * granted, start instances on granted GPUs nobody uses (the re-shard's layout, else engine.initialTp), and the node
 * commands that carry both out. Pure helpers of poolStep: they edit the state poolStep handed them and add effects.
 */
import type { NodeCommand } from '../../../protocols/control.ts';
import { alignedGroups } from '../pool-shards.ts';
import { aliveInstances } from './router.ts';
import type { PoolEffect, PoolMachineConfig, PoolMachineState } from './pool-types.ts';

export function nodeCmd(s: PoolMachineState, fx: PoolEffect[], node: string | undefined, cmd: NodeCommand, purpose: 'reconcile' | 'reshard'): boolean {
  if (!node) return false;
  if (purpose === 'reconcile') s.reconciling++;
  fx.push({ kind: 'node', node, cmd, purpose });
  return true;
}

/** Instances this pool should run on its grants: the re-shard's layout where there is one, else initialTp. */
export function reconcile(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const a = s.assignment;
  // an assignment held from an earlier lead, unconfirmed since (assignmentUnread), may grant what the planner took away
  if (!a || !s.leader || s.reconciling > 0 || s.reshard || s.assignmentUnread) return;
  const granted = new Map(a.grants.map((g) => [g.node, new Set(g.gpuIds)]));
  const live = aliveInstances(s);
  // stop instances on GPUs no longer granted (scale-in, merge)
  for (const st of live) {
    const g = st.node ? granted.get(st.node) : undefined;
    if (a.state === 'retired' || !g || !st.gpuIds.every((x) => g.has(x))) {
      if (st.state === 'draining') continue;
      if (nodeCmd(s, fx, st.node, { v: 1, op: 'stop_instance', instanceId: st.id, graceMs: 30_000, reason: `GPUs of ${st.id} no longer granted to ${cfg.pool}` }, 'reconcile')) {
        fx.push({ kind: 'event', event: 'scale', summary: `${cfg.pool}: stop ${st.id} (GPUs returned)`, decision: { stop: st.id }, inputs: { epoch: a.epoch } });
      }
    }
  }
  if (a.state === 'retired') return;
  // a start the node took but whose instance never reported (its process cannot connect, or never began): stopped,
  // so the node frees its GPUs, and forgotten (a node holds an instance's GPUs until it is told to stop it)
  const unreported = [...s.starting].filter(([, st]) => now - st.atMs > cfg.healthDeadlineMs + 10_000).map(([id]) => id);
  for (const id of unreported) stopUnreported(s, fx, id, 'reconcile', cfg);
  // their GPUs are started on once the node answered the stops (the next reconciliation)
  if (s.reconciling > 0) return;
  // start instances on granted GPUs nobody uses (after a re-shard: only what its layout misses)
  const missing = new Map<number, number>();
  if (s.target) {
    for (const t of s.target) missing.set(t.tp, t.count);
    for (const st of live) missing.set(st.tp, (missing.get(st.tp) ?? 0) - 1);
    for (const st of s.starting.values()) missing.set(st.gpuIds.length, (missing.get(st.gpuIds.length) ?? 0) - 1);
  }
  for (const g of a.grants) {
    let tp = s.target ? [...missing].filter(([, n]) => n > 0).map(([t]) => t).sort((x, y) => y - x)[0] ?? 0 : cfg.initialTp;
    if (!tp) break;
    while (tp > 1 && tp > g.gpuIds.length) tp /= 2;
    const used = new Set<number>();
    for (const st of live) if (st.node === g.node) for (const x of st.gpuIds) used.add(x);
    for (const st of s.starting.values()) if (st.node === g.node) for (const x of st.gpuIds) used.add(x);
    const free = g.gpuIds.filter((x) => !used.has(x)).sort((x, y) => x - y);
    // no target (first fill, or a successor of a leader whose re-shard unit was cut short): GPUs left after the
    // initialTp instances get the largest smaller degree the profile runs, so no granted GPU stays idle
    // aligned blocks (policy alignedGroups): the GPUs an instance id names, and those credentials are made for
    const groups = alignedGroups(free, tp);
    let left = s.target ? [] : free.filter((x) => !groups.some((b) => b.includes(x)));
    for (let k = tp / 2; k >= 1 && left.length; k /= 2) {
      if (!cfg.profile?.tpDegrees.includes(k)) continue;
      const more = alignedGroups(left, k);
      groups.push(...more);
      left = left.filter((x) => !more.some((b) => b.includes(x)));
    }
    for (const group of groups) {
      const instanceId = instanceIdOf(cfg.pool, g.node, group);
      // refused lately (its node still holds these GPUs): not asked again before its backoff ends; another free group may be
      if ((s.refusedStarts?.get(instanceId)?.retryAtMs ?? 0) > now) continue;
      if (s.target) {
        if ((missing.get(tp) ?? 0) <= 0) break;
        missing.set(tp, missing.get(tp)! - 1);
      }
      if (s.starting.has(instanceId)) continue;
      s.starting.set(instanceId, { atMs: now, node: g.node, gpuIds: group });
      nodeCmd(s, fx, g.node, { v: 1, op: 'start_instance', instanceId, pool: cfg.pool, tp: group.length as 1 | 2 | 4 | 8, gpuIds: group, reason: `fill granted GPUs of ${cfg.pool}` }, 'reconcile');
      fx.push({ kind: 'event', event: 'scale', summary: `${cfg.pool}: start ${instanceId} (TP${group.length})`, decision: { start: instanceId, node: g.node, gpuIds: group, tp: group.length }, inputs: { epoch: a.epoch } });
    }
  }
}

/**
 * An instance this pool had a node start that never reported: the node is told to stop it (it holds the instance's
 * GPUs until then: a process that cannot connect is restarted by its supervisor for ever) and it is forgotten.
 */
export function stopUnreported(s: PoolMachineState, fx: PoolEffect[], id: string, purpose: 'reconcile' | 'reshard', cfg: PoolMachineConfig): void {
  const st = s.starting.get(id);
  if (!st) return;
  s.starting.delete(id);
  if (nodeCmd(s, fx, st.node, { v: 1, op: 'stop_instance', instanceId: id, graceMs: 10_000, reason: `${id} never reported since its start` }, purpose)) {
    fx.push({ kind: 'event', event: 'scale', summary: `${cfg.pool}: stop ${id} (never reported since its start)`, decision: { stop: id, unreported: true }, inputs: { node: st.node, gpuIds: st.gpuIds } });
  }
}

/** The first wait after a start of the reconciliation a node refused, ms; it doubles with each refusal in a row up to START_BACKOFF_MAX_MS. */
export const START_BACKOFF_MS = 1000;
export const START_BACKOFF_MAX_MS = 30_000;

/** The wait before the next start of an instance whose start a node refused `count` times in a row, ms. */
export function startBackoffMs(count: number): number {
  return Math.min(START_BACKOFF_MAX_MS, START_BACKOFF_MS * 2 ** Math.max(0, count - 1));
}

/** A node's answer to a start of the reconciliation: a refusal backs the next start of that instance off, a start taken clears it. */
export function startAnswered(s: PoolMachineState, id: string, ok: boolean, now: number): void {
  const prev = s.refusedStarts?.get(id);
  if (ok && !prev) return;
  const next = new Map(s.refusedStarts ?? []);
  if (ok) next.delete(id);
  else {
    const count = (prev?.count ?? 0) + 1;
    next.set(id, { count, retryAtMs: now + startBackoffMs(count) });
  }
  s.refusedStarts = next.size ? next : undefined;
}

/** The id of the instance on (node, GPUs): the node agent and the pool both derive the GPUs from it. */
export function instanceIdOf(pool: string, node: string, gpuIds: number[]): string {
  return `${pool}-${node}-g${gpuIds[0]}x${gpuIds.length}`;
}
