/**
 * The NATS server's word that a connection ended (a ClientDisconnect advisory, protocols/nats-advisory.ts) takes
 * the instance whose status went out on that connection (InstanceStatus.conn) out of dispatch at once: the
 * cluster manager's status and intake, the pool leader's dispatch and the gateway's own routing read it alike.
 *
 * Out of dispatch only, not dead: no new request goes to it until a status from another connection comes (its
 * restarted process's, or its own after a reconnect: a connection the server cut while the process lived, e.g.
 * for a stale link), and nothing it holds is re-dispatched or ended on this word alone (its node agent's word or
 * its statuses' lapse, liveness.deadAfterMs, are the death verdicts). The connection is named by the server's id
 * and the client id the server gave it, which the instance read from the server and reports in its own status on
 * a subject only its user may publish: no other client can claim it, and a reconnect (a new client id) is another
 * connection. A server that dies publishes no advisory: its clients reconnect elsewhere and are not taken out.
 *
 * Pure: state, inputs and the clock's `now` in, decisions out.
 */
import type { NatsConnectionId } from '../../protocols/nats-advisory.ts';

/** The connections the server said ended lately: key `server/client` -> when the advisory came, ms (insertion order). */
export interface EndedConnections {
  ended: Map<string, number>;
}

/** At most this many ended connections are remembered (the oldest go first). */
export const ENDED_CONNECTIONS_MAX = 4096;

/**
 * How long an ended connection is remembered, ms: a status sent on it before it ended and delivered after the
 * advisory must still find it, and after deadAfterMs the lapse verdict covers that status anyway. At least 10 s.
 */
export const endedKeepMs = (deadAfterMs: number): number => Math.max(10_000, 4 * deadAfterMs);

export function initialEndedConnections(): EndedConnections {
  return { ended: new Map() };
}

const key = (c: NatsConnectionId): string => `${c.server}/${c.client}`;

/**
 * `s` with an ended connection recorded (a new state; `s` is left as it was), less those older than `keepMs` and
 * the oldest beyond ENDED_CONNECTIONS_MAX.
 */
export function connectionEndedSeen(s: EndedConnections, conn: NatsConnectionId, now: number, keepMs: number): EndedConnections {
  const ended = new Map(s.ended);
  ended.delete(key(conn));
  ended.set(key(conn), now);
  for (const [k, at] of ended) {
    if (now - at <= keepMs && ended.size <= ENDED_CONNECTIONS_MAX) break;
    ended.delete(k);
  }
  return { ended };
}

/** When the server's word that a status's connection ended came (ms); undefined when it did not, or without one. */
export function connectionEndedAt(s: EndedConnections, conn: NatsConnectionId | undefined): number | undefined {
  return conn === undefined ? undefined : s.ended.get(key(conn));
}

/** Whether a status's connection (InstanceStatus.conn) is one the server said ended; false without one. */
export function connectionEnded(s: EndedConnections, conn: NatsConnectionId | undefined): boolean {
  return conn !== undefined && s.ended.has(key(conn));
}
