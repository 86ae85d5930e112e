/**
 * The latest payload of each subject a subscription hears, undecoded, with its arrival time (Bus.subscribeLatest):
 * a subscriber that needs only the last word of each sender, and that not at every message (a standby's view of
 * the instances' statuses, read when it takes over or is asked), spends no decode, validation or handler on the
 * words it never reads. Bounded by its number of subjects.
 */

export interface LatestOpts<T> {
  /** the arrival time of a payload (the owner's clock), ms. */
  now: () => number;
  /** subjects kept at most: a payload on one more is refused as a full mailbox would (mailboxOverflows). */
  maxSubjects: number;
  /** as SubscribeOpts.expectSubject, checked when the payload is decoded (take). */
  expectSubject?: (msg: T) => string;
}

/** Bus.subscribeLatest's handle. */
export interface LatestHandle<T> {
  readonly subject: string;
  /** payloads kept since the last take, undecoded. */
  readonly pending: number;
  /**
   * The payloads kept since the last take, decoded, the oldest arrival first, each with its arrival time; one that
   * does not decode or claims another identity than its subject is counted (protocolErrors, identityRejections) and
   * left out. Nothing is kept after it.
   */
  take(): { msg: T; subject: string; atMs: number }[];
  unsubscribe(): void;
  drain(): Promise<void>;
}

export class LatestPayloads<T> {
  #kept = new Map<string, { data: Uint8Array; atMs: number }>();

  constructor(readonly opts: LatestOpts<T>, readonly overflow: (subject: string) => void) {}

  offer(subject: string, data: Uint8Array): void {
    if (this.#kept.size >= this.opts.maxSubjects && !this.#kept.has(subject)) return this.overflow(subject);
    this.#kept.delete(subject); // the map's order: the arrival order of each subject's latest
    // a copy: the payload is a view of the socket's chunk, which it would keep whole
    this.#kept.set(subject, { data: data.slice(), atMs: this.opts.now() });
  }

  clear(): void {
    this.#kept = new Map();
  }

  /** The handle over these payloads; `decode`: a payload's message, or undefined where it was refused (counted). */
  handle(subject: string, sub: { unsubscribe(): void; drain(): Promise<void> }, decode: (data: Uint8Array, subject: string) => T | undefined): LatestHandle<T> {
    const take = () => {
      const out: { msg: T; subject: string; atMs: number }[] = [];
      const taken = this.#kept;
      this.#kept = new Map();
      for (const [s, { data, atMs }] of taken) {
        const msg = decode(data, s);
        if (msg !== undefined) out.push({ msg, subject: s, atMs });
      }
      return out;
    };
    const size = () => this.#kept.size;
    return {
      subject, take, unsubscribe: () => sub.unsubscribe(), drain: () => sub.drain(),
      get pending() {
        return size();
      },
    };
  }
}
