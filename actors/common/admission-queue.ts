/**
 * The instance manager's admission queue: requests admitted but not yet started in the engine. Bounded;
 * FIFO by default, earliest-deadline-first (the request's TTFT deadline) after the emergency path's first
 * step (reorder). Pure data structure (time passed in), so the emergency logic around it is testable without
 * NATS. Every queued request carries its TTFT deadline (the instance manager fills in the SLO of a request
 * admitted without classification).
 */
import type { ClassifiedRequest } from './policy.ts';
import { DynError } from '../../protocols/errors.ts';

export interface Queued {
  req: ClassifiedRequest;
  /** local time it entered this instance's queue, ms since epoch. */
  admittedMs: number;
}

export class QueueFullError extends DynError {
  override name = 'QueueFullError';
  constructor(bound: number, retryAfterS: number) {
    super('overloaded', `instance admission queue full (bound ${bound})`, { retryable: true, retryAfterS });
  }
}

export class AdmissionQueue {
  #items: Queued[] = [];
  #ids = new Set<string>();
  /** true after reorder(): new items are inserted by deadline. */
  #edf = false;

  constructor(readonly bound: number, private readonly retryAfterS = 1) {
    if (!Number.isInteger(bound) || bound < 1) throw new RangeError('AdmissionQueue bound must be an integer >= 1');
  }

  get size(): number {
    return this.#items.length;
  }
  get edf(): boolean {
    return this.#edf;
  }
  has(id: string): boolean {
    return this.#ids.has(id);
  }
  ids(): string[] {
    return this.#items.map((q) => q.req.id);
  }
  items(): readonly Queued[] {
    return this.#items;
  }

  /** Enqueue; throws QueueFullError at the bound. `front` puts it first (a request coming back from a refused move). */
  push(q: Queued, front = false): void {
    if (this.#ids.has(q.req.id)) return;
    if (this.#items.length >= this.bound) throw new QueueFullError(this.bound, this.retryAfterS);
    this.#ids.add(q.req.id);
    if (front) this.#items.unshift(q);
    else if (this.#edf) {
      const i = this.#items.findIndex((x) => x.req.ttftDeadlineMs > q.req.ttftDeadlineMs);
      if (i < 0) this.#items.push(q);
      else this.#items.splice(i, 0, q);
    } else this.#items.push(q);
  }

  shift(): Queued | undefined {
    const q = this.#items.shift();
    if (q) this.#ids.delete(q.req.id);
    return q;
  }

  remove(id: string): Queued | undefined {
    if (!this.#ids.has(id)) return undefined;
    const i = this.#items.findIndex((x) => x.req.id === id);
    const [q] = this.#items.splice(i, 1);
    this.#ids.delete(id);
    return q;
  }

  /** Emergency step 1: earliest deadline first from now on. */
  reorder(): void {
    this.#edf = true;
    this.#items.sort((a, b) => a.req.ttftDeadlineMs - b.req.ttftDeadlineMs || a.admittedMs - b.admittedMs);
  }
  /** Back to FIFO once the emergency is over. */
  fifo(): void {
    if (!this.#edf) return;
    this.#edf = false;
    this.#items.sort((a, b) => a.admittedMs - b.admittedMs);
  }

  /** Remove and return the `n` requests that would start last (the ones to move to peers). */
  takeTail(n: number): Queued[] {
    if (n <= 0) return [];
    const out = this.#items.splice(Math.max(0, this.#items.length - n));
    for (const q of out) this.#ids.delete(q.req.id);
    return out;
  }

  /** Remove and return the requests that waited longer than `maxWaitMs`, or whose give-up time passed. */
  takeExpired(nowMs: number, maxWaitMs: number): Queued[] {
    const keep: Queued[] = [];
    const out: Queued[] = [];
    for (const q of this.#items) (nowMs - q.admittedMs > maxWaitMs || nowMs > q.req.giveUpAtMs ? out : keep).push(q);
    this.#items = keep;
    for (const q of out) this.#ids.delete(q.req.id);
    return out;
  }

  /** Longest wait in the queue now, ms (0 when empty). */
  oldestWaitMs(nowMs: number): number {
    let m = 0;
    for (const q of this.#items) m = Math.max(m, nowMs - q.admittedMs);
    return m;
  }

  drainAll(): Queued[] {
    const out = this.#items;
    this.#items = [];
    this.#ids.clear();
    return out;
  }
}
