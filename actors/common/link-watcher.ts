/**
 * A shell's watch of its own link to the bus (src/policy/link-watch.ts): the bus's disconnect/reconnect and its lease's
 * round trips answered by a majority ('answered') feed the pure LinkWatch; `since(now)` is from when a peer's silence
 * counts (silenceFromMs).
 */
import type { Bus } from '../../src/runtime/bus.ts';
import type { LeaderLease } from '../../src/runtime/lease.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import { initialLinkWatch, linkEvent, linkGapMs, linkProof, silenceFromMs } from '../../src/policy/link-watch.ts';

export class LinkWatcher {
  #w = initialLinkWatch();
  readonly #gapMs: number;
  readonly #onStatus = (st: { type: string }): void => {
    if (st.type === 'disconnect' || st.type === 'reconnect') this.#w = linkEvent(this.#w, st.type === 'reconnect', this.clock.now());
  };

  constructor(private readonly bus: Bus, lease: LeaderLease, deadAfterMs: number, private readonly clock: Clock) {
    this.#gapMs = linkGapMs(deadAfterMs);
    bus.on('status', this.#onStatus);
    lease.on('answered', (a: { sentMs: number }) => void (this.#w = linkProof(this.#w, a.sentMs, this.#gapMs)));
  }

  /** From when a peer's silence counts at `now`. */
  since(now: number): number {
    return silenceFromMs(this.#w, now, this.#gapMs);
  }

  stop(): void {
    this.bus.off('status', this.#onStatus);
  }
}
