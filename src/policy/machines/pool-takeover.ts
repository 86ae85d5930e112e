/**
 * What a new pool leader takes over from its predecessor's re-shard (pool machine, src/policy/machines/pool.ts):
 * the re-shard it stored (finished to its target by the successor) and the instances it drained (serving again).
 * Pure helpers of poolStep: they edit the state poolStep handed them and add effects.
 */
import type { InstanceStatus, PoolAssignment } from '../../../protocols/control.ts';
import type { PoolEffect, PoolMachineConfig, PoolMachineState, StoredReshard } from './pool-types.ts';

/** The same assignment (a re-send of it): epoch, issuer and issue time. */
function sameAssignment(a: PoolAssignment, b: PoolAssignment): boolean {
  return a.epoch === b.epoch && a.issuedBy === b.issuedBy && a.atMs === b.atMs;
}

/**
 * The stored re-shard of the previous leader, on this assignment: the layout it aimed at, and one to finish when it
 * was running. A running one stored on the assignment the lead left to the planner (no live instance in view: a
 * shared NATS server may hold a previous run's) waits for the planner to send that assignment (`unadoptedReshard`).
 */
export function adoptReshard(s: PoolMachineState, fx: PoolEffect[], r: StoredReshard | undefined, cfg: PoolMachineConfig): void {
  if (!r) return;
  if (r.epoch !== s.assignment?.epoch) {
    if (r.state === 'running' && !s.assignment && s.unadopted?.epoch === r.epoch) s.unadoptedReshard = r;
    return;
  }
  s.target = r.target;
  if (r.state !== 'running') return;
  s.pendingReshard = r.target;
  fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: finishing the previous leader's re-shard`, decision: { resume: true, target: r.target }, inputs: { epoch: r.epoch } });
}

/**
 * An instance draining while no re-shard of this leader drains it, in view at the lead or entering it later (new,
 * back from silence, a placeholder's first status): a previous leader's re-shard drained it, and it serves again.
 * One that drains because it is stopping resumes not (the instance refuses).
 */
export function resumeOrphanDrain(s: PoolMachineState, fx: PoolEffect[], st: InstanceStatus, cfg: PoolMachineConfig): void {
  if (!s.leader || st.state !== 'draining') return;
  const p = s.reshard?.phase;
  if ((p?.kind === 'drain' || p?.kind === 'stopped') && p.ids.includes(st.id)) return;
  fx.push({ kind: 'resume', instance: st.id, reason: `${cfg.holder} leads ${cfg.pool}: no re-shard of its drains ${st.id}` });
}

/**
 * The planner's assignment `a`, just set: when it is the stored one the lead did not adopt, the re-shard stored on it
 * is this cluster's, and the successor finishes it; any other assignment voids it.
 */
export function adoptReshardOnAssign(s: PoolMachineState, fx: PoolEffect[], a: PoolAssignment, cfg: PoolMachineConfig): void {
  const r = s.unadoptedReshard;
  s.unadoptedReshard = undefined;
  if (r && s.unadopted && sameAssignment(a, s.unadopted)) adoptReshard(s, fx, r, cfg);
}
