/**
 * One resumable stream's journal writer (docs/PROTOCOL.md "Resumable streams"; the journal's shape and its reading
 * are resume.ts). Every entry is appended with JetStream's acknowledgement (the PubAck of the stream that holds it),
 * one entry in flight per stream: entries made while one waits for its ack queue behind it, and text events made
 * meanwhile join the queued entry (one entry for all of them), so a stream sends one append per ack round trip at
 * most, whatever its token rate. An append that is refused or not answered within `attemptMs` is sent again, after
 * a pause that doubles from 100 ms to 1 s (an entry applied twice folds as once: foldJournal), before any later
 * entry, until the journal holds it, for the journal's retention (RETRY_FOR_MS) at most.
 *
 * Every wait of the client for the journal is bounded by a named cap and, when `sloShare` is set, by that share of the
 * request's SLO:
 * - the head (the request) must be held before the stream's first event: `head()` resolves true once it is, false
 *   when it is not within headWaitMs = headMs, or min(headMs, sloShare x the request's TTFT SLO) (the stream is then served
 *   without resumption, and nothing is written);
 * - the client's events wait for the journal through `held()`/`onRelease()` (SseWriter's gate): while an entry has
 *   waited `lagMs` or more for its ack (0: any entry not yet held), the events written to the client wait, so a
 *   client holds no event that the journal may lack, and a gateway that dies leaves the journal at or past its
 *   client's last event. An entry not held within writeWaitMs = giveUpMs, or min(giveUpMs, sloShare x the request's TBT SLO),
 *   of its making opens an unresumable range (`unresumable`: the client's events stop waiting, SseWriter sends them
 *   without event ids and resets the client's last event id, and an open `unresumable` marker is appended right
 *   after the entry in flight, so that a resume from an earlier id is refused rather than answered with events the
 *   client has). The appends go on meanwhile, so the journal still gets every event;
 * - `regain(index)` (SseWriter, before it writes event `index` on): once the journal holds every event before `index`
 *   (those the client was sent), the range is closed at `index` (a closing marker, queued), and the stream is
 *   resumable again: event `index` and the later ones carry ids and wait for the journal as before, so a resume from
 *   an id at or past `index` gets exactly what follows it, and one from before `index` is refused (410).
 * `onTimeout` is told of each bound passed (the gateway counts and logs them).
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
  /** an entry other than the head not held within this from its making: an unresumable range opens and the client's events stop waiting. */
  giveUpMs: number;
  /** the share of the request's SLO a wait may take: the head's of its TTFT SLO, an entry's of its TBT SLO (0, the default: no SLO bound, the caps alone). */
  sloShare?: number;
}

/** A request's SLO (InferenceRequest.slo: p99 TTFT and TBT), ms. */
export interface JournalSlo { ttftMs: number; tbtMs: number }

/** The bound a wait passed: 'head' (the stream is served without resumption) or 'write' (its resumability ends). */
export type JournalTimeout = (wait: 'head' | 'write', boundMs: number, id: string) => void;

/**
 * The defaults (gateway config `journal`): a JetStream stream whose leader died elects another within its election
 * timeout (nats-server: 4-9 s), longer than any SLO. A wait bounded by the SLO (`sloShare`) keeps a stream's TTFT and
 * TBT through an election but serves the stream without resumption meanwhile, so a gateway dying then breaks its
 * clients' streams: in a quiet-host run of 1,000 kills with `sloShare` 0.5 (BENCHMARKS.md, chaos), 3 streams served
 * without resumption after their 125-ms head bound broke when their gateway was killed 190 ms after they were sent.
 * So by default a resumable stream waits for the journal (10 s caps: the election's length stalls the streams of that
 * moment, and none loses its resumability); `sloShare` trades that for latency. An append is answered in ~1 ms
 * (p99 3-18 ms, docs/DATAPATH.md) when the stream has a leader, so an attempt gets 1 s.
 */
export const DEFAULT_JOURNAL_TIMING: Required<JournalTiming> = { headMs: 10_000, attemptMs: 1000, lagMs: 0, giveUpMs: 10_000, sloShare: 0 };

/** The head's and a write's wait bounds of a stream with SLO `slo` (none, or sloShare 0: the caps), ms. */
export function journalBounds(t: JournalTiming, slo?: JournalSlo): { headWaitMs: number; writeWaitMs: number } {
  const share = t.sloShare ?? DEFAULT_JOURNAL_TIMING.sloShare;
  const bySlo = slo !== undefined && share > 0;
  return {
    headWaitMs: bySlo ? Math.min(t.headMs, share * slo.ttftMs) : t.headMs,
    writeWaitMs: bySlo ? Math.min(t.giveUpMs, share * slo.tbtMs) : t.giveUpMs,
  };
}

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
  /** why the stream is in an unresumable range (an entry not held within writeWaitMs): the client's events wait no more. */
  #unresumable: string | undefined;
  /** the first event of the open unresumable range (the first the journal had not held at its opening). */
  #rangeFrom = 0;
  /** the index after the last event the journal holds (text events, the end): a range's start when nothing is queued. */
  #heldNext = 0;
  /** refusals in a row (the retry pause). */
  #failures = 0;
  #queue: Queued[] = [];
  #sending = false;
  #release: (() => void)[] = [];
  #headDone?: (held: boolean) => void;
  /** the one timer of a bound: the head's, then (while the client waits) the first queued entry's. */
  #timer: unknown;
  readonly #bounds: { headWaitMs: number; writeWaitMs: number };

  constructor(
    private readonly append: JournalAppend,
    readonly id: string,
    readonly gen: number,
    private readonly maxBytes: number,
    private readonly timing: JournalTiming = DEFAULT_JOURNAL_TIMING,
    private readonly clock: Clock = systemClock,
    slo?: JournalSlo,
    private readonly onTimeout?: JournalTimeout,
  ) {
    this.#bounds = journalBounds(timing, slo);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** the journal did not hold the head within headWaitMs (or an entry for RETRY_FOR_MS): the stream is not resumable. */
  get lost(): boolean {
    return this.#lost;
  }

  /** why the stream is in an unresumable range (an entry not held within writeWaitMs); undefined: its events carry ids the journal holds. */
  get unresumable(): string | undefined {
    return this.#unresumable;
  }

  /** the head's and a write's wait bounds, ms. */
  get bounds(): { headWaitMs: number; writeWaitMs: number } {
    return this.#bounds;
  }

  /** Queues the head (first): resolves true once the journal holds it, false when it did not within headWaitMs (nothing more is written). */
  head(head: JournalHead): Promise<boolean> {
    const done = new Promise<boolean>((resolve) => (this.#headDone = resolve));
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, head });
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#queue[0]?.e.head === undefined || this.#lost) return;
      this.onTimeout?.('head', this.#bounds.headWaitMs, this.id);
      this.#giveUp();
    }, this.#bounds.headWaitMs);
    return done;
  }

  /** text event `index` (held until flush). */
  text(index: number, text: string, tokens: number): void {
    if (this.#stopped) return;
    this.#bytes += Buffer.byteLength(text);
    if (this.#bytes > this.maxBytes) return this.stop(`longer than the journal's cap (${this.maxBytes} bytes)`);
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

  /**
   * Closes the open unresumable range at event `index` (the next event the client is to be sent): true when the
   * journal holds every event before it (what the client was sent) and the entries still queued are younger than
   * writeWaitMs, so the stream is resumable again from `index` on (a closing marker is queued: the client's events
   * wait for it and for their own entries as before); false otherwise, or when no range is open.
   */
  regain(index: number): boolean {
    if (this.#unresumable === undefined || this.#stopped || this.#lost) return false;
    if (this.#held.length > 0 && this.#from < index) return false;
    const now = this.clock.now();
    for (const q of this.#queue) {
      if (now - q.at >= this.#bounds.writeWaitMs) return false;
      if (q.e.events && q.e.from! < index) return false;
      if (q.e.end && q.e.end.at < index) return false;
    }
    this.#unresumable = undefined;
    this.#mark({ from: this.#rangeFrom, until: index });
    return true;
  }

  /** the stream is not resumable from here on (why). */
  stop(why: string): void {
    if (this.#stopped) return;
    this.#held = [];
    this.#stopped = true;
    this.#enqueue({ v: 1, id: this.id, gen: this.gen, stop: why.slice(0, 256) });
  }

  /** whether the client's events must wait: an entry has waited lagMs or more for the journal (and the stream is still resumable). */
  held(): boolean {
    const q = this.#queue[0];
    return q !== undefined && this.#unresumable === undefined && (this.timing.lagMs === 0 || this.clock.now() - q.at >= this.timing.lagMs);
  }

  /** `fn` runs once, when the journal holds the next entry (or the stream stopped being resumable). */
  onRelease(fn: () => void): void {
    this.#release.push(fn);
    this.#watch();
  }

  /** while the client waits: a timer at the first queued entry's writeWaitMs (one at a time, moved on as entries are held). */
  #watch(): void {
    const q = this.#queue[0];
    if (this.#timer !== undefined || !q || this.#unresumable !== undefined || this.#release.length === 0) return;
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      const first = this.#queue[0];
      if (!first || this.#unresumable !== undefined || this.#lost) return;
      if (this.clock.now() - first.at < this.#bounds.writeWaitMs) return this.#watch();
      this.#endResumable(`the journal did not hold an entry within ${Math.round(this.#bounds.writeWaitMs)} ms`);
    }, Math.max(0, q.at + this.#bounds.writeWaitMs - this.clock.now()));
  }

  /** the client's events stop waiting for the journal: an open unresumable range is marked, and the appends go on. */
  #endResumable(why: string): void {
    this.#unresumable = why;
    const q = this.#queue.find((x) => x.e.events || x.e.end);
    this.#rangeFrom = q ? (q.e.from ?? q.e.end!.at) : this.#held.length > 0 ? this.#from : this.#heldNext;
    this.onTimeout?.('write', this.#bounds.writeWaitMs, this.id);
    this.#mark({ from: this.#rangeFrom, why: why.slice(0, 256) });
    this.#released();
  }

  /** an unresumable range's marker, queued right after the entry in flight (a resume reads it the sooner). */
  #mark(range: NonNullable<ResumeEntry['unresumable']>): void {
    if (this.#lost) return;
    const at = this.#queue[0] && this.#queue[0].sent >= 0 ? 1 : 0;
    this.#queue.splice(at, 0, { e: { v: 1, id: this.id, gen: this.gen, unresumable: range }, at: this.clock.now(), sent: -1 });
    this.#pump();
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
    if (q.e.head ? waited >= this.#bounds.headWaitMs : waited >= RETRY_FOR_MS) {
      // a retry due before the head's timer (a busy event loop runs the earlier one first) passes its bound too
      if (q.e.head) this.onTimeout?.('head', this.#bounds.headWaitMs, this.id);
      return this.#giveUp();
    }
    const left = q.e.head ? this.#bounds.headWaitMs - waited : this.timing.attemptMs;
    this.#sending = true;
    this.append(q.e, Math.min(this.timing.attemptMs, left)).then(
      () => {
        this.#sending = false;
        this.#failures = 0;
        this.#queue.shift();
        if (q.e.events) this.#heldNext = Math.max(this.#heldNext, q.e.from! + q.e.events.length);
        if (q.e.end) this.#heldNext = Math.max(this.#heldNext, q.e.end.at + 1);
        if (q.e.head) {
          this.#clearTimer();
          this.#headDone?.(true);
        }
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

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #giveUp(): void {
    this.#lost = true;
    this.#stopped = true;
    this.#held = [];
    this.#clearTimer();
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
