/**
 * Drives a BatchingCore in (scaled) real time for the emulator process: each step is executed on the
 * core, then the driver waits durationMs / timeScale of wall time and delivers the step's events (tokens
 * appear at the step's end, as on a GPU). The core's timeline is "virtual ms" = wall ms x timeScale since
 * the driver started. Consecutive steps start exactly where the previous one ended on that timeline, so
 * timer jitter delays delivery but never accumulates into the modelled latencies.
 *
 * Also the emulated GPU: SM clock lock / reset within the supported list, instantaneous power, power averaged over
 * the last second and cumulative energy per GPU (modelled, from the PerfModel; not measured).
 */
import type { EmulatedGpuState } from '../../gpu/emulated.ts';
import { performance } from 'node:perf_hooks';
import { BatchingCore } from '../core.ts';
import type { CoreEvent, CoreRequest } from '../core-types.ts';
import type { PerfModel } from '../../model/types.ts';
import type { SleepLevel } from '../../model/sleep.ts';

export interface DriverOptions {
  perf: PerfModel;
  tp: number;
  /** wall-time speed-up; default 1. */
  timeScale?: number;
  /** steps take no wall time (deliver events at once); default false. */
  zeroDelay?: boolean;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  /** vLLM long_prefill_token_threshold (0 = off). */
  longPrefillTokenThreshold?: number;
  maxWaiting?: number;
  /** the model's context length: the top of the token-count histograms' buckets (vLLM's build_1_2_5_buckets). */
  maxModelLen?: number;
  /** automatic prefix caching over requests' `prefixHashes`, blocks of this many tokens (vLLM's block size); 0 or absent: off. */
  prefixCacheBlockTokens?: number;
}

/** vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max. */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let e = 1; ; e *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * e > max) return out;
      out.push(m * e);
    }
  }
}

/** vLLM's request latency buckets, seconds. */
export const REQUEST_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** Prometheus-style cumulative histogram in seconds. */
export class LatencyHistogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]) this.counts[i]++;
  }
}

/** vLLM's bucket bounds (seconds). */
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
export const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

export type DriverListener = (ev: CoreEvent) => void;

interface Tracked {
  listener: DriverListener;
  arrivalMs: number;
  lastTokenMs: number;
}

/** The emulated GPU's admin-endpoint body: the one shape the emulated GpuControl backend reads. */
export type GpuState = EmulatedGpuState;

/**
 * The averaging window of the emulated power sensor, virtual ms: nvmlDeviceGetPowerUsage on Ampere (except GA100) and
 * newer GPUs, H100 and H200 among them, returns the power averaged over 1 s, not the instantaneous draw.
 */
export const POWER_AVERAGE_MS = 1000;

/** Largest wall lag (ms) the core timeline may trail the wall clock before it is pulled forward. */
const MAX_LAG_WALL_MS = 250;

export class RealtimeDriver {
  readonly core: BatchingCore;
  readonly timeScale: number;
  private readonly zeroDelay: boolean;
  private readonly t0 = performance.now();
  private busy = false;
  private stepPowerW = 0;
  /**
   * The energy timeline: (virtual ms, cumulative J) points between which the power was constant (step starts and
   * ends, clock and sleep changes), oldest first, reaching back past the averaging window; the last ones may lie
   * ahead of now (the executing step's end).
   */
  private readonly trace: { ms: number; j: number }[] = [{ ms: 0, j: 0 }];
  private readonly tracked = new Map<string, Tracked>();
  private readonly clocks: number[];
  private lockedMin: number | null = null;
  private lockedMax: number | null = null;
  private closed = false;
  /** sleep mode: the level asleep at (null: awake), and the transition under way. */
  private sleepLevel: SleepLevel | null = null;
  private transition: 'falling-asleep' | 'waking' | null = null;
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  /** times the timeline was pulled forward (the process starved past MAX_LAG_WALL_MS), and the virtual ms it skipped. */
  pulls = 0;
  pulledMs = 0;
  readonly ttft = new LatencyHistogram(TTFT_BUCKETS);
  readonly itl = new LatencyHistogram(ITL_BUCKETS);
  readonly e2e = new LatencyHistogram(REQUEST_LATENCY_BUCKETS);
  readonly promptTokensHist: LatencyHistogram;
  readonly generationTokensHist: LatencyHistogram;
  promptTokensTotal = 0;
  generationTokensTotal = 0;

  constructor(readonly opts: DriverOptions) {
    this.timeScale = opts.timeScale ?? 1;
    if (!(this.timeScale > 0)) throw new RangeError(`timeScale must be > 0, got ${this.timeScale}`);
    this.zeroDelay = opts.zeroDelay ?? false;
    const lens = buckets125(opts.maxModelLen ?? 4096);
    this.promptTokensHist = new LatencyHistogram(lens);
    this.generationTokensHist = new LatencyHistogram(lens);
    this.clocks = opts.perf.supportedClocks();
    this.core = new BatchingCore({
      perf: opts.perf, tp: opts.tp, clockMhz: this.clocks[this.clocks.length - 1],
      maxNumSeqs: opts.maxNumSeqs, maxNumBatchedTokens: opts.maxNumBatchedTokens, longPrefillTokenThreshold: opts.longPrefillTokenThreshold, maxWaiting: opts.maxWaiting,
      ...(opts.prefixCacheBlockTokens ? { prefixCacheBlockTokens: opts.prefixCacheBlockTokens } : {}),
    });
    this.core.idleUntil(0);
  }

  /** Current time on the core's timeline, virtual ms. */
  now(): number {
    return (performance.now() - this.t0) * this.timeScale;
  }

  /** Submit; throws QueueFullError / RangeError from the core. */
  submit(req: Omit<CoreRequest, 'arrivalMs'>, listener: DriverListener): number {
    const arrivalMs = this.now();
    this.core.submit({ ...req, arrivalMs });
    this.tracked.set(req.id, { listener, arrivalMs, lastTokenMs: arrivalMs });
    this.promptTokensTotal += req.promptTokens;
    // an idle engine starts its step at the arrival (the time it took to get here is not the engine's)
    this.kick(arrivalMs);
    return arrivalMs;
  }

  cancel(id: string): void {
    this.tracked.delete(id);
    this.core.cancel(id);
  }

  inFlight(): number {
    return this.tracked.size;
  }

  private kick(atMs = this.now()): void {
    if (this.busy || this.closed || !this.core.hasWork()) return;
    this.runStep(atMs);
  }

  private runStep(startMs: number): void {
    const r = this.core.step(startMs);
    if (!r) {
      this.busy = false;
      return;
    }
    this.busy = true;
    this.stepPowerW = r.powerW;
    const endMs = r.startMs + r.durationMs;
    if (r.durationMs > 0) {
      // the core has counted the whole step; it ran from startMs to endMs at the step's power
      const j = this.core.stats().energyJ;
      this.mark(r.startMs, j - (r.powerW * r.durationMs) / 1000);
      this.mark(endMs, j);
    }
    const fire = () => {
      this.timer = null;
      // a timer may fire before its time on the core's timeline (Node's timers count from the event loop's cached
      // time, whole ms): wait out the rest, so that the next step is formed at this one's end with every request
      // that arrived before it, as the engine loop forms it
      if (!this.zeroDelay && !this.closed && this.now() < endMs) {
        this.timer = setTimeout(fire, (endMs - this.now()) / this.timeScale);
        return;
      }
      for (const ev of r.events) this.deliver(ev);
      if (this.closed) return;
      if (this.core.hasWork()) {
        // Continue on the core timeline (timer lateness does not add up into the modelled latencies): the next
        // step starts where this one ended, as a GPU's engine loop goes on, and takes the requests that had arrived
        // by then (one submitted while this timer was late joins the step after, the core's rule); pull it
        // forward when badly behind (process starved).
        const floor = this.now() - MAX_LAG_WALL_MS * this.timeScale;
        if (floor > endMs) {
          this.pulls++;
          this.pulledMs += floor - endMs;
        }
        this.runStep(Math.max(endMs, floor));
      } else this.busy = false;
    };
    if (this.zeroDelay) this.timer = setImmediate(fire);
    else this.timer = setTimeout(fire, Math.max(0, (endMs - this.now()) / this.timeScale));
  }

  private deliver(ev: CoreEvent): void {
    const t = this.tracked.get(ev.id);
    if (!t) return;
    if (ev.kind === 'first_token') {
      this.ttft.observe((ev.atMs - t.arrivalMs) / 1000);
      t.lastTokenMs = ev.atMs;
      this.generationTokensTotal++;
    } else if (ev.kind === 'token') {
      this.itl.observe((ev.atMs - t.lastTokenMs) / 1000);
      t.lastTokenMs = ev.atMs;
      this.generationTokensTotal++;
    } else if (ev.kind === 'finished') {
      this.tracked.delete(ev.id);
      this.e2e.observe((ev.atMs - t.arrivalMs) / 1000);
      this.promptTokensHist.observe(ev.promptTokens);
      this.generationTokensHist.observe(ev.outputTokens);
    }
    t.listener(ev);
  }

  // ---- emulated GPU ----

  /** Instance power now, W: the executing step's, or idle. */
  powerW(): number {
    if (this.busy) return this.stepPowerW;
    this.core.idleUntil(this.now());
    return this.core.powerW();
  }

  /**
   * Instance power averaged over the last POWER_AVERAGE_MS of the GPU's timeline (over its whole life while it is
   * younger), W: what nvmlDeviceGetPowerUsage reads on an H100. A reader once a second sees the steps it fell between.
   */
  averagePowerW(): number {
    const now = this.now();
    const from = Math.max(0, now - POWER_AVERAGE_MS);
    if (!(now > from)) return this.powerW();
    // the window's start first: reading now marks a point, which may drop the points before the window
    const start = this.energyAt(from);
    return ((this.energyAt(now) - start) * 1000) / (now - from);
  }

  /** A point of the energy timeline: the power changes at `ms`, the energy counted up to it is `j`. */
  private mark(ms: number, j: number): void {
    const last = this.trace[this.trace.length - 1]!;
    if (ms < last.ms) return;
    if (ms === last.ms) last.j = j;
    else this.trace.push({ ms, j });
    if (this.trace.length < 256) return;
    // the points before the window go, but the last of them (the energy at the window's start lies after it)
    const horizon = this.now() - POWER_AVERAGE_MS;
    let k = 0;
    while (k + 1 < this.trace.length - 1 && this.trace[k + 1]!.ms <= horizon) k++;
    if (k > 0) this.trace.splice(0, k);
  }

  /** Cumulative energy at virtual time `t` (not ahead of now), J: linear between the timeline's points, idle after the last one. */
  private energyAt(t: number): number {
    const tr = this.trace;
    const last = tr[tr.length - 1]!;
    if (t >= last.ms) {
      if (this.busy) return last.j;
      // idle since the last point, at one power: linear up to the energy the core counts up to now
      const { ms, j } = last;
      const now = this.now();
      this.core.idleUntil(now);
      const jNow = this.core.stats().energyJ;
      this.mark(now, jNow);
      return now > ms ? j + ((jNow - j) * (t - ms)) / (now - ms) : jNow;
    }
    let i = tr.length - 1;
    while (i > 0 && tr[i - 1]!.ms > t) i--;
    const a = tr[i - 1], b = tr[i]!;
    if (!a) return b.j;
    return a.j + ((b.j - a.j) * (t - a.ms)) / (b.ms - a.ms);
  }

  energyJ(): number {
    if (!this.busy) this.core.idleUntil(this.now());
    return this.core.stats().energyJ;
  }

  gpuState(): GpuState {
    const tp = this.opts.tp;
    const pw = this.powerW();
    const avg = this.averagePowerW();
    const ej = this.energyJ();
    return {
      gpuCount: tp,
      supportedClocksMhz: [...this.clocks],
      clockMhz: this.core.stats().clockMhz,
      lockedMinMhz: this.lockedMin,
      lockedMaxMhz: this.lockedMax,
      maxClockMhz: this.clocks[this.clocks.length - 1],
      powerMw: new Array<number>(tp).fill(Math.round((pw / tp) * 1000)),
      powerAvgMw: new Array<number>(tp).fill(Math.round((avg / tp) * 1000)),
      energyMj: new Array<number>(tp).fill(Math.round((ej / tp) * 1000)),
    };
  }

  /** Clamp [min, max] to the supported list (as NVML does) and run at the clamped max. */
  lockClocks(minMhz: number, maxMhz: number): GpuState {
    if (!Number.isFinite(minMhz) || !Number.isFinite(maxMhz)) throw new RangeError('minMhz and maxMhz must be numbers');
    if (minMhz > maxMhz) throw new RangeError(`minMhz ${minMhz} > maxMhz ${maxMhz}`);
    const lo = this.clocks[0];
    const hi = this.clocks[this.clocks.length - 1];
    // highest supported <= max; lowest supported >= min (after clamping into the range)
    const cmax = this.clocks.filter((c) => c <= Math.max(lo, Math.min(hi, maxMhz))).at(-1) ?? lo;
    const cmin = Math.min(cmax, this.clocks.find((c) => c >= Math.max(lo, Math.min(hi, minMhz))) ?? hi);
    this.setCoreClock(cmax);
    this.lockedMin = cmin;
    this.lockedMax = cmax;
    return this.gpuState();
  }

  resetClocks(): GpuState {
    this.setCoreClock(this.clocks[this.clocks.length - 1]);
    this.lockedMin = null;
    this.lockedMax = null;
    return this.gpuState();
  }

  private setCoreClock(mhz: number): void {
    // idle time before the change is accounted at the old clock's idle power
    if (!this.busy) this.markIdle();
    this.core.setClock(mhz);
  }

  /** Idle energy counted up to now, and a point of the energy timeline there (the idle power is about to change); now. */
  private markIdle(): number {
    const now = this.now();
    this.core.idleUntil(now);
    this.mark(now, this.core.stats().energyJ);
    return now;
  }

  /**
   * vLLM sleep mode (src/model/sleep.ts): refused while requests are in flight. The core draws its unloaded idle
   * power once asleep; the caller (the HTTP server) waits the level's modelled time before calling `asleep`.
   */
  sleep(level: SleepLevel = 1): void {
    if (this.busy || this.core.hasWork()) throw new RangeError('engine has requests in flight; drain before sleeping');
    this.sleepLevel = level;
    this.transition = 'falling-asleep';
  }

  /** The modelled fall into sleep is over: unloaded idle power from now. */
  asleep(): void {
    if (this.transition !== 'falling-asleep') return;
    this.transition = null;
    this.core.setSleeping(true, this.markIdle());
  }

  /** A wake begins: loaded idle power from now (the weights are copied back), work still refused until `awake`. */
  beginWake(): void {
    this.transition = 'waking';
    this.core.setSleeping(false, this.markIdle());
  }

  /** The wake is over: the engine serves again. */
  awake(): void {
    this.transition = null;
    this.sleepLevel = null;
    this.core.setSleeping(false, this.markIdle());
    this.kick();
  }

  /** True from a sleep call until the wake that follows it has finished (vLLM's /is_sleeping). */
  isSleeping(): boolean {
    return this.sleepLevel !== null;
  }

  /** The level of the current sleep, or null while awake. */
  sleepingAt(): SleepLevel | null {
    return this.sleepLevel;
  }

  close(): void {
    this.closed = true;
    if (this.timer) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
    }
  }
}
