/**
 * A bounded mailbox: at most `capacity` items wait, at most `concurrency` run at once. `offer` throws
 * MailboxFullError when full (backpressure to the sender, never unbounded memory).
 */
import { MailboxFullError } from './errors.ts';

export interface MailboxOptions<T> {
  /** max items waiting (not counting those running). >= 0. */
  capacity: number;
  /** max items handled at once. Default 1. */
  concurrency?: number;
  /** a handler that returns no promise is done when it returns. */
  handler: (item: T) => Promise<void> | void;
  /** called with a handler's rejection; the mailbox keeps going. */
  onError?: (err: unknown, item: T) => void;
  /** names the mailbox in the overflow error. */
  name?: string;
}

export class Mailbox<T> {
  readonly capacity: number;
  readonly concurrency: number;
  #queue: T[] = [];
  #head = 0;
  #running = 0;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  #opts: MailboxOptions<T>;
  /** items refused because the mailbox was full. */
  overflows = 0;
  /** items handled (ok or failed). */
  handled = 0;

  constructor(opts: MailboxOptions<T>) {
    if (!Number.isInteger(opts.capacity) || opts.capacity < 0) throw new RangeError('Mailbox capacity must be an integer >= 0');
    const c = opts.concurrency ?? 1;
    if (!Number.isInteger(c) || c < 1) throw new RangeError('Mailbox concurrency must be an integer >= 1');
    this.capacity = opts.capacity;
    this.concurrency = c;
    this.#opts = opts;
  }

  get size(): number {
    return this.#queue.length - this.#head;
  }
  get inFlight(): number {
    return this.#running;
  }
  get closed(): boolean {
    return this.#closed;
  }

  /** Enqueue (or start at once when a slot is free). Throws MailboxFullError when full or closed. */
  offer(item: T): void {
    if (this.#closed) throw new MailboxFullError(0, `${this.#opts.name ?? 'mailbox'} (closed)`);
    if (this.#running < this.concurrency && this.size === 0) {
      this.#run(item);
      return;
    }
    if (this.size >= this.capacity) {
      this.overflows++;
      throw new MailboxFullError(this.capacity, this.#opts.name);
    }
    this.#queue.push(item);
  }

  #run(item: T): void {
    this.#running++;
    // the handler runs now; a synchronous throw becomes a rejection with the same value. Its end is taken one
    // microtask after it settles (one promise and reaction per item, not a chain of four)
    let r: Promise<void> | void;
    try {
      r = this.#opts.handler(item);
    } catch (err) {
      queueMicrotask(() => this.#failed(err, item));
      return;
    }
    Promise.resolve(r).then(this.#ended, (err: unknown) => this.#failed(err, item));
  }

  #failed(err: unknown, item: T): void {
    try {
      this.#opts.onError?.(err, item);
    } finally {
      this.#ended();
    }
  }

  readonly #ended = (): void => {
    this.#running--;
    this.handled++;
    this.#pump();
  };

  #pump(): void {
    while (this.#running < this.concurrency && this.size > 0) {
      const next = this.#queue[this.#head] as T;
      this.#queue[this.#head] = undefined as T;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#run(next);
    }
    if (this.#running === 0 && this.size === 0) {
      const w = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves when nothing waits and nothing runs. */
  idle(): Promise<void> {
    if (this.#running === 0 && this.size === 0) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /** Refuse new items; items already queued still run. Returns the items dropped when `discard` is set. */
  close(discard = false): T[] {
    this.#closed = true;
    if (!discard) return [];
    const dropped = this.#queue.slice(this.#head);
    this.#queue = [];
    this.#head = 0;
    this.#pump();
    return dropped;
  }
}
