/**
 * An instance's last status comes from a process its node agent saw end: the node's status names, per instance, when
 * its manager process last ended (NodeStatus instances[].exitedMs, the node's clock, as the instance's startedMs). A
 * status whose process started before that is a dead process's, however recent: the instance is out of the ready set
 * at once, not after liveness.deadAfterMs without a status (its restarted process may take longer than that to
 * report: the supervisor's backoff grows with each crash). Likewise a status that went out on a NATS connection the
 * server said ended (src/policy/connection-ended.ts), which needs no node agent: outOfDispatch says either.
 */
import { endedConnection, type ClientDisconnect, type InstanceStatus, type NodeStatus } from '../../protocols/index.ts';
import { connectionEnded, connectionEndedSeen, endedKeepMs, type EndedConnections } from '../../src/policy/connection-ended.ts';

export { initialEndedConnections } from '../../src/policy/connection-ended.ts';

export function endedByNode(st: Pick<InstanceStatus, 'id' | 'node' | 'startedMs'>, nodes: ReadonlyMap<string, { st: Pick<NodeStatus, 'instances'> }>): boolean {
  if (st.node === undefined) return false;
  const exitedMs = nodes.get(st.node)?.st.instances.find((i) => i.id === st.id)?.exitedMs;
  return exitedMs !== undefined && st.startedMs <= exitedMs;
}

/**
 * Whether an instance's last status is out of dispatch on a word faster than its lapse: its node agent saw its
 * process end (endedByNode), or the NATS server said the connection it reported on ended (src/policy/connection-ended.ts).
 */
export function outOfDispatch(st: Pick<InstanceStatus, 'id' | 'node' | 'startedMs' | 'conn'>, nodes: ReadonlyMap<string, { st: Pick<NodeStatus, 'instances'> }>, ended: EndedConnections): boolean {
  return endedByNode(st, nodes) || connectionEnded(ended, st.conn);
}

/** `ended` with the connection a disconnect advisory names (none for a server link), kept endedKeepMs(deadAfterMs). */
export function disconnectSeen(ended: EndedConnections, a: ClientDisconnect, now: number, deadAfterMs: number): EndedConnections {
  const conn = endedConnection(a);
  return conn ? connectionEndedSeen(ended, conn, now, endedKeepMs(deadAfterMs)) : ended;
}
