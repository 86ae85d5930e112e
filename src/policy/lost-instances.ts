/**
 * What the cluster leader does with a node's lost instances (NodeStatus.lost): instance managers that ended while no
 * node agent ran on their node, whose records the node's next agent found with the process gone. The node agent does
 * not start them itself: a cluster that starts again after all its actors died (issue 12) must start like a first run,
 * not with the previous run's instances. The leader, which holds the current assignment, decides at once on the
 * status that lists them (the node agent may live only a second), instead of its pool leader's reconciliation
 * noticing the instance gone and starting it later:
 * - start it again under its id, pool, TP and GPUs when the pool's current assignment is active and grants it all
 *   those GPUs of that node, and no instance the node runs holds one of them;
 * - otherwise forget it (the node agent drops its record).
 */
import type { NodeStatus, PoolAssignment } from '../../protocols/index.ts';

export type LostInstance = NonNullable<NodeStatus['lost']>[number];

export type LostDecision =
  | { kind: 'start'; instance: LostInstance; epoch: number; why: string }
  | { kind: 'forget'; instance: LostInstance; why: string };

/** One decision per lost instance of `status` (none when it lists none), against the pools' current assignments. */
export function decideLostInstances(status: Pick<NodeStatus, 'node' | 'instances' | 'lost'>, assignments: ReadonlyMap<string, PoolAssignment>): LostDecision[] {
  const held = new Set(status.instances.flatMap((i) => i.gpuIds));
  const out: LostDecision[] = [];
  for (const inst of status.lost ?? []) {
    const a = assignments.get(inst.pool);
    const granted = new Set(a?.grants.filter((g) => g.node === status.node).flatMap((g) => g.gpuIds) ?? []);
    const busy = inst.gpuIds.filter((g) => held.has(g));
    if (!a || a.state !== 'active') out.push({ kind: 'forget', instance: inst, why: `pool ${inst.pool} has no active assignment` });
    else if (inst.gpuIds.length !== inst.tp || !inst.gpuIds.every((g) => granted.has(g))) out.push({ kind: 'forget', instance: inst, why: `GPUs ${inst.gpuIds.join(',')} of ${status.node} not granted to ${inst.pool} at epoch ${a.epoch}` });
    else if (busy.length) out.push({ kind: 'forget', instance: inst, why: `GPUs ${busy.join(',')} of ${status.node} held by a running instance` });
    else out.push({ kind: 'start', instance: inst, epoch: a.epoch, why: `ended while no node agent ran on ${status.node}; its GPUs still granted to ${inst.pool} at epoch ${a.epoch}` });
  }
  return out;
}
