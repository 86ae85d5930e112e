/**
 * Cancellation without an EventTarget. The gateway cancels each request (the client went away, its hold limit
 * passed), each of its legs (the instance ended the leg) and each engine call (its deadline); an AbortController is an
 * EventTarget whose construction and listener bookkeeping were a few percent of the gateway's CPU per short request
 * (docs/DATAPATH.md). `LeanAbort` is the same contract for the part
 * the gateway, the bus's requests, the clock's sleeps and the engine client read (`AbortLike`: `aborted`, `reason`,
 * listeners of 'abort'), and an AbortSignal is an `AbortLike` too, so callers may pass either.
 */

/** What a cancellable operation reads of its cancellation: an AbortSignal, or a LeanAbort. */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * An AbortController and its signal in one plain object: `abort(reason)` sets `aborted` and `reason` (an
 * AbortError DOMException when none is given, as AbortController's) and calls the listeners once, in the order
 * they were added, synchronously; a listener added after the abort is never called (as AbortSignal's). A
 * listener must not throw (the engine client's do not): the ones after it would not run.
 */
export class LeanAbort implements AbortLike {
  aborted = false;
  reason: unknown = undefined;
  #listeners: (() => void)[] | undefined;

  /** itself: the signal of this controller (so code written for an AbortController reads the same). */
  get signal(): this {
    return this;
  }

  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (this.aborted) return;
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.#listeners;
    if (!l) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    const l = this.#listeners;
    this.#listeners = undefined;
    if (!l) return;
    for (const fn of l) fn();
  }
}
