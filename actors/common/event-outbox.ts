/**
 * The decision events of one actor on their way into the events stream, in order, each stored once.
 *
 * An event is published with JetStream's acknowledgement and a message id (`Nats-Msg-Id`: the actor, this
 * publisher's start, its count) and held until the stream acknowledges it. The first send, and the first after one the
 * stream did not acknowledge, asks the stream's info first and holds the events while it is not there, so that the
 * live subscribers of the events' subjects do not get an event again at each retry while no stream takes it; and one
 * sent whose acknowledgement did not come in time is looked for in the stream (the last event of its subject) before it
 * is sent again. A publication the stream did not take (no
 * stream yet: the first planner's lease event comes before its setup made the stream; no stream leader: the seconds
 * after a NATS cluster heals or a server restarts; no answer within ACK_TIMEOUT_MS) is sent again after a backoff,
 * RETRY_MIN_MS doubling to RETRY_MAX_MS; one sent again after the stream stored it but its acknowledgement was lost
 * is dropped by the stream (the same message id within its duplicate window, 2 minutes). A live subscriber of the
 * events' subjects (core NATS) may get such an event twice, with the same message id.
 *
 * The outbox holds `max` events at most (EVENT_OUTBOX_MAX): past it the oldest go, counted and logged. It sends one
 * event at a time, so the stream keeps each actor's events in the order they were decided. A drain of its bus sends
 * what it holds at once and waits DRAIN_WAIT_MS at most for it, not at all once a send finds no stream (a process
 * run without the cluster manager that makes it); it stops when its bus closes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Bus } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { eventsStreamGet, eventsStreamInfo } from '../../protocols/permissions.ts';

export const EVENT_OUTBOX_MAX = 4096;
export const ACK_TIMEOUT_MS = 5000;
export const RETRY_MIN_MS = 250;
export const RETRY_MAX_MS = 5000;
/** how long a drain of the bus waits for the events held (Bus.beforeDrain), ms: within its own deadline (BUS_DRAIN_TIMEOUT_MS) */
export const DRAIN_WAIT_MS = 3000;
/** the longest wait between two sends while the bus drains, ms */
const DRAIN_RETRY_MS = 100;

export interface EventOutboxOpts {
  max?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  ackTimeoutMs?: number;
  /** the retries' and idle()'s timers (default the system's; unref'd where the handle can be) */
  clock?: Clock;
}

interface Held {
  subject: string;
  data: Uint8Array;
  id: string;
  /** published once at least (its acknowledgement did not come) */
  sent?: boolean;
}

export class EventOutbox {
  readonly #bus: Bus;
  readonly #log: Logger;
  readonly #prefix: string;
  readonly #max: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #ackTimeoutMs: number;
  readonly #clock: Clock;
  #queue: Held[] = [];
  #head = 0;
  #count = 0;
  #sending = false;
  /** the events stream answered its info: events go out; until then (and after a send it did not acknowledge) it is asked first */
  #streamSeen = false;
  /** the bus drains: a send no stream takes (no responders) ends the outbox's work rather than waiting for one */
  #draining = false;
  /** cuts the backoff's wait short (a drain) */
  #wake?: () => void;
  #idle: (() => void)[] = [];
  /** events stored by the stream; events dropped (the outbox full, or a publication no retry can mend); sends again */
  readonly counters = { stored: 0, dropped: 0, retries: 0 };

  constructor(bus: Bus, actor: string, log: Logger, opts: EventOutboxOpts = {}) {
    this.#bus = bus;
    this.#log = log;
    this.#clock = opts.clock ?? systemClock;
    this.#prefix = `${actor}.${this.#clock.now().toString(36)}${randomBytes(4).toString('hex')}`;
    this.#max = opts.max ?? EVENT_OUTBOX_MAX;
    this.#retryMinMs = opts.retryMinMs ?? RETRY_MIN_MS;
    this.#retryMaxMs = opts.retryMaxMs ?? RETRY_MAX_MS;
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
  }

  /** events held (not yet acknowledged by the stream) */
  get held(): number {
    return this.#queue.length - this.#head;
  }

  /** Hold `data` for `subject` and send it after those held before it. Never throws. */
  push(subject: string, data: Uint8Array): void {
    if (this.#bus.closed) return;
    if (this.held >= this.#max) {
      // the oldest not on its way (the head is, while a send waits for its acknowledgement)
      if (this.#sending && this.held > 1) this.#queue.splice(this.#head + 1, 1);
      else this.#head++;
      this.counters.dropped++;
      if (this.counters.dropped === 1 || this.counters.dropped % 1000 === 0) {
        this.#log.warn({ dropped: this.counters.dropped, max: this.#max }, 'decision events outbox full: the oldest events dropped');
      }
    }
    this.#queue.push({ subject, data, id: `${this.#prefix}.${this.#count++}` });
    if (!this.#sending) void this.#send().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'decision events outbox stopped'));
  }

  /** Resolves once every event held now was stored or dropped, or the bus closed; false when `ms` passed first. */
  idle(ms: number): Promise<boolean> {
    if (!this.#sending) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = this.#timer(() => resolve(false), ms);
      this.#idle.push(() => {
        this.#clock.clearTimeout(t);
        resolve(true);
      });
    });
  }

  async #send(): Promise<void> {
    this.#sending = true;
    // a drain of the bus (an actor stopping) waits for what is held, the events of its last decisions among them
    const undrained = this.#bus.beforeDrain(() => {
      this.#draining = true;
      this.#wake?.();
      return this.idle(DRAIN_WAIT_MS);
    });
    let waitMs = this.#retryMinMs;
    while (this.held > 0 && !this.#bus.closed) {
      const e = this.#queue[this.#head]!;
      try {
        // a publication no stream takes would still reach the live subscribers, again at each retry: the stream first
        if (!this.#streamSeen) this.#streamSeen = await this.#streamThere();
        if (!this.#streamSeen) throw new NoStream();
        // one whose acknowledgement did not come may be stored: the stream's last event of its subject says
        if (!(e.sent && (await this.#storedLast(e)))) {
          e.sent = true;
          await this.#bus.jetstream().publish(e.subject, e.data, { msgID: e.id, timeout: this.#ackTimeoutMs });
        }
        this.counters.stored++;
        this.#take(e);
        waitMs = this.#retryMinMs;
      } catch (err) {
        // not acknowledged: whether the stream is there is asked again before the next send
        this.#streamSeen = false;
        // closed; or draining with no stream to take the events (none made yet): nothing to wait for
        if (this.#bus.closed || (this.#draining && (err instanceof NoStream || noResponders(err)))) break;
        if (!retryable(err)) {
          this.counters.dropped++;
          this.#log.warn({ err: (err as Error).message, subject: e.subject }, 'decision event refused by the stream: dropped');
          this.#take(e);
          continue;
        }
        this.counters.retries++;
        this.#log.debug({ err: (err as Error).message, subject: e.subject, held: this.held, waitMs }, 'decision event not stored yet: sent again');
        // a drain cuts the wait short once, and waits at most DRAIN_RETRY_MS from there
        await new Promise<void>((r) => {
          const t = this.#timer(() => ((this.#wake = undefined), r()), this.#draining ? Math.min(waitMs, DRAIN_RETRY_MS) : waitMs);
          this.#wake = () => (this.#clock.clearTimeout(t), (this.#wake = undefined), r());
        });
        waitMs = Math.min(this.#retryMaxMs, waitMs * 2);
      }
    }
    this.#sending = false;
    undrained();
    for (const f of this.#idle.splice(0)) f();
  }

  /** Whether the events stream is there (its info answered); false when not, or unknown (no answer in time). */
  async #streamThere(): Promise<boolean> {
    try {
      const r = await this.#bus.nc.request(eventsStreamInfo(), new Uint8Array(0), { timeout: this.#ackTimeoutMs });
      const info = JSON.parse(new TextDecoder().decode(r.data)) as { error?: { code?: number } };
      return info.error === undefined;
    } catch {
      return false;
    }
  }

  /**
   * Whether the stream's last event on `e`'s subject is `e` (its message id): one sent whose acknowledgement did not
   * come, stored all the same. The outbox sends one event at a time, so a later one of this actor is not there yet.
   */
  async #storedLast(e: Held): Promise<boolean> {
    try {
      const r = await this.#bus.nc.request(eventsStreamGet(), new TextEncoder().encode(JSON.stringify({ last_by_subj: e.subject })), { timeout: this.#ackTimeoutMs });
      const got = JSON.parse(new TextDecoder().decode(r.data)) as { message?: { hdrs?: string } };
      const hdrs = got.message?.hdrs;
      return hdrs !== undefined && Buffer.from(hdrs, 'base64').toString('latin1').includes(`Nats-Msg-Id: ${e.id}\r\n`);
    } catch {
      return false;
    }
  }

  /** a timer that keeps no process alive by itself (the outbox's work ends with its bus) */
  #timer(fn: () => void, ms: number): unknown {
    const t = this.#clock.setTimeout(fn, ms);
    (t as { unref?: () => void })?.unref?.();
    return t;
  }

  /** `e` (the head unless the full outbox dropped it meanwhile) leaves the outbox */
  #take(e: Held): void {
    if (this.#queue[this.#head] === e) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** The events stream is not there (or did not answer): nothing was sent. */
class NoStream extends Error {
  constructor() {
    super('the events stream is not there (not made yet, or no answer to its info)');
  }
}

/** nobody listens on the subject: no stream takes it (nats.js reports it as JetStream not enabled, its cause no responders) */
function noResponders(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: { name?: string } } | undefined;
  return e?.cause?.name === 'NoRespondersError' || /no responders|jetstream is not enabled/i.test(e?.message ?? '');
}

/**
 * Whether a failed publication may be stored when sent again: no responders (no stream yet), no answer in time, the
 * stream without a leader or JetStream unavailable (503), a connection between servers. Not: a payload over the
 * server's limit, a refused subject (no stream would take it again).
 */
export function retryable(err: unknown): boolean {
  const m = ((err as { message?: string })?.message ?? '').toLowerCase();
  return !(m.includes('max_payload') || m.includes('maximum payload') || m.includes('permissions violation'));
}
