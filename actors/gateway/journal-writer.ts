/**
 * One resumable stream's journal writer (docs/PROTOCOL.md "Resumable streams"; the journal's shape and its reading
 * are resume.ts). Every entry is appended with JetStream's acknowledgement (the PubAck of the stream that holds it),
 * one entry in flight per stream: entries made while one waits for its ack queue behind it, and text events made
 * meanwhile join the queued entry (one entry for all of them), so a stream sends one append per ack round trip at
 * most, whatever its token rate. An append that is refused or not answered within `attemptMs` is sent again, after
 * a pause that doubles from 100 ms to 1 s (an entry applied twice folds as once: foldJournal), before any later
 * entry, until the journal holds it, for the journal's retention (RETRY_FOR_MS) at most.
 *
 * The head (the request) must be held before the stream's first event: `head()` resolves true once it is, false
 * when it is not within `headMs` (the stream is then served without resumption, and nothing is written). The
 * client's events wait for the journal through `held()`/`onRelease()` (SseWriter's gate): while an entry has waited
 * `lagMs` or more for its ack (0: any entry not yet held), the events written to the client wait, so a client holds
 * no event that the journal may lack, and a gateway that dies leaves the journal at or past its client's last event.
 * An entry not held within `giveUpMs` stops the wait (`behind`): the client is sent its events while the appends go
 * on, and once the journal holds every entry the client's events wait for it again (the stream is resumable again).
 */
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { MAX_RESUME_EVENTS, type ResumeEntry } from '../../protocols/journal.ts';

export type JournalHead = NonNullable<ResumeEntry['head']>;
export type JournalLeg = NonNullable<ResumeEntry['leg']>;
export type JournalEnd = NonNullable<ResumeEntry['end']>;

/** Appends one entry: resolves once the journal holds it, rejects when it may not (refused, no answer within `timeoutMs`, the connection closed). */
export type JournalAppend = (e: ResumeEntry, timeoutMs: number) => Promise<void>;

/** A writer's deadlines, ms. */
export interface JournalTiming {
  /** the head must be held within this from its first send, or the stream is served without resumption. */
  headMs: number;
  /** one append's deadline before it is sent again. */
  attemptMs: number;
  /** events go to the client only while no entry has waited this long for its ack (0: none waits). */
  lagMs: number;
  /** an entry other than the head not held within this from its first send: the client's events stop waiting until the journal holds every entry. */
  giveUpMs: number;
}

/**
 * The defaults (gateway config `journal`): a JetStream stream whose leader died elects another within its election
 * timeout (nats-server: 4-9 s), so a head or an entry is waited for 10 s; an append is answered in ~1 ms when the
 * stream has a leader, so an attempt gets 1 s.
 */
export const DEFAULT_JOURNAL_TIMING: JournalTiming = { headMs: 10_000, attemptMs: 1000, lagMs: 0, giveUpMs: 10_000 };

/** pause before an append is sent again (after a refusal or a missed deadline), doubling up to RETRY_MAX_MS, ms. */
const RETRY_MS = 100;
const RETRY_MAX_MS = 1000;
/** an entry is sent again for this long at most (the journal's retention: STREAM_RETENTION.resume.maxAgeS), ms. */
const RETRY_FOR_MS = 600_000;

interface Queued {
  e: ResumeEntry;
  /** when it was queued (clock ms): its wait for the journal. */
  at: number;
  /** when it was first sent (clock ms); -1: not yet. */
  sent: number;
}

export class JournalWriter {
  #from = -1;
  #held: { text: string; tokens: number }[] = [];
  #bytes = 0;
  #stopped = false;
  /** the journal did not hold the head in time, or an entry for RETRY_FOR_MS: nothing is written or waited for any more. */
  #lost = false;
  /** an entry waited past giveUpMs: the client's events do not wait until the queue is empty again. */
  #behind = false;
  /** refusals in a row (the retry pause). */
  #failures = 0;
  #queue: Queued[] = [];
  #sending = false;
  #release: (() => void)[] = [];
  #headDone?: (held: boolean) => void;

  constructor(
    private readonly append: JournalAppend,
    readonly id: string,
    readonly gen: number,
    private readonly maxBytes: number,
    private readonly timing: JournalTiming = DEFAULT_JOURNAL_TIMING,
    private readonly clock: Clock = systemClock,
  ) {}

  get stopped(): boolean {
    return this.#stopped;
  }

  /** the journal did not hold the head within headMs (or an entry for RETRY_FOR_MS): the stream is not resumable. */
  get lost(): boolean {
    return this.#lost;
  }

  /** an entry waited past giveUpMs and the queue has not been emptied since: the client may hold events the journal lacks. */
  get behind(): boolean {
    return this.#behind;
  }

  /** Queues the head (first): resolves true once the journal holds it, false when it did not within headMs (nothing more is written). */
  head(head: JournalHead): Promise<boolean> {
    const done = new Promise<boolean>((resolve) => (this.#headDone = resolve));
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, head });
    return done;
  }

  /** text event `index` (held until flush). */
  text(index: number, text: string, tokens: number): void {
    if (this.#stopped) return;
    this.#bytes += text.length;
    if (this.#bytes > this.maxBytes) return this.stop(`longer than the journal's cap (${this.maxBytes} characters)`);
    if (this.#held.length === 0) this.#from = index;
    this.#held.push({ text, tokens });
    if (this.#held.length >= MAX_RESUME_EVENTS) this.flush();
  }

  /** queues the held events as one entry (joined to a queued entry of the events just before them). */
  flush(): void {
    if (this.#held.length === 0 || this.#stopped) return;
    const events = this.#held;
    this.#held = [];
    const last = this.#queue.at(-1);
    const e = last && last.sent < 0 ? last.e : undefined;
    if (e?.events && e.from !== undefined && e.from + e.events.length === this.#from && e.events.length + events.length <= MAX_RESUME_EVENTS) {
      for (const x of events) e.events.push(x);
      return;
    }
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, from: this.#from, events });
  }

  leg(leg: JournalLeg): void {
    if (this.#stopped) return;
    this.flush();
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, leg });
  }

  end(end: JournalEnd): void {
    if (this.#stopped) return;
    this.flush();
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, end });
    this.#stopped = true;
  }

  /** the stream is not resumable from here on (why). */
  stop(why: string): void {
    if (this.#stopped) return;
    this.#held = [];
    this.#stopped = true;
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, stop: why.slice(0, 256) });
  }

  /** whether the client's events must wait: an entry has waited lagMs or more for the journal. */
  held(): boolean {
    const q = this.#queue[0];
    return q !== undefined && !this.#behind && (this.timing.lagMs === 0 || this.clock.now() - q.at >= this.timing.lagMs);
  }

  /** `fn` runs once, when the journal holds the next entry (or the writer gave up on it). */
  onRelease(fn: () => void): void {
    this.#release.push(fn);
  }

  #enqueue(e: ResumeEntry): void {
    if (this.#lost) return;
    this.#queue.push({ e, at: this.clock.now(), sent: -1 });
    this.#pump();
  }

  #pump(): void {
    const q = this.#queue[0];
    if (this.#sending || !q || this.#lost) return;
    const now = this.clock.now();
    if (q.sent < 0) q.sent = now;
    const waited = now - q.sent;
    if (q.e.head ? waited >= this.timing.headMs : waited >= RETRY_FOR_MS) return this.#giveUp();
    if (!q.e.head && waited >= this.timing.giveUpMs && !this.#behind) {
      // the client stops waiting; the appends go on
      this.#behind = true;
      this.#released();
    }
    const left = q.e.head ? this.timing.headMs - waited : this.timing.attemptMs;
    this.#sending = true;
    this.append(q.e, Math.min(this.timing.attemptMs, left)).then(
      () => {
        this.#sending = false;
        this.#failures = 0;
        this.#queue.shift();
        if (q.e.head) this.#headDone?.(true);
        if (this.#queue.length === 0) this.#behind = false;
        this.#released();
        this.#pump();
      },
      () => {
        this.#sending = false;
        // again after a pause (a leaderless stream refuses at once)
        this.clock.setTimeout(() => this.#pump(), Math.min(RETRY_MAX_MS, RETRY_MS * 2 ** this.#failures++));
      },
    );
  }

  #giveUp(): void {
    this.#lost = true;
    this.#stopped = true;
    this.#held = [];
    const head = this.#queue[0]?.e.head !== undefined;
    this.#queue = [];
    if (head) this.#headDone?.(false);
    this.#released();
  }

  #released(): void {
    const fns = this.#release;
    this.#release = [];
    for (const fn of fns) fn();
  }
}
