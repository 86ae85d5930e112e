/**
 * Which NATS servers to dial first. nats.js tries the servers of a connection one at a time, and one that is
 * silent (a host partitioned away or hung: packets dropped, not refused; a stopped process whose kernel still
 * accepts the TCP connection) holds the attempt until its deadline. Before a first connect, every server of the
 * list is asked at once for the INFO line a nats-server sends as soon as it accepts a connection; the servers
 * that answered are dialled first, the others after them. The probe ends shortly after the first answer (as long
 * again as that one took, at least GRACE_MS, so the other live servers of a cluster answer too and clients still
 * spread over them), or at its deadline (none answered: the order is left as given).
 *
 * A reconnect is nats.js's own loop over its list (the servers given and those the cluster announced), each
 * attempt at one server in turn with the `timeout` deadline, starting with the server it was connected to: after
 * that server died (refused at once), a silent one next in the list held the reconnect 5 s. skipSilentOnReconnect
 * puts the same probe in front of each attempt of a reconnect: a server that did not answer while another did is
 * passed over at once (the loop goes on to the next), and the probe's answer serves the attempts of the next
 * PROBE_REUSE_MS.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { CancelledError, DynError } from './errors.ts';
import type { NatsConnectionId } from '../../protocols/nats-advisory.ts';
import type { Logger } from 'pino';

/**
 * Deadline of one connection attempt to one NATS server, ms, at the first connect and at each reconnect (nats.js's
 * `timeout`); a silent server holds an attempt this long before the next server is tried. Not shorter: in
 * `dynamollm chaos` on a loaded 2-core VM, 2 s failed attempts at live servers whose answer a CPU-starved client
 * had not read in time (the server closing them with "Authentication Timeout"), and reconnects took 2 s p50 / 5-11 s
 * p90 instead of 0.5-1.1 s / 1.2-1.7 s. Neither the first connect (answeringFirst) nor a reconnect
 * (skipSilentOnReconnect) waits for it while another server answers.
 */
export const NATS_DIAL_TIMEOUT_MS = 5000;

/** after the first answer, the probe waits at least this long for the others, ms. */
const GRACE_MS = 25;

/** host and port of a server URL as nats.js reads it (`nats://h:p`, `tls://h:p`, `h:p`, `h`; default port 4222). */
export function hostPort(url: string): { host: string; port: number } | undefined {
  const m = /^(?:[a-z]+:\/\/)?(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/i.exec(url.trim());
  if (!m) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 4222 };
}

/**
 * `servers` with those answering first: the ones that sent their INFO line by the end of the probe (in the order
 * given when `keepOrder`, else shuffled, which spreads clients over a cluster as nats.js's own randomizing does),
 * then the rest in the order given. With `keepOrder` the probe ends as soon as the first server of the list that
 * did not refuse has answered (the order stays as given). One server, or none answering within `ms`: as given.
 */
export async function answeringFirst(servers: readonly string[], ms: number, keepOrder = false): Promise<string[]> {
  if (servers.length < 2) return [...servers];
  const state = await probe(servers.map(hostPort), ms, keepOrder);
  const first = servers.filter((_, i) => state[i] === 'answered');
  if (!first.length) return [...servers];
  if (!keepOrder) shuffle(first);
  return [...first, ...servers.filter((_, i) => state[i] !== 'answered')];
}

type ProbeState = 'pending' | 'answered' | 'failed';

/**
 * Ask every server at once for its INFO line; ends shortly after the first answer (GRACE_MS, or as long again as it
 * took), when every server has answered or failed, or at `ms`. With `keepOrder`, as soon as the first server of the
 * list that did not fail has answered.
 */
async function probe(targets: readonly ({ host: string; port: number } | undefined)[], ms: number, keepOrder = false): Promise<ProbeState[]> {
  const state = targets.map((): ProbeState => 'pending');
  const sockets: Socket[] = [];
  const t0 = Date.now();
  await new Promise<void>((done) => {
    let timer = setTimeout(done, ms);
    let graced = false;
    const settle = () => {
      clearTimeout(timer);
      done();
    };
    const decided = (i: number, how: 'answered' | 'failed') => {
      if (state[i] !== 'pending') return;
      state[i] = how;
      if (!state.includes('pending')) return settle();
      if (keepOrder && state.find((x) => x !== 'failed') === 'answered') return settle();
      if (how === 'answered' && !graced) {
        // wait as long again as the first answer took (at least GRACE_MS) for the others
        graced = true;
        const took = Date.now() - t0;
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, Math.min(ms - took, Math.max(GRACE_MS, took))));
      }
    };
    targets.forEach((hp, i) => {
      if (!hp) return decided(i, 'failed');
      const s = tcpConnect({ host: hp.host, port: hp.port });
      sockets.push(s);
      s.once('data', (d: Buffer) => decided(i, d.subarray(0, 4).toString('latin1').toUpperCase() === 'INFO' ? 'answered' : 'failed'));
      s.once('error', () => decided(i, 'failed'));
      s.once('close', () => decided(i, 'failed'));
    });
  });
  for (const s of sockets) s.destroy();
  return state;
}

/** A reconnect attempt passed over: the server did not answer the probe while another one did, or it was to be left. */
export class SilentServerSkipped extends Error {
  constructor(readonly server: string, why = 'did not answer while another did') {
    super(`NATS server ${server} ${why}: not dialled`);
    this.name = 'SilentServerSkipped';
  }
}

/** What a Bus may ask of its reconnects. */
export interface ReconnectSteering {
  /**
   * The next reconnect does not dial `server` (host:port, as nc.getServer() names it) first: nats.js's loop starts
   * with the server it was connected to, so a forced reconnect to leave it (jetstream-move.ts) came back to it.
   * Passed over once; the loop comes back to it when no other server takes the connection.
   */
  leave(server: string): void;
}

/** How long one probe's answer decides the attempts of a reconnect, ms (a round over a 3-5 server list). */
export const PROBE_REUSE_MS = 1000;
/**
 * Longest a reconnect attempt waits for the probe, ms. No server answering by then (every one silent, or slow to
 * read on a starved host): the attempt goes ahead as nats.js makes it, so a reconnect where nothing answers costs
 * this much more per attempt, not another dial deadline.
 */
export const RECONNECT_PROBE_MS = 1000;

/** The part of nats.js's connection (nats-core 3.x ProtocolHandler) the reconnect probe stands in front of. */
interface DialingProtocol {
  connectedOnce: boolean;
  servers: { getServers(): { hostname: string; port: number }[] };
  dial(srv: { hostname: string; port: number; listen?: string }): Promise<void>;
}

function dialingProtocol(nc: NatsConnection): DialingProtocol | undefined {
  const p = (nc as unknown as { protocol?: Partial<DialingProtocol> }).protocol;
  return p && typeof p.dial === 'function' && typeof p.servers?.getServers === 'function' && typeof p.connectedOnce === 'boolean' ? (p as DialingProtocol) : undefined;
}

/**
 * Before each attempt of a reconnect of `nc`, probe every server of its list (at most `ms` and RECONNECT_PROBE_MS): an attempt at a server
 * that did not answer while another did fails at once (SilentServerSkipped), so nats.js tries the next one instead
 * of waiting out its `timeout` on it. None answering: the attempt goes ahead as nats.js would make it. Undefined
 * (and nothing changed) when the connection is not the nats.js shape this reads.
 */
export function skipSilentOnReconnect(nc: NatsConnection, ms: number, log?: Logger): ReconnectSteering | undefined {
  const protocol = dialingProtocol(nc);
  if (!protocol) {
    log?.warn('nats.js connection without the expected dial loop: reconnects try silent servers until their deadline');
    return undefined;
  }
  const dial = protocol.dial.bind(protocol);
  const key = (h: { hostname: string; port: number }) => `${h.hostname}:${h.port}`;
  let last: { at: number; probed: Set<string>; answered: Set<string> } | undefined;
  let leaving: string | undefined;
  protocol.dial = async (srv) => {
    if (protocol.connectedOnce && protocol.servers.getServers().length > 1) {
      if (leaving !== undefined && (srv.listen ?? key(srv)) === leaving) {
        leaving = undefined;
        throw new SilentServerSkipped(key(srv), 'is being left');
      }
      if (!last || Date.now() - last.at > PROBE_REUSE_MS || !last.probed.has(key(srv))) {
        // (an address a server's name resolved to is probed itself)
        const targets = [...new Map([...protocol.servers.getServers(), srv].map((x) => [key(x), { host: x.hostname, port: x.port }])).values()];
        const state = await probe(targets, Math.min(ms, RECONNECT_PROBE_MS));
        const keyed = targets.map((x) => `${x.host}:${x.port}`);
        last = { at: Date.now(), probed: new Set(keyed), answered: new Set(keyed.filter((_, i) => state[i] === 'answered')) };
      }
      if (last.answered.size && !last.answered.has(key(srv))) throw new SilentServerSkipped(key(srv));
    }
    try {
      await dial(srv);
    } finally {
      // connected, or this server failed: the next reconnect or attempt asks again
      last = undefined;
      leaving = undefined;
    }
  };
  return { leave: (server) => void (leaving = server) };
}

function shuffle(xs: string[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
}

/**
 * The connection as its server named it when it accepted it (its INFO's server_id and client_id; a reconnect gets
 * new ones): what the server's disconnect advisory names (protocols/nats-advisory.ts). Undefined before the first INFO.
 */
export function connectionIdOf(nc: Pick<NatsConnection, 'info'>): NatsConnectionId | undefined {
  const info = nc.info;
  return info?.server_id && typeof info.client_id === 'number' ? { server: info.server_id, client: info.client_id } : undefined;
}

/**
 * How long an actor keeps dialling NATS at start-up while no server takes the connection (refused, silent, not yet
 * resolvable), ms: a node agent booted before its NATS server, an actor restarted while NATS restarts. Past it the
 * start fails (NatsUnreachableError) and the process exits for its supervisor to restart it.
 */
export const ACTOR_FIRST_CONNECT_MS = 60_000;

/** First wait between two start-up attempts, ms; doubled after each failed one up to FIRST_CONNECT_MAX_WAIT_MS. */
export const FIRST_CONNECT_WAIT_MS = 100;
export const FIRST_CONNECT_MAX_WAIT_MS = 2000;

/** No NATS server took the first connection within the start-up deadline. Retryable: NATS may come up later. */
export class NatsUnreachableError extends DynError {
  override name = 'NatsUnreachableError';
  constructor(readonly servers: readonly string[], readonly attempts: number, readonly waitedMs: number, cause: unknown) {
    super('unavailable', `no NATS server of ${servers.join(',')} took the connection in ${attempts} attempts over ${waitedMs} ms: ${(cause as Error)?.message ?? String(cause)}`, { retryable: true, cause });
  }
}

/**
 * Whether a failed first connect may succeed when tried again: not when the server refused the credentials or the
 * options are invalid (the same attempt fails the same way); a refused, reset, silent or unresolvable server may
 * come up.
 */
export function firstConnectRetryable(err: unknown): boolean {
  // the server's 'Authentication Timeout' (a client too slow to send its CONNECT, e.g. on a loaded host) comes as an
  // AuthorizationError too, but says nothing of the credentials: dial again
  if (err instanceof natsErrors.AuthorizationError && /authentication timeout/i.test(err.message)) return true;
  return !(
    err instanceof natsErrors.AuthorizationError ||
    err instanceof natsErrors.UserAuthenticationExpiredError ||
    err instanceof natsErrors.InvalidArgumentError ||
    err instanceof natsErrors.InvalidOperationError
  );
}

/**
 * The first connection: `attempt` again, after a wait growing from FIRST_CONNECT_WAIT_MS to FIRST_CONNECT_MAX_WAIT_MS,
 * while it fails retryably (firstConnectRetryable) and `deadlineMs` has not passed since the first (an attempt begun
 * before it runs to its own dial deadline). deadlineMs 0: one attempt, its error as is. Past the deadline:
 * NatsUnreachableError; `signal` aborted: CancelledError.
 */
export async function firstConnect<T>(
  attempt: () => Promise<T>,
  o: { deadlineMs: number; servers: readonly string[]; log?: Logger; signal?: AbortSignal },
): Promise<T> {
  const t0 = Date.now();
  let wait = FIRST_CONNECT_WAIT_MS;
  for (let n = 1; ; n++) {
    if (o.signal?.aborted) throw new CancelledError('first NATS connect cancelled', o.signal.reason);
    try {
      const c = await attempt();
      if (n > 1) o.log?.info({ attempts: n, waitedMs: Date.now() - t0 }, 'nats connected after start-up retries');
      return c;
    } catch (err) {
      if (o.deadlineMs <= 0 || !firstConnectRetryable(err)) throw err;
      const left = t0 + o.deadlineMs - Date.now();
      if (left <= 0) throw new NatsUnreachableError(o.servers, n, Date.now() - t0, err);
      if (n === 1) o.log?.warn({ servers: o.servers, err: (err as Error).message, deadlineMs: o.deadlineMs }, 'nats not reachable at start-up: retrying');
      else o.log?.debug({ attempt: n, err: (err as Error).message }, 'nats not reachable yet');
      await abortableDelay(Math.min(wait, left), o.signal);
      wait = Math.min(wait * 2, FIRST_CONNECT_MAX_WAIT_MS);
    }
  }
}

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
