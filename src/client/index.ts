/**
 * `dynamollm/client`: the consumer SDK of dynamollm's public pub/sub API (docs/PROTOCOL.md). Typed, validated
 * subscriptions to
 * - telemetry per instance, pool and the cluster (core NATS, live);
 * - per-request records with their energy, live or from the DYN_V1_REQUESTS stream (at least once: durable
 *   consumer, explicit acknowledgements);
 * - decision events, live or replayed from the DYN_V1_EVENTS stream from a time or a sequence on (durable or
 *   ephemeral consumers, explicit acknowledgements).
 *
 * It needs only the observer role's read-only credentials (nats.conf `observer`). Every message is decoded and
 * validated with the protocol's zod schemas; one that fails is counted in `invalid` and skipped (stream
 * messages are acknowledged so they are not redelivered forever). Every buffer is bounded: a live
 * subscription that its reader does not keep up with drops its oldest messages (counted in `dropped`); a
 * stream consumer holds at most `maxAckPending` unacknowledged messages, the server keeps the rest.
 *
 *     import { DynamoClient } from 'dynamollm/client';
 *     const c = await DynamoClient.connect({ servers: 'nats://127.0.0.1:4222', user: 'observer', pass: process.env.NATS_PASSWORD });
 *     for await (const t of c.clusterTelemetry()) console.log(t.value.powerW);
 */
import { connect, nuid, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node';
import {
  AckPolicy, DeliverPolicy, jetstream as jsClient, jetstreamManager,
  type ConsumerConfig, type ConsumerMessages, type JsMsg,
} from '@nats-io/jetstream';
import {
  ClusterTelemetry, DecisionEvent, InstanceTelemetry, NodeTelemetry, PoolTelemetry, RequestRecord, EVENT_KINDS, inboxPrefix, jetstream, subjects,
  type Codec, type EventKind,
} from '../../protocols/index.ts';

export type {
  ClusterTelemetry, DecisionEvent, InstanceTelemetry, NodeTelemetry, PoolTelemetry, RequestRecord, EventKind,
} from '../../protocols/index.ts';
export { EVENT_KINDS, subjects, jetstream } from '../../protocols/index.ts';

export interface ConnectOptions {
  /** NATS URL(s). */
  servers: string | string[];
  /** the observer role's credentials (nats.conf: user `observer`). */
  user?: string;
  pass?: string;
  /** connection name shown by the server. Default 'dynamollm-client'. */
  name?: string;
  /** deadline of the first connect, ms. Default 5000. */
  timeoutMs?: number;
  /**
   * prefix of the connection's reply inboxes; the server lets the observer role subscribe only under
   * `_INBOX.observer.<id>.>` (protocols/permissions.ts). Default `_INBOX.observer.client-<random>`.
   */
  inboxPrefix?: string;
}

/** how long caughtUp() waits for acks sent and not yet applied by the server before it answers false. */
const CAUGHT_UP_ACK_MS = 2000;

/** One validated message of a live subscription. */
export interface Received<T> {
  value: T;
  subject: string;
}

/** One validated message of a stream consumer: acknowledge it once it is processed. */
export interface StreamReceived<T> extends Received<T> {
  /** stream sequence (replay from here with `fromSeq`). */
  seq: number;
  /** when the stream stored it. */
  time: Date;
  /** delivered before and not acknowledged in time. */
  redelivered: boolean;
  ack(): void;
  /** ask for redelivery (after `delayMs`). */
  nak(delayMs?: number): void;
}

/** A live, bounded, validated subscription. Iterate it; `stop()` ends the iteration. */
export interface LiveSubscription<T> extends AsyncIterable<Received<T>> {
  /** messages that failed to decode or validate (skipped). */
  readonly invalid: number;
  /** messages dropped because the reader fell `capacity` behind. */
  readonly dropped: number;
  stop(): void;
}

/** A stream consumer; iterate it and ack each message. `stop()` ends the iteration (a durable consumer stays). */
export interface StreamSubscription<T> extends AsyncIterable<StreamReceived<T>> {
  readonly invalid: number;
  /** the consumer's name on the server. */
  readonly consumer: string;
  /** true when the consumer has nothing left to deliver and nothing unacknowledged (asks the server; acks sent here and
   * not yet applied there are waited for, up to 2 s). */
  caughtUp(): Promise<boolean>;
  stop(): Promise<void>;
}

export interface LiveOptions {
  /** most messages buffered for a slow reader; beyond it the oldest are dropped. Default 10000. */
  capacity?: number;
}

export interface ReplayOptions {
  /** name of a durable consumer: a restarted reader resumes after its last acknowledged message. Without
   * one the consumer is ephemeral (removed by the server `inactiveMs` after the reader goes away). */
  durable?: string;
  /** start at this time (Date, or ms since epoch). */
  since?: Date | number;
  /** start at this stream sequence. */
  fromSeq?: number;
  /** start with the messages stored from now on (the default is every stored message). */
  newOnly?: boolean;
  /** time the server waits for an ack before redelivering, ms. Default 30000. */
  ackWaitMs?: number;
  /** most unacknowledged messages in flight to this reader. Default 1000. */
  maxAckPending?: number;
  /** an ephemeral consumer is removed this long after its reader stops, ms. Default 60000. */
  inactiveMs?: number;
}

export interface EventFilter {
  /** only these kinds (default all). */
  kinds?: readonly EventKind[];
}

export class DynamoClient {
  readonly nc: NatsConnection;

  private constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  static async connect(o: ConnectOptions): Promise<DynamoClient> {
    const nc = await connect({
      servers: o.servers, user: o.user, pass: o.pass, name: o.name ?? 'dynamollm-client', timeout: o.timeoutMs ?? 5000,
      inboxPrefix: o.inboxPrefix ?? inboxPrefix('observer', `client-${nuid.next()}`),
    });
    return new DynamoClient(nc);
  }

  /** Wrap a connection the caller owns (close() then closes it). */
  static fromConnection(nc: NatsConnection): DynamoClient {
    return new DynamoClient(nc);
  }

  // ------------------------------------------------------------------ telemetry (live)

  /** InstanceTelemetry of one instance, or of every instance (about 1 message/s each). */
  instanceTelemetry(o: LiveOptions & { instance?: string } = {}): LiveSubscription<InstanceTelemetry> {
    return this.#live(o.instance ? subjects.telInstance(o.instance) : subjects.telInstanceAll(), InstanceTelemetry, o);
  }

  /** NodeTelemetry of one node, or of every node (1 message/s each): power and energy of its GPUs no instance holds. */
  nodeTelemetry(o: LiveOptions & { node?: string } = {}): LiveSubscription<NodeTelemetry> {
    return this.#live(o.node ? subjects.telNode(o.node) : subjects.telNodeAll(), NodeTelemetry, o);
  }

  /** PoolTelemetry of one pool, or of every pool (1 message/s each, from the cluster leader). */
  poolTelemetry(o: LiveOptions & { pool?: string } = {}): LiveSubscription<PoolTelemetry> {
    return this.#live(o.pool ? subjects.telPool(o.pool) : subjects.telPoolAll(), PoolTelemetry, o);
  }

  /** ClusterTelemetry (1 message/s, from the cluster leader). */
  clusterTelemetry(o: LiveOptions = {}): LiveSubscription<ClusterTelemetry> {
    return this.#live(subjects.telCluster(), ClusterTelemetry, o);
  }

  // ------------------------------------------------------------------ per-request records

  /** RequestRecords as they are published (live; missed while disconnected). */
  requests(o: LiveOptions & { pool?: string } = {}): LiveSubscription<RequestRecord> {
    return this.#live(o.pool ? subjects.telRequest(o.pool) : subjects.telRequestAll(), RequestRecord, o);
  }

  /** RequestRecords from the DYN_V1_REQUESTS stream, at least once (ack each; use a durable for billing). */
  requestRecords(o: ReplayOptions & { pool?: string } = {}): Promise<StreamSubscription<RequestRecord>> {
    return this.#consume(jetstream.requestsStream, o.pool ? subjects.telRequest(o.pool) : undefined, RequestRecord, o, () => true);
  }

  // ------------------------------------------------------------------ decision events

  /** Decision events as they are published (live). */
  events(o: LiveOptions & EventFilter = {}): LiveSubscription<DecisionEvent> {
    const kinds = o.kinds?.length ? o.kinds : undefined;
    if (kinds?.length === 1) return this.#live(subjects.eventsOfKind(kinds[0]!), DecisionEvent, o);
    return this.#live(subjects.eventAll(), DecisionEvent, o, kinds ? (e) => kinds.includes(e.kind) : undefined);
  }

  /** Decision events from the DYN_V1_EVENTS stream: replayed from a time or a sequence on, then live. */
  eventHistory(o: ReplayOptions & EventFilter = {}): Promise<StreamSubscription<DecisionEvent>> {
    const kinds = o.kinds?.length ? o.kinds : undefined;
    // one kind: the server filters; several: the client does (the server's multi-filter needs nats-server 2.10)
    const filter = kinds?.length === 1 ? subjects.eventsOfKind(kinds[0]!) : undefined;
    return this.#consume(jetstream.eventsStream, filter, DecisionEvent, o, (e) => !kinds || kinds.includes(e.kind));
  }

  /** The first and last sequence and the message count of a stream (e.g. to resolve "the last N events"). */
  async streamState(stream: string = jetstream.eventsStream): Promise<{ firstSeq: number; lastSeq: number; messages: number; firstTime: string }> {
    const jsm = await jetstreamManager(this.nc);
    const s = (await jsm.streams.info(stream)).state;
    return { firstSeq: s.first_seq, lastSeq: s.last_seq, messages: s.messages, firstTime: s.first_ts };
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }

  // ------------------------------------------------------------------ internals

  #live<T>(subject: string, codec: Codec<T>, o: LiveOptions, accept?: (v: T) => boolean): LiveSubscription<T> {
    const capacity = Math.max(1, o.capacity ?? 10_000);
    const queue = new BoundedQueue<Received<T>>(capacity);
    let invalid = 0;
    const sub: NatsSubscription = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) {
          queue.end(err);
          return;
        }
        let value: T;
        try {
          value = codec.decode(m.data, m.subject);
        } catch {
          invalid++;
          return;
        }
        if (accept && !accept(value)) return;
        queue.push({ value, subject: m.subject });
      },
    });
    void sub.closed.then(() => queue.end());
    return {
      get invalid() {
        return invalid;
      },
      get dropped() {
        return queue.dropped;
      },
      stop: () => {
        if (!sub.isClosed()) sub.unsubscribe();
        queue.end();
      },
      [Symbol.asyncIterator]: () => queue.iterator(),
    };
  }

  async #consume<T>(stream: string, filter: string | undefined, codec: Codec<T>, o: ReplayOptions, accept: (v: T) => boolean): Promise<StreamSubscription<T>> {
    if (o.since !== undefined && o.fromSeq !== undefined) throw new RangeError('give `since` or `fromSeq`, not both');
    const jsm = await jetstreamManager(this.nc);
    const name = o.durable ?? `dyn-client-${Math.random().toString(36).slice(2, 12)}`;
    const exists = o.durable ? await jsm.consumers.info(stream, o.durable).then(() => true, () => false) : false;
    if (!exists) {
      const cfg: Partial<ConsumerConfig> = {
        name,
        ack_policy: AckPolicy.Explicit,
        ack_wait: (o.ackWaitMs ?? 30_000) * 1_000_000,
        max_ack_pending: o.maxAckPending ?? 1000,
        deliver_policy: DeliverPolicy.All,
      };
      if (o.durable) cfg.durable_name = o.durable;
      else cfg.inactive_threshold = (o.inactiveMs ?? 60_000) * 1_000_000;
      if (filter) cfg.filter_subject = filter;
      if (o.fromSeq !== undefined) {
        cfg.deliver_policy = DeliverPolicy.StartSequence;
        cfg.opt_start_seq = Math.max(1, Math.floor(o.fromSeq));
      } else if (o.since !== undefined) {
        cfg.deliver_policy = DeliverPolicy.StartTime;
        cfg.opt_start_time = new Date(o.since).toISOString();
      } else if (o.newOnly) {
        cfg.deliver_policy = DeliverPolicy.New;
      }
      await jsm.consumers.add(stream, cfg);
    }
    const consumer = await jsClient(this.nc).consumers.get(stream, name);
    const messages: ConsumerMessages = await consumer.consume({ max_messages: Math.min(256, o.maxAckPending ?? 1000) });
    let invalid = 0;
    // the stream sequence of the last message taken from the consumer, and how many of those taken are not yet acked
    // or nak'd here: what caughtUp() needs to tell an ack still on its way to the server from a message unanswered
    let lastSeq = 0;
    let unsettled = 0;
    async function* iterate(): AsyncGenerator<StreamReceived<T>> {
      for await (const m of messages as AsyncIterable<JsMsg>) {
        lastSeq = m.seq;
        let value: T;
        try {
          value = codec.decode(m.data, m.subject);
        } catch {
          invalid++;
          m.term('invalid payload');
          continue;
        }
        if (!accept(value)) {
          m.ack();
          continue;
        }
        let settled = false;
        const settle = () => {
          if (settled) return;
          settled = true;
          unsettled--;
        };
        unsettled++;
        yield {
          value, subject: m.subject, seq: m.seq, time: m.time, redelivered: m.redelivered,
          ack: () => (settle(), m.ack()), nak: (d?: number) => (settle(), m.nak(d)),
        };
      }
    }
    return {
      consumer: name,
      get invalid() {
        return invalid;
      },
      caughtUp: async () => {
        // an ack is a publish the server applies after it reads it: when every message delivered has been taken and
        // answered here, acks the server still counts as pending are on their way, and it is asked again until they
        // land (or CAUGHT_UP_ACK_MS passes: then an answer was lost, and the consumer is not caught up)
        const until = Date.now() + CAUGHT_UP_ACK_MS;
        for (;;) {
          const i = await jsm.consumers.info(stream, name);
          if (i.num_pending === 0 && i.num_ack_pending === 0) return true;
          const inFlight = i.num_pending === 0 && unsettled === 0 && i.delivered.stream_seq <= lastSeq;
          if (!inFlight || Date.now() >= until) return false;
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      stop: async () => {
        await messages.close().catch(() => {});
      },
      [Symbol.asyncIterator]: () => iterate(),
    };
  }
}

/** A FIFO of at most `capacity` items; pushing onto a full one drops the oldest. One reader. */
class BoundedQueue<T> {
  readonly capacity: number;
  dropped = 0;
  #items: T[] = [];
  #head = 0;
  #ended = false;
  #error?: Error;
  #wake?: () => void;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(x: T): void {
    if (this.#ended) return;
    if (this.#items.length - this.#head >= this.capacity) {
      this.#head++;
      this.dropped++;
    }
    this.#items.push(x);
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#wake?.();
  }

  end(err?: Error): void {
    this.#ended = true;
    this.#error ??= err;
    this.#wake?.();
  }

  async *iterator(): AsyncGenerator<T> {
    for (;;) {
      if (this.#head < this.#items.length) {
        const x = this.#items[this.#head++]!;
        yield x;
        continue;
      }
      if (this.#ended) {
        if (this.#error) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}

/** Every event kind, for `--kind` validation. */
export function isEventKind(s: string): s is EventKind {
  return (EVENT_KINDS as readonly string[]).includes(s);
}
