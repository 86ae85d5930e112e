/**
 * The Bus: one NATS connection per process, with typed request-reply, serving and pub/sub over protocols'
 * codecs. Every request has a mandatory deadline; failures become typed errors (TimeoutError,
 * NoRespondersError, RemoteError, ProtocolError). Serving and subscribing go through bounded mailboxes;
 * a bad payload is answered with a typed error (requests) or counted (publications), logged once per
 * subject per `protocolLogIntervalMs`, and never stops the subscription.
 */
import { BUS_MAX_PING_OUT, DEFAULT_BUS_PING_MS } from '../policy/bus-keepalive.ts';
import { EventEmitter } from 'node:events';
import { connect, errors as natsErrors, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { KV, KvOptions } from '@nats-io/kv';
import { KvOpens, openKv } from './kv-open.ts';
import { jetStreamOrigin } from './jetstream-origin.ts';
import { LatestPayloads, type LatestHandle, type LatestOpts } from './bus-latest.ts';
import type { BusConnectOptions, ServeHandle, ServeOpts, SubscribeHandle, SubscribeOpts } from './bus-types.ts';
export type { BusConnectOptions, MailboxOpts, ServeHandle, ServeOpts, SubscribeHandle, SubscribeOpts } from './bus-types.ts';
import type { Logger } from 'pino';
import { RateLimitedLog } from './logger.ts';
import { Ack, type Codec, unpackRaw, PROTOCOL_VERSION } from '../../protocols/index.ts';
import { ProtocolError, RemoteError, toWireError, DynError } from '../../protocols/errors.ts';
import { TimeoutError, NoRespondersError, CancelledError, ConnectionClosedError } from './errors.ts';
import { Mailbox } from './mailbox.ts';
import { RequestMux } from './request-mux.ts';
import { ServiceResponder, type EndpointStats, type ServiceIdentityOpts } from './service.ts';
import { connectionOptions, type NatsSettings } from './nats-settings.ts';
import { JetStreamMover } from './jetstream-move.ts';
import { answeringFirst, firstConnect, NATS_DIAL_TIMEOUT_MS, skipSilentOnReconnect } from './nats-dial.ts';
import { linkUp, ReplyHold, type ReplyHoldCounters } from './reply-hold.ts';
import type { AbortLike } from './abort.ts';

/** How long Bus.drain waits for an orderly drain before it closes the connection (ms). */
export const BUS_DRAIN_TIMEOUT_MS = 5000;


export interface ServeContext {
  subject: string;
  /** aborted when the service stops (unsubscribe, drain or close of the bus). */
  signal: AbortSignal;
  /**
   * Frees this handler's place among the `concurrency` handlers running at once while its answer is still to
   * come (a request the service holds for long): the reply still goes out when the handler settles. The
   * service bounds what it holds that way; a drain does not wait for a released handler.
   */
  release: () => void;
}

export interface BusCounters extends ReplyHoldCounters {
  /** payloads that failed to decode or validate (received by serve/subscribe). */
  protocolErrors: number;
  /** messages refused because a mailbox was full. */
  mailboxOverflows: number;
  /** handler rejections (answered with an error reply when serving). */
  handlerErrors: number;
  /** server-reported errors (e.g. permission violations). */
  serverErrors: number;
  /** messages whose claimed identity does not match the subject they arrived on (SubscribeOpts.expectSubject). */
  identityRejections: number;
}

const DEFAULT_CAPACITY = 1024;

/**
 * The options every KV bucket of the project is opened with. Replicated buckets (a NATS cluster) read through
 * their stream's leader, not by direct get: a direct get may be answered by a follower that has not applied the
 * last write yet, so a reader (a successor taking a lease, the dispatched list or a re-shard record) could see
 * the value before a write that was already acknowledged. One replica has no follower: it is read by direct get
 * (kv-open.ts says why a one-replica bucket is never read by a stream message get).
 */
export function kvBucketOptions(replicas: number): Partial<KvOptions> {
  return replicas > 1 ? { replicas, allow_direct: false } : { replicas };
}

/**
 * Events: 'status' (the nats.js Status union), 'permission_error' ({subject, operation, message}).
 */
export class Bus extends EventEmitter {
  readonly nc: NatsConnection;
  readonly log: Logger;
  readonly counters: BusCounters = { protocolErrors: 0, mailboxOverflows: 0, handlerErrors: 0, serverErrors: 0, identityRejections: 0, repliesHeld: 0, repliesDropped: 0 };
  readonly #protocolLog: RateLimitedLog;
  #closing?: Promise<void>;
  #abort = new AbortController();
  #js?: JetStreamClient;
  #kvs = new KvOpens();
  #handles = new Set<{ unsubscribe(): void; drain(): Promise<void> }>();
  #service?: ServiceResponder;
  readonly #replies: ReplyHold;
  /** this bus's requests: one reply subscription, no nats.js request objects (request-mux.ts). */
  readonly #requests: RequestMux;

  private constructor(nc: NatsConnection, log: Logger, protocolLogIntervalMs: number, inboxPrefix?: string) {
    super();
    this.nc = nc;
    this.#requests = new RequestMux(nc, inboxPrefix);
    // a connection that closed for good fails its requests in flight at once
    void nc.closed().then(() => this.#requests.close(), () => this.#requests.close());
    this.log = log;
    this.#protocolLog = new RateLimitedLog(log, protocolLogIntervalMs);
    this.#replies = new ReplyHold(this.counters, log, () => nc.isClosed() || linkUp(nc, this.#connected));
    void this.#watchStatus();
  }

  static async connect(opts: BusConnectOptions): Promise<Bus> {
    const reconnect = opts.reconnect ?? true;
    const settings: NatsSettings = opts.settings ?? {
      servers: typeof opts.servers === 'string' ? opts.servers.split(',') : (opts.servers ?? []),
      ...(opts.user !== undefined ? { user: opts.user, pass: opts.pass ?? '' } : {}),
    };
    const conn = connectionOptions(settings), dialMs = opts.connectTimeoutMs ?? NATS_DIAL_TIMEOUT_MS;
    const nc = await firstConnect(async () => connect({
      ...conn,
      // the servers answering first (shuffled unless noRandomize), then the others: a silent one is not dialled first
      servers: await answeringFirst(conn.servers, dialMs, opts.noRandomize),
      noRandomize: true,
      name: opts.name,
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      reconnect,
      maxReconnectAttempts: reconnect ? -1 : 0,
      reconnectTimeWait: 250,
      timeout: dialMs,
      // a silent server is left for another within BUS_MAX_PING_OUT + 1 ping periods, well inside the death window (src/policy/bus-keepalive.ts)
      pingInterval: opts.pingIntervalMs ?? DEFAULT_BUS_PING_MS,
      maxPingOut: BUS_MAX_PING_OUT,
      // no Error (with its captured stack) made up front for every request and subscription timer: the bus
      // maps each failure to its own error class anyway, and those stacks were a visible share of the
      // request plane's CPU (docs/DATAPATH.md)
      noAsyncTraces: true,
    }), { deadlineMs: opts.firstConnectMs ?? 0, servers: conn.servers, log: opts.log, ...(opts.signal ? { signal: opts.signal } : {}) });
    // a reconnect passes over the servers that do not answer while another does (nats-dial.ts)
    const steering = skipSilentOnReconnect(nc, dialMs, opts.log);
    opts.log.debug({ server: nc.getServer() }, 'nats connected');
    const bus = new Bus(nc, opts.log, opts.protocolLogIntervalMs ?? 10_000, opts.inboxPrefix);
    bus.#jsMover = new JetStreamMover(nc, conn.servers, opts.log, steering);
    return bus;
  }

  async #watchStatus(): Promise<void> {
    try {
      for await (const s of this.nc.status()) {
        this.emit('status', s);
        switch (s.type) {
          case 'disconnect':
            this.#connected = false;
            this.log.warn({ server: s.server }, 'nats disconnected');
            break;
          case 'reconnect':
            this.#connected = true;
            this.log.info({ server: s.server }, 'nats reconnected');
            this.#replies.send();
            break;
          case 'reconnecting':
            this.log.debug('nats reconnecting');
            break;
          case 'error': {
            this.counters.serverErrors++;
            const e = s.error;
            if (e instanceof natsErrors.PermissionViolationError) {
              this.#rateLimitedWarn(`perm:${e.operation}:${e.subject}`, { subject: e.subject, operation: e.operation }, 'nats permission violation');
              this.emit('permission_error', { subject: e.subject, operation: e.operation, message: e.message });
              if (e.operation === 'publish') this.#requests.failSubject(e.subject, e.message);
            } else {
              this.#rateLimitedWarn('server-error', { err: e?.message }, 'nats server error');
            }
            break;
          }
          case 'slowConsumer':
            this.log.warn({ pending: s.pending, subject: s.sub.getSubject() }, 'nats slow consumer');
            break;
          case 'staleConnection':
            this.log.warn('nats stale connection');
            break;
          default:
            break;
        }
      }
    } catch {
      // the status iterator ends with the connection
    }
  }

  /**
   * Answer the NATS Service API (`$SRV.PING|INFO|STATS`) as this service; every subject served through
   * this Bus from now on is one of its endpoints, with request, error and processing-time counters.
   * Idempotent (the first identity stays).
   */
  startService(identity: ServiceIdentityOpts): ServiceResponder {
    if (!this.#service) {
      this.#service = new ServiceResponder(identity);
      this.#service.start(this.nc, this.log);
    }
    return this.#service;
  }

  /** The Service API responder, once startService was called. */
  get service(): ServiceResponder | undefined {
    return this.#service;
  }

  /** false from a disconnect until the reconnect (readiness probes read it), and once closed. */
  get connected(): boolean {
    return this.#connected && !this.closed;
  }
  #connected = true;

  get closed(): boolean {
    return this.nc.isClosed();
  }

  /**
   * Typed request-reply with a mandatory deadline. A reply that is an `Ack{ok:false,error}` (and does not
   * validate as `resCodec`) becomes a RemoteError carrying the remote code.
   */
  async request<Q, R>(
    subject: string,
    reqCodec: Codec<Q>,
    msg: Q,
    resCodec: Codec<R>,
    opts: { timeoutMs: number; signal?: AbortLike },
  ): Promise<R> {
    if (!(opts?.timeoutMs > 0)) throw new RangeError(`request to ${subject}: timeoutMs must be > 0`);
    if (opts.signal?.aborted) throw new CancelledError(`request to ${subject} cancelled before sending`);
    const data = reqCodec.encode(msg);
    let reply: Msg;
    try {
      const p = this.#requests.request(subject, data, opts.timeoutMs);
      reply = opts.signal ? await raceAbort(p, opts.signal, subject) : await p;
    } catch (err) {
      throw mapRequestError(err, subject, opts.timeoutMs);
    }
    return decodeReply(reply.data, subject, resCodec);
  }

  /** Fire-and-forget publication (validated at the sender by the codec). */
  publish<T>(subject: string, codec: Codec<T>, msg: T): void {
    this.nc.publish(subject, codec.encode(msg));
  }

  /** Answer requests on `subject`. See the module comment for error handling. */
  serve<Q, R>(
    subject: string,
    reqCodec: Codec<Q>,
    resCodec: Codec<R>,
    handler: (req: Q, ctx: ServeContext) => Promise<R>,
    opts: ServeOpts<Q> = {},
  ): ServeHandle {
    const ac = new AbortController();
    const onBusAbort = () => ac.abort(new CancelledError('bus closing'));
    this.#abort.signal.addEventListener('abort', onBusAbort, { once: true });
    const respond = (m: Msg, bytes: Uint8Array) => this.#replies.reply(m, bytes);
    const errorReply = (m: Msg, err: unknown) => respond(m, Ack.encode({ v: PROTOCOL_VERSION, ok: false, error: toWireError(err) }));
    const ep: EndpointStats | undefined = this.#service?.addEndpoint(subject, opts.queue);
    const done = (t0: bigint, err?: unknown) => ep?.record(Number(process.hrtime.bigint() - t0), err === undefined ? undefined : (err instanceof Error ? err.message : JSON.stringify(err) ?? 'undefined'));
    const mailbox = new Mailbox<{ m: Msg; req: Q; t0: bigint }>({
      capacity: opts.capacity ?? DEFAULT_CAPACITY,
      concurrency: opts.concurrency ?? 64,
      name: `serve ${subject}`,
      // the mailbox's slot is held until the handler settles, or until it calls ctx.release()
      handler: ({ m, req, t0 }) => new Promise<void>((freed) => {
        const answer = async () => {
          let res: R;
          try {
            res = await handler(req, { subject: m.subject, signal: ac.signal, release: () => freed() });
          } catch (err) {
            this.counters.handlerErrors++;
            if (!(err instanceof DynError)) this.log.error({ subject: m.subject, err }, 'handler failed');
            errorReply(m, err);
            done(t0, err);
            return;
          }
          // a publication (no reply subject) is answered by nobody: its reply is not encoded
          if (!m.reply) {
            done(t0);
            return;
          }
          let bytes: Uint8Array;
          try {
            bytes = resCodec.encode(res);
          } catch (err) {
            this.counters.handlerErrors++;
            this.log.error({ subject: m.subject, err: (err as Error).message }, 'handler returned an invalid reply');
            errorReply(m, err);
            done(t0, err);
            return;
          }
          respond(m, bytes);
          done(t0);
        };
        void answer().finally(() => freed());
      }),
    });
    const sub = this.nc.subscribe(subject, {
      queue: opts.queue,
      callback: (err, m) => {
        if (err) {
          this.log.warn({ subject, err: err.message }, 'serve subscription error');
          return;
        }
        if (this.#fromJetStream(m) || (opts.requestsOnly && !m.reply && this.#badPayload(m.subject, new Error('a command without a reply subject')))) return;
        const t0 = process.hrtime.bigint();
        let req: Q;
        try {
          req = reqCodec.decode(m.data, m.subject);
        } catch (e) {
          this.#badPayload(m.subject, e);
          errorReply(m, e instanceof ProtocolError ? e : new ProtocolError(String(e), { subject: m.subject }));
          done(t0, e);
          return;
        }
        if (opts.publication && !m.reply && mailbox.size === 0) {
          try {
            opts.publication(req, m.subject);
            done(t0);
          } catch (e) {
            this.counters.handlerErrors++;
            this.log.error({ subject: m.subject, err: e }, 'handler failed');
            done(t0, e);
          }
          return;
        }
        try {
          mailbox.offer({ m, req, t0 });
        } catch (e) {
          this.counters.mailboxOverflows++;
          this.#rateLimitedWarn(`overflow:${subject}`, { subject, capacity: mailbox.capacity }, 'mailbox full, refusing request');
          errorReply(m, e);
          done(t0, e);
        }
      },
    });
    return this.#track(subject, sub, mailbox, () => {
      if (ep) this.#service?.removeEndpoint(ep);
      ac.abort(new CancelledError('service stopped'));
      this.#abort.signal.removeEventListener('abort', onBusAbort);
    }) as ServeHandle;
  }

  /** Receive publications on `subject` through a bounded mailbox. Bad payloads are counted and logged. */
  subscribe<T>(
    subject: string,
    codec: Codec<T>,
    handler: (msg: T, subject: string) => void | Promise<void>,
    opts: SubscribeOpts<T> = {},
  ): SubscribeHandle {
    const mailbox = new Mailbox<{ msg: T; subject: string }>({
      capacity: opts.capacity ?? DEFAULT_CAPACITY,
      concurrency: opts.concurrency ?? 1,
      name: `sub ${subject}`,
      handler: ({ msg, subject: s }) => handler(msg, s),
      onError: (err, item) => {
        this.counters.handlerErrors++;
        this.log.error({ subject: item.subject, err }, 'subscriber handler failed');
      },
    });
    const sub = this.nc.subscribe(subject, {
      queue: opts.queue,
      callback: (err, m) => {
        if (err) {
          this.log.warn({ subject, err: err.message }, 'subscription error');
          return;
        }
        if (opts.unwanted?.(m.subject) || this.#fromJetStream(m)) return;
        const msg = this.#decodeChecked(codec, m.data, m.subject, opts.expectSubject);
        if (msg === undefined) return;
        try {
          mailbox.offer({ msg, subject: m.subject });
        } catch {
          this.counters.mailboxOverflows++;
          this.#rateLimitedWarn(`overflow:${subject}`, { subject, capacity: mailbox.capacity }, 'mailbox full, dropping publication');
        }
      },
    });
    return this.#track(subject, sub, mailbox, () => {}) as SubscribeHandle;
  }

  /**
   * Receive publications on `subject` keeping only the latest payload of each subject it arrives on, undecoded, with
   * its arrival time (./bus-latest.ts): nothing is decoded or handled as they arrive; `take()` decodes what arrived
   * since the last take, each payload checked as `subscribe` checks it.
   */
  subscribeLatest<T>(subject: string, codec: Codec<T>, opts: LatestOpts<T>): LatestHandle<T> {
    const kept = new LatestPayloads<T>(opts, (s) => {
      this.counters.mailboxOverflows++;
      this.#rateLimitedWarn(`overflow:${subject}`, { subject: s, capacity: opts.maxSubjects }, 'latest payloads full, dropping publication');
    });
    const sub = this.nc.subscribe(subject, { callback: (err, m) => {
      if (err) this.log.warn({ subject, err: err.message }, 'subscription error');
      else if (!this.#fromJetStream(m)) kept.offer(m.subject, m.data);
    } });
    const handle = this.#track(subject, sub, new Mailbox<never>({ capacity: 1, name: `latest ${subject}`, handler: async () => {} }), () => kept.clear());
    return kept.handle(subject, handle, (data, s) => this.#decodeChecked(codec, data, s, opts.expectSubject));
  }

  /** A payload's message, or undefined where it does not decode or claims another identity than `subject` (counted). */
  #decodeChecked<T>(codec: Codec<T>, data: Uint8Array, subject: string, expectSubject?: (msg: T) => string): T | undefined {
    let msg: T;
    try {
      msg = codec.decode(data, subject);
    } catch (e) {
      this.#badPayload(subject, e);
      return undefined;
    }
    return !expectSubject || this.#claimMatches(expectSubject, msg, subject) ? msg : undefined;
  }

  #track<T>(subject: string, sub: Subscription, mailbox: Mailbox<T>, onStop: () => void) {
    let stopped = false;
    const handle = {
      subject,
      mailbox: mailbox as Mailbox<unknown>,
      unsubscribe: () => {
        if (stopped) return;
        stopped = true;
        this.#handles.delete(handle);
        if (!sub.isClosed()) sub.unsubscribe();
        mailbox.close();
        onStop();
      },
      drain: async () => {
        if (stopped) return mailbox.idle();
        stopped = true;
        this.#handles.delete(handle);
        try {
          if (!sub.isClosed() && !this.nc.isClosed()) await sub.drain();
        } catch {
          // connection went away: nothing more will arrive anyway
        }
        mailbox.close();
        await mailbox.idle();
        onStop();
      },
    };
    this.#handles.add(handle);
    return handle;
  }

  #claimMatches<T>(expect: (msg: T) => string, msg: T, subject: string): boolean {
    let want: string;
    try {
      want = expect(msg);
    } catch {
      want = '(no valid subject for the claimed identity)';
    }
    if (want === subject) return true;
    this.counters.identityRejections++;
    this.#rateLimitedWarn(`identity:${subject}`, { subject, claimedSubject: want }, 'message claims another identity than its subject, refused');
    return false;
  }

  /** Counted and logged (rate-limited); true: the caller drops the message. */
  #badPayload(subject: string, err: unknown): true {
    this.counters.protocolErrors++;
    this.#rateLimitedWarn(`protocol:${subject}`, { subject, err: (err as Error).message }, 'bad payload refused');
    return true;
  }

  /** A message JetStream delivered (jetstream-origin.ts): counted as a protocol error, logged, dropped. */
  #fromJetStream = (m: Msg): boolean => ((why) => why !== undefined && this.#badPayload(m.subject, new Error(`delivered by JetStream (${why}), refused`)))(jetStreamOrigin(m.reply, m.headers));

  #rateLimitedWarn(key: string, obj: Record<string, unknown>, msg: string): void {
    // one entry per key; keys carry subjects (request ids among them): the map is bounded
    this.#protocolLog.warn(key, obj, msg);
  }

  jetstream(): JetStreamClient {
    this.#js ??= jetstream(this.nc);
    return this.#js;
  }

  /** A JetStream call failed: off a server without JetStream (jetstream-move.ts). True when the connection moves. */
  jetstreamFailed = (err: unknown): boolean => this.#jsMover?.failed(err, this.connected) ?? false;
  /** A JetStream call went unanswered: off this server when it answers no ping within `ms` either (jetstream-move.ts). */
  jetstreamUnanswered = (ms: number): Promise<boolean> => this.#jsMover?.unanswered(ms, () => this.connected) ?? Promise.resolve(false);
  #jsMover?: JetStreamMover;

  /** replicas of the KV buckets and streams created through this bus (a clustered NATS: 3). Default 1. */
  jetstreamReplicas = 1;
  /** whether kv() creates a missing bucket (the JetStream owner: cluster manager, admin); else it fails retryably (kv-open.ts). */
  createsJetStream = true;

  /** Open a KV bucket, bound when it exists, else created where createsJetStream (kv-open.ts; kvBucketOptions of opts.replicas ?? jetstreamReplicas). Shared per name (KvOpens). */
  kv(bucket: string, opts?: Partial<KvOptions>): Promise<KV> {
    return this.#kvs.open(bucket, () => openKv(this.nc, bucket, { ...kvBucketOptions(opts?.replicas ?? this.jetstreamReplicas), ...opts }, this.createsJetStream));
  }

  /**
   * Let served/subscribed messages finish, then close. Idempotent. Bounded: a drain needs the server (it
   * flushes the unsubscriptions), so while NATS is unreachable it would wait for a reconnect that may never
   * come; after `timeoutMs` the connection is closed instead, and what had not finished is dropped.
   */
  drain(timeoutMs = BUS_DRAIN_TIMEOUT_MS): Promise<void> {
    this.#closing ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), timeoutMs);
      });
      const orderly = (async () => {
        await Promise.allSettled([...this.#handles].map((h) => h.drain()));
        this.#service?.stop();
        this.#abort.abort(new CancelledError('bus closing'));
        if (!this.nc.isClosed()) {
          try {
            await this.nc.drain();
          } catch {
            await this.nc.close().catch(() => {});
          }
        }
      })();
      const how = await Promise.race([orderly.then(() => 'drained' as const), deadline]);
      clearTimeout(timer);
      if (how === 'timeout') {
        this.log.warn({ timeoutMs }, 'bus drain deadline passed (NATS unreachable?): closing the connection');
        await this.#closeNow();
      }
    })();
    return this.#closing;
  }

  /** Close now (running handlers see their signal aborted). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#closeNow();
    return this.#closing;
  }

  async #closeNow(): Promise<void> {
    this.#replies.drop();
    this.#requests.close();
    for (const h of [...this.#handles]) h.unsubscribe();
    this.#service?.stop();
    this.#abort.abort(new CancelledError('bus closing'));
    if (!this.nc.isClosed()) await this.nc.close().catch(() => {});
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortLike, subject: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new CancelledError(`request to ${subject} cancelled`, signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

function mapRequestError(err: unknown, subject: string, timeoutMs: number): Error {
  if (err instanceof DynError) return err;
  if (err instanceof natsErrors.TimeoutError) return new TimeoutError(subject, timeoutMs, err);
  if (err instanceof natsErrors.NoRespondersError) return new NoRespondersError(subject, err);
  if (err instanceof natsErrors.RequestError) {
    if (err.isNoResponders() || err.cause instanceof natsErrors.NoRespondersError) return new NoRespondersError(subject, err);
    if (err.cause instanceof natsErrors.TimeoutError) return new TimeoutError(subject, timeoutMs, err);
  }
  if (err instanceof natsErrors.ClosedConnectionError || err instanceof natsErrors.DrainingConnectionError) return new ConnectionClosedError(`request to ${subject}: ${(err as Error).message}`, err);
  return new ConnectionClosedError(`request to ${subject} failed: ${(err as Error)?.message ?? String(err)}`, err);
}

/** Decode a reply: the expected type, else an Ack error (RemoteError), else a ProtocolError. */
export function decodeReply<R>(data: Uint8Array, subject: string, resCodec: Codec<R>): R {
  let raw: unknown;
  try {
    raw = unpackRaw(data);
  } catch (cause) {
    throw new ProtocolError(`${resCodec.name}: undecodable reply from ${subject} (${(cause as Error).message})`, { subject, cause });
  }
  const isAckError =
    raw !== null && typeof raw === 'object' && (raw as { ok?: unknown }).ok === false && typeof (raw as { error?: unknown }).error === 'object';
  if (resCodec !== (Ack as unknown) || !isAckError) {
    try {
      return resCodec.check(raw, subject);
    } catch (err) {
      if (!isAckError) throw err;
    }
  }
  const ack = Ack.check(raw, subject);
  throw new RemoteError(ack.error!);
}
