/**
 * The relay data path's order (the instance publishes a leg's tokens on its stream subject, numbered 0, 1, ... per
 * leg; docs/DATAPATH.md "Request migration"): which chunks reach the reader (LegOrder), the gateway's own end of a leg
 * at a missing chunk (relayGapChunk), which ends mean the leg is lost (legLost), and what a relayed chunk counts as
 * sent (relayedOut).
 */
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { DEADLINE_ERROR, pastDeadline, sentEvent, type MigrationText, type StreamState } from './legs.ts';

/**
 * Which chunks of a leg's stream subject go to its reader, in order. A leg belongs to the instance of its first grant or
 * token (`owner`): a chunk another instance names is a second admission's copy of the same leg id (a pool leader that
 * died between an admit and its stored entry, an instance declared dead that still serves), and is ignored ('other'),
 * terminal or not, so two generations never mix and another copy's end never ends the leg. The pool leader's end of a
 * dead instance's leg names that instance. A request moved between instances may repeat a seq: the first copy wins. A terminal chunk (done or error) ends the stream whoever sends it ('foreign': the pool
 * leader ending a dead instance's stream numbers it from that instance's last status, a seq the gateway may already
 * have). Relayed (no grant came: the instance publishes the tokens, numbered 0, 1, ... per leg), a chunk past the one
 * expected next is a 'gap' (NATS dropped one, a reconnect, a slow consumer, a sender numbering its end ahead of the
 * stream): the leg ends at `gapAt` and nothing after it is taken.
 */
export class LegOrder {
  readonly #seen = new Set<number>();
  #next = 0;
  #direct = false;
  /** the instance the leg belongs to: the one named by its first grant or token chunk. */
  owner?: string;
  /** the seq of the relayed chunk that never came, once a gap was seen. */
  gapAt?: number;

  /**
   * Whether `c` is the leg's own (a chunk that names no instance, or its owner's; the first grant or token names the
   * owner), else another instance's copy of the leg, to be ignored. A terminal chunk names no owner: the pool leader
   * ends a leg that never started in its dead instance's name.
   */
  own(c: TokenChunk): boolean {
    const i = c.instance;
    if (i === undefined) return true;
    if (this.owner !== undefined) return i === this.owner;
    if (c.grant || (!c.done && !c.error)) this.owner = i;
    return true;
  }

  take(c: TokenChunk): 'take' | 'foreign' | 'drop' | 'gap' | 'other' {
    if (!this.own(c)) return 'other';
    if (this.gapAt !== undefined) return 'drop';
    if (c.grant) this.#direct = true;
    let took: 'take' | 'foreign' = 'take';
    if (this.#seen.has(c.seq)) {
      if (!(c.done || c.error)) return 'drop';
      took = 'foreign';
    } else if (!this.#direct && c.seq > this.#next) {
      this.gapAt = this.#next;
      return 'gap';
    }
    this.#seen.add(c.seq);
    if (!c.grant) this.#next = Math.max(this.#next, c.seq + 1);
    return took;
  }
}

/**
 * The gateway's own end of relayed leg `id` at the chunk `seq` that never came (a later one did: NATS dropped it, a
 * reconnect, a slow consumer, another sender's seq ahead of the stream): retryable, so the stream continues as a new leg
 * from the last chunk before the gap (legs.ts continuation), and no token of the client's stream is missing or repeated.
 */
export function relayGapChunk(id: string, seq: number): TokenChunk {
  return {
    v: 1, id, seq, text: '', tokens: 0, done: true, finishReason: 'error',
    error: { code: 'unavailable', message: `chunk ${seq} of the relayed stream never arrived; retry`, retryable: true, retryAfterS: 1 },
  };
}

/**
 * Whether a relayed leg's chunk says the leg is lost, not refused: a retryable end, with no token, of the serving side
 * gone (`unavailable`: its instance dead, stopped or draining, a chunk missing; `engine_crashed`). Such a leg continues
 * on a new one; a refusal of the emergency ladder (`rejected`, `overloaded`) goes to the client, whose retry is told when.
 */
export function legLost(c: TokenChunk): boolean {
  return c.error?.retryable === true && c.tokens === 0 && (c.error.code === 'unavailable' || c.error.code === 'engine_crashed');
}

/**
 * A chunk a relayed leg sent, as the client's stream numbers it (`st.out`). What it carries counts as sent (sentEvent:
 * the next leg's continuation starts after it; a tool call or reasoning makes the stream opaque), and a last leg's
 * usage counts the whole stream: the client's prompt, every leg's completion tokens. A retryable error at `now` past
 * the request's give-up time is the request's timeout (DEADLINE_ERROR, not retryable), as a direct leg's (legFailure).
 */
export function relayedOut(c: TokenChunk, req: InferenceRequest, st: StreamState, text: MigrationText, now: number): TokenChunk {
  sentEvent(st, c, text);
  const usage = c.usage && st.legs > 0 ? { ...c.usage, promptTokens: req.inputTokens, completionTokens: st.sent } : c.usage;
  const error = c.error?.retryable && pastDeadline(req, now) ? { error: { ...DEADLINE_ERROR } } : {};
  return { ...c, seq: st.out++, ...(usage ? { usage } : {}), ...error };
}
