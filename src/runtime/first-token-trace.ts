/**
 * The first token's path through the gateway, per request, for a latency tail's breakdown (opt-in:
 * `DYN_TRACE_FIRST_TOKEN=<file>`, read once at the gateway's start; docs/DATAPATH.md "The first token's path").
 *
 * Off (the default), each mark site costs one boolean check (`firstTokenTrace.on`, or an optional call on an
 * undefined record) and allocates nothing. On, a request gets a record at its head's arrival, with
 * `performance.now()` at each point of its first token's path (SEGMENTS, in order), the event loop's active time
 * in the gap since the previous stream's end (the loop's idle time from libuv's metrics: what ran on the loop while
 * the request was on its way), and the garbage collections (perf_hooks `gc` entries) that overlapped the gap and the
 * request's own window. Completed records are appended to the file as JSON lines about every second and at exit;
 * at most `cap` records wait (open or done): past it, new ones are counted as dropped, not kept.
 */
import { appendFile, appendFileSync } from 'node:fs';
import { performance, PerformanceObserver } from 'node:perf_hooks';

/** The marks of a request's first token's path, in order. */
export const SEGMENTS = ['head', 'parsed', 'counted', 'routed', 'written', 'engineBytes', 'event', 'firstWrite'] as const;
export type Segment = (typeof SEGMENTS)[number];
/** index of each mark in a record's `t`. */
export const MARK = { head: 0, parsed: 1, counted: 2, routed: 3, written: 4, engineBytes: 5, event: 6, firstWrite: 7 } as const;
const N = SEGMENTS.length;
const LAST = N - 1;

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

/** A request's record; `mark` and `bind` are the server's (head, parsed, counted, routed); later marks go by request id. */
export class FirstTokenRecord {
  readonly t = new Float64Array(N);
  id = '';
  constructor(readonly gapMs: number, readonly loopBusyMs: number, private readonly trace: FirstTokenTrace) {}
  mark(i: number): void {
    if (this.t[i] === 0) this.t[i] = performance.now();
  }
  /** the request's id, by which the later marks find the record. */
  bind(id: string): void {
    this.id = id;
    this.trace.bind(this);
  }
}

/** CLOCK_MONOTONIC, ms (process.hrtime: comparable across the processes of one host). */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const GC_RING = 4096;
const STALE_MS = 60_000;

export class FirstTokenTrace {
  /** whether marks are recorded: the one check each mark site makes. */
  on = false;
  dropped = 0;
  private file = '';
  private cap = 10_000;
  private readonly open = new Map<string, FirstTokenRecord>();
  private done: FirstTokenRecord[] = [];
  private readonly gc = new Float64Array(GC_RING * 2);
  private gcN = 0;
  private lastEndMs = 0;
  private lastIdleMs = 0;
  /** CLOCK_MONOTONIC (ms) less performance.now(). */
  private mono = 0;
  private timer: NodeJS.Timeout | undefined;
  private observer: PerformanceObserver | undefined;
  private readonly onExit = () => this.flush(true);

  /** Starts recording to `file` (appended to), flushing every `flushMs`. */
  start(file: string, opts: { cap?: number; flushMs?: number } = {}): void {
    if (this.on) return;
    this.file = file;
    this.cap = opts.cap ?? 10_000;
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

  /** A record at a request head's arrival (call only when `on`); undefined past the cap. */
  begin(): FirstTokenRecord | undefined {
    if (this.open.size + this.done.length >= this.cap) {
      this.dropped++;
      return undefined;
    }
    const now = performance.now();
    const idle = performance.nodeTiming.idleTime;
    const gap = now - this.lastEndMs;
    const r = new FirstTokenRecord(gap, Math.max(0, gap - (idle - this.lastIdleMs)), this);
    r.t[0] = now;
    return r;
  }

  bind(r: FirstTokenRecord): void {
    this.open.set(r.id, r);
  }

  /** mark `i` of the request `id` (its first time only); the last one completes the record. */
  mark(id: string | undefined, i: number): void {
    const r = id === undefined ? undefined : this.open.get(id);
    if (!r || r.t[i] !== 0) return;
    r.t[i] = performance.now();
    if (i !== LAST) return;
    this.open.delete(id!);
    this.done.push(r);
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

  /** One record as its line. */
  line(r: FirstTokenRecord): FirstTokenLine {
    const h = r.t[0]!;
    let last = h;
    const marks = Array.from(r.t, (v) => (v === 0 ? null : (last = Math.max(last, v), v - h)));
    return {
      id: r.id, pid: process.pid, headMonoMs: this.mono + h, marks, gapMs: r.gapMs, loopBusyMs: r.loopBusyMs,
      gcGapMs: this.gcWithin(h - r.gapMs, h), gcMs: this.gcWithin(h, last),
    };
  }

  /** Writes the completed records (at exit: the open ones too; otherwise those completed over 200 ms ago, their GC entries in). */
  flush(sync: boolean): void {
    const now = performance.now();
    const out: FirstTokenRecord[] = [];
    const keep: FirstTokenRecord[] = [];
    for (const r of this.done) (sync || now - r.t[LAST]! > 200 ? out : keep).push(r);
    this.done = keep;
    for (const [id, r] of this.open) {
      if (!sync && now - r.t[0]! < STALE_MS) continue;
      this.open.delete(id);
      out.push(r);
    }
    if (out.length === 0) return;
    const text = out.map((r) => JSON.stringify(this.line(r))).join('\n') + '\n';
    if (sync) appendFileSync(this.file, text);
    else appendFile(this.file, text, () => {});
  }
}

/** The process's trace (the gateway starts it from DYN_TRACE_FIRST_TOKEN). */
export const firstTokenTrace = new FirstTokenTrace();
