/**
 * The gateway's buffer of one leg's token chunks (actors/gateway/nats-backend.ts): bounded in chunks and, with a flow
 * (relay-flow.ts), in bytes; one reader, silence-timed.
 */
import { DynError } from '../../protocols/errors.ts';
import type { TokenChunk } from '../../protocols/messages.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { heldBytesOf } from '../../src/policy/relay-flow.ts';

/** What watches a queue's chunks (relay-flow.ts RelayFlow): each pushed and taken with its bytes (heldBytesOf). */
export interface QueueFlow {
  /** `c` arrives, the queue then holding `held` bytes: 'overflow' refuses it and ends the queue. */
  pushed(c: TokenChunk, bytes: number, held: number): 'overflow' | undefined;
  taken(bytes: number): void;
  /** the queue is over (failed, or its leg left): no more reports. */
  close(): void;
}

/** A bounded single-consumer queue of chunks with an end/failure. */
export class ChunkQueue {
  private readonly items: TokenChunk[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  failure: DynError | null = null;
  /** the chunks' memory held (heldBytesOf), with a flow. */
  bytes = 0;
  /** `clock`: the silence timeouts' time and timers (src/runtime/clock.ts); `flow`: told of the bytes held. */
  constructor(private readonly capacity: number, private readonly clock: Clock = systemClock, private readonly flow?: QueueFlow) {}
  /** the next chunk already here, without waiting. */
  take(): TokenChunk | undefined {
    const c = this.items.shift();
    if (c && this.flow) {
      const b = heldBytesOf(c);
      this.bytes -= b;
      this.flow.taken(b);
    }
    return c;
  }
  push(c: TokenChunk): void {
    if (this.ended) return;
    if (this.items.length >= this.capacity) {
      this.fail(new DynError('mailbox_full', `token stream buffer full (${this.capacity} chunks)`, { retryable: true, retryAfterS: 1 }));
      return;
    }
    if (this.flow) {
      const b = heldBytesOf(c);
      if (this.flow.pushed(c, b, this.bytes + b) === 'overflow') {
        this.fail(new DynError('mailbox_full', `the stream's client takes its tokens slower than they came: ${this.bytes + b} bytes held at the gateway, past its bound`, { retryable: true, retryAfterS: 1 }));
        return;
      }
      this.bytes += b;
    }
    this.items.push(c);
    this.wake();
  }
  fail(e: DynError): void {
    if (this.ended) return;
    this.failure = e;
    this.ended = true;
    this.flow?.close();
    this.wake();
  }
  /** the leg left (its subscription ended): nobody reads what it holds; its flow reports no more. */
  close(): void {
    this.flow?.close();
  }
  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
  /** Next chunk, null at the end; rejects with the failure, or a timeout after idleMs of silence. */
  async next(idleMs: number): Promise<TokenChunk | null> {
    const c = await this.nextWatched(idleMs, idleMs, () => false);
    return c === 'gone' ? null : c;
  }

  /**
   * As next(), and every `everyMs` of silence asks `gone()` whether the sender is known dead: 'gone' when it
   * says so (the caller ends or moves the stream instead of waiting for the whole silence timeout).
   */
  async nextWatched(idleMs: number, everyMs: number, gone: () => boolean): Promise<TokenChunk | null | 'gone'> {
    const until = this.clock.now() + idleMs;
    for (;;) {
      if (this.items.length) return this.take()!;
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      const left = until - this.clock.now();
      if (left <= 0) {
        throw new DynError('timeout', `no token for ${idleMs} ms: the instance serving this request stopped answering`, { retryable: true, retryAfterS: 1 });
      }
      let t: unknown;
      const timedOut = await new Promise<boolean>((resolve) => {
        this.waiter = () => resolve(false);
        t = this.clock.setTimeout(() => resolve(true), Math.min(left, everyMs));
      });
      this.clock.clearTimeout(t);
      if (timedOut && this.items.length === 0 && !this.ended && gone()) return 'gone';
    }
  }
}
