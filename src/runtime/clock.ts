/**
 * An injectable clock. Everything time-driven in the runtime (heartbeats, liveness, leases, backoff,
 * drain deadlines) reads time and schedules timers through a Clock, so tests drive it with a ManualClock
 * and never sleep.
 */
import { TimeoutError } from './errors.ts';
import type { AbortLike } from './abort.ts';

export interface Clock {
  /** ms since epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(h: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(h: unknown): void;
  /** Resolves after `ms`; rejects with the signal's reason when aborted first. */
  sleep(ms: number, signal?: AbortLike): Promise<void>;
}

/** The reason an AbortSignal carries: an Error (a DOMException 'AbortError' unless abort() was given another value, then kept as the cause). */
function abortReason(signal: AbortLike | undefined): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new Error('aborted', { cause: r });
}

function sleepWith(clock: Clock, ms: number, signal?: AbortLike): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clock.clearTimeout(h);
      reject(abortReason(signal));
    };
    const h = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Wall-clock time and Node timers. Timers are unref'd so a pending timer never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    t.unref?.();
    return t;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  sleep(ms, signal) {
    return sleepWith(systemClock, ms, signal);
  },
};

interface Timer {
  id: number;
  at: number;
  fn: () => void;
  /** repeat period for intervals; undefined for one-shot timers. */
  every?: number;
}

/**
 * A clock that moves only when told. `advance(ms)` fires every timer due within the window in time order
 * (ties in creation order), setting `now()` to each timer's due time as it fires, like real time would.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, Timer>();

  constructor(startMs = 1_700_000_000_000) {
    this.#now = startMs;
  }
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  setInterval(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    const every = Math.max(1, ms);
    this.#timers.set(id, { id, at: this.#now + every, fn, every });
    return id;
  }
  clearInterval(h: unknown): void {
    this.#timers.delete(h as number);
  }
  sleep(ms: number, signal?: AbortLike): Promise<void> {
    return sleepWith(this, ms, signal);
  }
  /** Number of pending timers (for tests that check nothing leaks). */
  get pending(): number {
    return this.#timers.size;
  }
  /** Move time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    if (ms < 0) throw new RangeError('ManualClock.advance: ms must be >= 0');
    const end = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.#timers.values()) {
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      }
      if (!next) break;
      this.#now = Math.max(this.#now, next.at);
      if (next.every !== undefined) next.at += next.every;
      else this.#timers.delete(next.id);
      next.fn();
    }
    this.#now = end;
  }
  /** Advance and let promise continuations (microtasks) run between steps. */
  async advanceAsync(ms: number, stepMs = ms): Promise<void> {
    let left = ms;
    while (left > 0) {
      const step = Math.min(stepMs, left);
      this.advance(step);
      left -= step;
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
  }
}

/**
 * `p`, or a TimeoutError (retryable) after `ms` on `clock`: a deadline for a call that has none of its own, or
 * whose own is too long for the caller (a JetStream call waits 5 s by default). The call itself is left to
 * finish or fail on its own; its late result is dropped.
 */
export async function within<T>(p: Promise<T>, ms: number, what: string, clock: Clock = systemClock): Promise<T> {
  let h: unknown;
  const late = new Promise<never>((_, reject) => {
    h = clock.setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clock.clearTimeout(h);
  }
}
