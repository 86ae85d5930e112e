/**
 * Replies a responder settles while its NATS connection is down, kept for the reconnect. nats.js discards what is
 * published while disconnected (its outbound buffer is reset at each connection attempt), so an answer made during
 * a reconnect never left the process and its caller waited out its deadline. Bounded in time and in number.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';

/** How long a held reply is still sent at the reconnect, ms (longer than a caller's deadline for one attempt). */
export const REPLY_HOLD_MS = 15_000;
/** Most replies held at once; beyond it the oldest is dropped. */
export const REPLY_HOLD_CAPACITY = 1024;

export interface ReplyHoldCounters {
  /** replies settled while disconnected, kept for the reconnect. */
  repliesHeld: number;
  /** held replies given up: older than REPLY_HOLD_MS at the reconnect, beyond REPLY_HOLD_CAPACITY, or the bus closed. */
  repliesDropped: number;
}

/**
 * Whether a publication on `nc` goes out now: nats.js's own flag (set as a reconnect succeeds, before its status
 * event), else `fallback` (the status events' view).
 */
export function linkUp(nc: NatsConnection, fallback: boolean): boolean {
  const connected = (nc as unknown as { protocol?: { connected?: unknown } }).protocol?.connected;
  return typeof connected === 'boolean' ? connected : fallback;
}

export class ReplyHold {
  #held: { m: Msg; bytes: Uint8Array; until: number }[] = [];

  constructor(
    private readonly counters: ReplyHoldCounters,
    private readonly log: Logger,
    /** whether the connection is up now (linkUp). */
    private readonly up: () => boolean,
    private readonly holdMs = REPLY_HOLD_MS,
    private readonly capacity = REPLY_HOLD_CAPACITY,
  ) {}

  /** Answer `m` now, or keep the answer for the reconnect while the connection is down. */
  reply(m: Msg, bytes: Uint8Array): void {
    if (!m.reply) return;
    if (!this.up()) return this.#hold(m, bytes);
    respond(m, bytes, this.log);
  }

  #hold(m: Msg, bytes: Uint8Array): void {
    this.counters.repliesHeld++;
    if (this.#held.length >= this.capacity) {
      this.#held.shift();
      this.counters.repliesDropped++;
    }
    this.#held.push({ m, bytes, until: Date.now() + this.holdMs });
  }

  /** Send what is held and not too old (at a reconnect; down again already: it waits for the next). */
  send(): void {
    if (!this.#held.length || !this.up()) return;
    const held = this.#held;
    this.#held = [];
    const now = Date.now();
    const late = held.filter((h) => h.until < now).length;
    this.counters.repliesDropped += late;
    this.log.info({ replies: held.length - late, late }, 'replies held while disconnected sent');
    for (const h of held) if (h.until >= now) respond(h.m, h.bytes, this.log);
  }

  /** The bus closes: nothing held will be sent. */
  drop(): void {
    this.counters.repliesDropped += this.#held.length;
    this.#held = [];
  }
}

function respond(m: Msg, bytes: Uint8Array, log: Logger): void {
  try {
    m.respond(bytes);
  } catch (err) {
    // the connection closed
    log.debug({ subject: m.subject, err: (err as Error).message }, 'reply failed');
  }
}
