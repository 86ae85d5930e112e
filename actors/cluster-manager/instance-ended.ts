/**
 * An instance's last status comes from a process its node agent saw end: the node's status names, per instance, when
 * its manager process last ended (NodeStatus instances[].exitedMs, the node's clock, as the instance's startedMs). A
 * status whose process started before that is a dead process's, however recent: the instance is out of the ready set
 * at once, not after liveness.deadAfterMs without a status (its restarted process may take longer than that to
 * report: the supervisor's backoff grows with each crash).
 */
import type { InstanceStatus, NodeStatus } from '../../protocols/index.ts';

export function endedByNode(st: Pick<InstanceStatus, 'id' | 'node' | 'startedMs'>, nodes: ReadonlyMap<string, { st: Pick<NodeStatus, 'instances'> }>): boolean {
  if (st.node === undefined) return false;
  const exitedMs = nodes.get(st.node)?.st.instances.find((i) => i.id === st.id)?.exitedMs;
  return exitedMs !== undefined && st.startedMs <= exitedMs;
}
