/**
 * nats-server's own word that a client's connection closed: the `io.nats.server.advisory.v1.client_disconnect`
 * advisory it publishes in its system account on `$SYS.ACCOUNT.<account>.DISCONNECT` the moment it sees a
 * connection of that account end (the process exited or was killed: its socket closed; the server closed it: a
 * stale or slow connection, an authorization error). The server configs (src/runtime/nats-server-config.ts)
 * export that subject from the system account to the cluster's account only, which imports it as
 * controlSubjects.connectionEnded: the managers read their own account's disconnects with no system credentials.
 *
 * JSON, as the server writes it (not msgpack, no `v`): validated here like every input (zod; unknown fields
 * dropped). A server that dies publishes nothing: its clients' connections end without an advisory, and they
 * reconnect to another server under new client ids.
 */
import { z } from 'zod';
import { ProtocolError } from './errors.ts';
import { token } from './subjects.ts';
import type { Codec } from './codec.ts';

export const CLIENT_DISCONNECT_TYPE = 'io.nats.server.advisory.v1.client_disconnect' as const;

/** Subjects of the server's system account (spelled only here, for the server configs). */
export const natsSystemSubjects = {
  /** the disconnect advisories of `account`'s clients, published by each server in its system account. */
  accountDisconnect: (account: string) => `$SYS.ACCOUNT.${token(account, 'account')}.DISCONNECT`,
} as const;

const text = (max: number) => z.string().max(max);

export const clientDisconnect = z.object({
  type: z.literal(CLIENT_DISCONNECT_TYPE),
  /** the server that held the connection: `id` as its INFO's server_id (what a client reads on connect). */
  server: z.object({ id: text(128).min(1), name: text(256).optional() }),
  client: z.object({
    /** the connection's id on that server (its INFO's client_id). */
    id: z.number().int().nonnegative(),
    /** its account: the cluster id. */
    acc: text(128).optional(),
    /** the authenticated user: the nkey's public key, or the user name. */
    user: text(256).optional(),
    /** the connection name the client gave (its own claim). */
    name: text(256).optional(),
    /** 'Client' for an application connection (also 'Router', 'Leafnode', ... for server links). */
    kind: text(32).optional(),
  }),
  /** why it closed ('Client Closed', 'Stale Connection', 'Slow Consumer (Write Deadline)', 'Server Shutdown', ...). */
  reason: text(256).optional(),
});
export type ClientDisconnect = z.infer<typeof clientDisconnect>;

/** JSON codec of the advisory (decode validates; encode is for tests that play the server). */
export const ClientDisconnect: Codec<ClientDisconnect> = {
  name: 'ClientDisconnect',
  schema: clientDisconnect,
  check(value, subject) {
    const r = clientDisconnect.safeParse(value);
    if (!r.success) {
      const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new ProtocolError(`ClientDisconnect: invalid advisory (${issues.slice(0, 3).join('; ')})`, { subject, issues });
    }
    return r.data;
  },
  encode(value) {
    return new TextEncoder().encode(JSON.stringify(ClientDisconnect.check(value)));
  },
  decode(bytes, subject) {
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch (cause) {
      throw new ProtocolError(`ClientDisconnect: not JSON (${(cause as Error).message})`, { subject, cause });
    }
    return ClientDisconnect.check(raw, subject);
  },
};

/** A connection as a client and the server both name it: the server's id and the client id it gave the connection. */
export interface NatsConnectionId {
  server: string;
  client: number;
}

/** The connection an advisory says ended; undefined for a server link (a route, a leaf node), not a client. */
export function endedConnection(a: ClientDisconnect): NatsConnectionId | undefined {
  if (a.client.kind !== undefined && a.client.kind !== 'Client') return undefined;
  return { server: a.server.id, client: a.client.id };
}
