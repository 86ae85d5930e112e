/**
 * The first token's path through the gateway, per request, for a latency tail's breakdown (opt-in:
 * `DYN_TRACE_FIRST_TOKEN=<file>`, read once at the gateway's start; docs/DATAPATH.md "The first token's path").
 *
 * Off (the default), each mark site costs one boolean check (`firstTokenTrace.on`, or an optional call on an
 * undefined record) and allocates nothing. On, a request gets a record at its head's arrival, with
 * `performance.now()` at each point of its first token's path (SEGMENTS, in order), the event loop's active time
 * in the gap since the previous stream's end (the loop's idle time from libuv's metrics: what ran on the loop while
 * the request was on its way), and the garbage collections (perf_hooks `gc` entries) that overlapped the gap and the
 * request's own window. A request's record is complete at its end (answered, refused or failed: `end`, from the
 * gateway's HTTP layer) and appended to the file as a JSON line by the flush about every second and at exit (one
 * never ended, after STALE_MS); at most `cap` records wait (open or ended): past it, new ones are counted as
 * dropped, not kept. The records live in typed arrays allocated at the start (FirstTokenTrace), not in an object per
 * request.
 */
import { appendFile, appendFileSync } from 'node:fs';
import { performance, PerformanceObserver } from 'node:perf_hooks';

/** The marks of a request's first token's path, in order. */
export const SEGMENTS = ['head', 'parsed', 'counted', 'routed', 'written', 'engineBytes', 'event', 'firstWrite'] as const;
export type Segment = (typeof SEGMENTS)[number];
/** index of each mark in a record's `t`. */
export const MARK = { head: 0, parsed: 1, counted: 2, routed: 3, written: 4, engineBytes: 5, event: 6, firstWrite: 7 } as const;
const N = SEGMENTS.length;

/** One line of the trace file. */
export interface FirstTokenLine {
  id: string;
  pid: number;
  /** the head's arrival on CLOCK_MONOTONIC, ms (process.hrtime's clock: the same for every process of the host, no NTP step or slew). */
  headMonoMs: number;
  /** each mark, ms after the head (SEGMENTS order); null: not reached (a non-streamed answer, a failure). */
  marks: (number | null)[];
  /** ms from the previous stream's end (or the trace's start) to this request's head. */
  gapMs: number;
  /** the event loop's active (not idle) ms in that gap, the head's own turn up to its callback included. */
  loopBusyMs: number;
  /** ms of garbage collection overlapping the gap / the request's window (head to its last mark). */
  gcGapMs: number;
  gcMs: number;
}

/** CLOCK_MONOTONIC, ms (process.hrtime: comparable across the processes of one host). */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const GC_RING = 4096;
const STALE_MS = 60_000;
/** ms a record waits after its end before it is written, so that the GC entries of its window are in. */
const SETTLE_MS = 200;

/**
 * The trace's records live in typed arrays allocated at its start, one slot per request (its marks, its gap's and
 * loop's ms, its end): a request costs the trace no object of its own, so that what it measures (the scavenges of the
 * gateway's young generation, whose pause grows with what survives them) is not inflated by the trace itself. A
 * request's slot is taken at its head (begin) and given back once its line is written, after its end (end) or once
 * stale. A request holds its record's handle: its slot and the slot's generation, which changes when the slot is given
 * back, so that a request that outlives its stale record (a stream over STALE_MS) marks or ends no later request's.
 */
export class FirstTokenTrace {
  /** whether marks are recorded: the one check each mark site makes. */
  on = false;
  dropped = 0;
  private file = '';
  private cap = 0;
  /** each slot's marks, N per slot (performance.now() ms; 0: not reached). */
  private t = new Float64Array(0);
  private gapMs = new Float64Array(0);
  private busyMs = new Float64Array(0);
  /** each slot's end (performance.now() ms; 0: not ended). */
  private endMs = new Float64Array(0);
  /** each slot's request id ('' until bound). */
  private ids: string[] = [];
  /** each slot's generation: how many times it was given back. */
  private gen = new Uint32Array(0);
  /** free slots, a stack. */
  private free = new Int32Array(0);
  private freeN = 0;
  /** slots taken, in order of their heads (the flush writes the ended ones, and the stale ones). */
  private taken = new Int32Array(0);
  private takenN = 0;
  /** the open records' slots by request id (the later marks find theirs by id). */
  private readonly open = new Map<string, number>();
  private readonly gc = new Float64Array(GC_RING * 2);
  private gcN = 0;
  private lastEndMs = 0;
  private lastIdleMs = 0;
  /** CLOCK_MONOTONIC (ms) less performance.now(). */
  private mono = 0;
  private timer: NodeJS.Timeout | undefined;
  private observer: PerformanceObserver | undefined;
  private readonly onExit = () => this.flush(true);

  /** Starts recording to `file` (appended to), flushing every `flushMs`; at most `cap` records wait (open or ended). */
  start(file: string, opts: { cap?: number; flushMs?: number } = {}): void {
    if (this.on) return;
    this.file = file;
    const cap = (this.cap = opts.cap ?? 10_000);
    this.t = new Float64Array(cap * N);
    this.gapMs = new Float64Array(cap);
    this.busyMs = new Float64Array(cap);
    this.endMs = new Float64Array(cap);
    this.ids = new Array<string>(cap).fill('');
    this.gen = new Uint32Array(cap);
    this.free = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.free[i] = cap - 1 - i;
    this.freeN = cap;
    this.taken = new Int32Array(cap);
    this.takenN = 0;
    this.on = true;
    this.lastEndMs = performance.now();
    this.lastIdleMs = performance.nodeTiming.idleTime;
    this.mono = monoMs() - performance.now();
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const k = (this.gcN++ % GC_RING) * 2;
        this.gc[k] = e.startTime;
        this.gc[k + 1] = e.duration;
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
    this.timer = setInterval(() => this.flush(false), opts.flushMs ?? 1000);
    this.timer.unref();
    process.on('exit', this.onExit);
  }

  /** Stops recording; what is recorded is written (synchronously). */
  stop(): void {
    if (!this.on) return;
    this.flush(true);
    this.on = false;
    clearInterval(this.timer);
    this.observer?.disconnect();
    process.off('exit', this.onExit);
    this.open.clear();
  }

  /** Records waiting to be written (open or ended). */
  get held(): number {
    return this.takenN;
  }

  /** A record at a request head's arrival (call only when `on`): its handle (>= 0), or -1 past the cap. */
  begin(): number {
    if (this.freeN === 0) {
      this.dropped++;
      return -1;
    }
    const s = this.free[--this.freeN]!;
    this.taken[this.takenN++] = s;
    const now = performance.now();
    const idle = performance.nodeTiming.idleTime;
    const gap = now - this.lastEndMs;
    this.t.fill(0, s * N, s * N + N);
    this.t[s * N] = now;
    this.gapMs[s] = gap;
    this.busyMs[s] = Math.max(0, gap - (idle - this.lastIdleMs));
    this.endMs[s] = 0;
    this.ids[s] = '';
    return this.gen[s]! * this.cap + s;
  }

  /** the slot of the record `h` names, or -1: no record (past the cap), or its slot given back since (written stale). */
  private slotOf(h: number): number {
    if (h < 0) return -1;
    const s = h % this.cap;
    return this.gen[s] === (h - s) / this.cap ? s : -1;
  }

  /** mark `i` of the record `h` (the server's: parsed, counted, routed), its first time only. */
  markAt(h: number, i: number): void {
    const slot = this.slotOf(h);
    if (slot < 0 || this.endMs[slot] !== 0) return;
    const k = slot * N + i;
    if (this.t[k] === 0) this.t[k] = performance.now();
  }

  /** the request's id, by which the later marks find the record. */
  bind(h: number, id: string): void {
    const slot = this.slotOf(h);
    if (slot < 0 || this.endMs[slot] !== 0) return;
    this.ids[slot] = id;
    this.open.set(id, slot);
  }

  /** mark `i` of the request `id` (its first time only). */
  mark(id: string | undefined, i: number): void {
    const s = id === undefined ? undefined : this.open.get(id);
    if (s === undefined) return;
    const k = s * N + i;
    if (this.t[k] === 0) this.t[k] = performance.now();
  }

  /** The request's end (answered, refused or failed): its record is complete, written by the next flush. */
  end(h: number): void {
    const slot = this.slotOf(h);
    if (slot < 0 || this.endMs[slot] !== 0) return;
    this.endMs[slot] = performance.now();
    const id = this.ids[slot]!;
    if (id !== '' && this.open.get(id) === slot) this.open.delete(id);
  }

  /** a stream's end: the next request's gap starts here. */
  ended(): void {
    this.lastEndMs = performance.now();
    this.lastIdleMs = performance.nodeTiming.idleTime;
  }

  /** GC ms overlapping [from, to]. */
  private gcWithin(from: number, to: number): number {
    let ms = 0;
    for (let j = Math.max(0, this.gcN - GC_RING); j < this.gcN; j++) {
      const k = (j % GC_RING) * 2;
      const s = this.gc[k]!, e = s + this.gc[k + 1]!;
      if (e > from && s < to) ms += Math.min(e, to) - Math.max(s, from);
    }
    return ms;
  }

  /** The record in `slot` as its line. */
  private line(slot: number): FirstTokenLine {
    const b = slot * N;
    const h = this.t[b]!;
    let last = h;
    const marks: (number | null)[] = [];
    for (let i = 0; i < N; i++) {
      const v = this.t[b + i]!;
      if (v === 0) marks.push(null);
      else {
        last = Math.max(last, v);
        marks.push(v - h);
      }
    }
    return {
      id: this.ids[slot]!, pid: process.pid, headMonoMs: this.mono + h, marks, gapMs: this.gapMs[slot]!, loopBusyMs: this.busyMs[slot]!,
      gcGapMs: this.gcWithin(h - this.gapMs[slot]!, h), gcMs: this.gcWithin(h, last),
    };
  }

  /** Writes the ended records (over SETTLE_MS after their end: their GC entries in) and the stale ones (open over STALE_MS); at exit, every one. */
  flush(sync: boolean): void {
    const now = performance.now();
    let text = '';
    let kept = 0;
    for (let j = 0; j < this.takenN; j++) {
      const s = this.taken[j]!;
      const e = this.endMs[s]!;
      const due = sync || (e !== 0 ? now - e > SETTLE_MS : now - this.t[s * N]! > STALE_MS);
      if (!due) {
        this.taken[kept++] = s;
        continue;
      }
      // bound but never ended (stale, or at exit): no longer found by id
      const id = this.ids[s]!;
      if (id !== '' && this.open.get(id) === s) this.open.delete(id);
      if (id !== '') text += JSON.stringify(this.line(s)) + '\n';
      this.ids[s] = '';
      this.gen[s] = this.gen[s]! + 1;
      this.free[this.freeN++] = s;
    }
    this.takenN = kept;
    if (text === '') return;
    if (sync) appendFileSync(this.file, text);
    else appendFile(this.file, text, () => {});
  }
}

/** The process's trace (the gateway starts it from DYN_TRACE_FIRST_TOKEN). */
export const firstTokenTrace = new FirstTokenTrace();
