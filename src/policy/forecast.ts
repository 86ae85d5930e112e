/**
 * Load forecasting for the cluster manager: the peak load per request type over the coming epoch.
 * Paper: templates built from a week of history. Here, per type:
 *  - template: the load observed one period ago (a week if history covers it, else a day) over the
 *    horizon, scaled by how the current level compares with the level one period ago (ratio clamped);
 *  - trend: Holt's damped linear trend over the per-minute samples (catches a step the template lacks);
 *  - floor: the highest sample of the last few minutes (never forecast below what is happening now).
 * The forecast is the max of the three times (1 + safetyMargin). Pure: the state is plain data
 * (`snapshot()` / constructor) and time is passed in.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { LoadByType } from './types.ts';

const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const WEEK = 7 * DAY;

export interface ForecasterOptions {
  /** Holt level smoothing per sample (0..1]. Default 0.5. */
  alpha?: number;
  /** Holt trend smoothing per sample (0..1]. Default 0.2. */
  beta?: number;
  /** trend damping per minute of horizon (0..1); bounds the projection at phi/(1-phi) minutes of slope. Default 0.9. */
  phi?: number;
  /** multiplicative margin on the forecast peak (0.1 = +10%). Default 0.1. */
  safetyMargin?: number;
  /** window of recent samples whose max floors the forecast, ms. Default 5 min. */
  recentWindowMs?: number;
  /** history kept, ms (bounds memory: one sample per minute per type). Default 8 days. */
  historyMs?: number;
  /** template ratio clamp [1/r, r]. Default 2. */
  templateRatioClamp?: number;
}

export interface ForecasterState {
  /** samples as [tMs, load] per type, ascending in time. */
  history: Partial<Record<RequestType, [number, number][]>>;
  holt: Partial<Record<RequestType, { level: number; slope: number; lastT: number }>>;
  firstT: number | null;
}

export interface ForecastDetail {
  type: RequestType;
  template: number | null;
  trend: number;
  recentMax: number;
  peak: number;
}

export class LoadForecaster {
  private readonly o: Required<ForecasterOptions>;
  private readonly s: ForecasterState;

  constructor(opts: ForecasterOptions = {}, state?: ForecasterState) {
    this.o = {
      alpha: opts.alpha ?? 0.5,
      beta: opts.beta ?? 0.2,
      phi: opts.phi ?? 0.9,
      safetyMargin: opts.safetyMargin ?? 0.1,
      recentWindowMs: opts.recentWindowMs ?? 5 * MIN,
      historyMs: opts.historyMs ?? 8 * DAY,
      templateRatioClamp: opts.templateRatioClamp ?? 2,
    };
    this.s = state ? structuredClone(state) : { history: {}, holt: {}, firstT: null };
  }

  /** A forecaster reading `state` in place, without a copy: for forecasts only (never call observe on it). */
  static reading(state: ForecasterState, opts: ForecasterOptions = {}): Pick<LoadForecaster, 'forecast' | 'explain' | 'predict'> {
    const f = new LoadForecaster(opts);
    (f as unknown as { s: ForecasterState }).s = state;
    return f;
  }

  snapshot(): ForecasterState {
    return structuredClone(this.s);
  }

  /** Record one sample (normally once a minute) of the offered load per type, req/s. Types absent count as 0. */
  observe(tMs: number, loadByType: LoadByType): void {
    if (this.s.firstT === null) this.s.firstT = tMs;
    for (const t of REQUEST_TYPES) {
      const x = Math.max(0, loadByType[t] ?? 0);
      const h = (this.s.history[t] ??= []);
      if (h.length && tMs <= h[h.length - 1]![0]) throw new RangeError(`forecaster samples must be in time order (${tMs} after ${h[h.length - 1]![0]})`);
      h.push([tMs, x]);
      while (h.length && h[0]![0] < tMs - this.o.historyMs) h.shift();
      const st = this.s.holt[t];
      if (!st) {
        this.s.holt[t] = { level: x, slope: 0, lastT: tMs };
        continue;
      }
      const dtMin = Math.max(1e-3, (tMs - st.lastT) / MIN);
      const predicted = st.level + st.slope * dtMin;
      const level = this.o.alpha * x + (1 - this.o.alpha) * predicted;
      const slope = this.o.beta * ((level - st.level) / dtMin) + (1 - this.o.beta) * st.slope * this.o.phi;
      this.s.holt[t] = { level, slope, lastT: tMs };
    }
  }

  /**
   * Holt's prediction of the sample at `tMs` (its level and damped slope, no margin, no floor, no template), per type
   * with a history: what a sample at tMs is scored against (./epoch-length.ts). Call it before observe(tMs).
   */
  predict(tMs: number): LoadByType {
    const out: LoadByType = {};
    const phi = this.o.phi;
    for (const t of REQUEST_TYPES) {
      const st = this.s.holt[t];
      if (!st) continue;
      const H = Math.max(0, (tMs - st.lastT) / MIN);
      const damp = phi === 1 ? H : (phi * (1 - Math.pow(phi, H))) / (1 - phi);
      out[t] = Math.max(0, st.level + st.slope * damp);
    }
    return out;
  }

  /** Per-type components of the forecast at `nowMs` for the next `horizonMs`. */
  explain(nowMs: number, horizonMs: number): ForecastDetail[] {
    const out: ForecastDetail[] = [];
    const span = this.s.firstT === null ? 0 : nowMs - this.s.firstT;
    const period = span >= WEEK ? WEEK : span >= DAY ? DAY : 0;
    for (const t of REQUEST_TYPES) {
      const h = this.s.history[t];
      const st = this.s.holt[t];
      if (!h || !h.length || !st) continue;
      const recentMax = maxIn(h, nowMs - this.o.recentWindowMs, nowMs) ?? 0;
      // damped trend: level + slope * sum_{k=1..H} phi^k, its max over the horizon (at the end if rising)
      const H = horizonMs / MIN;
      const phi = this.o.phi;
      const damp = phi === 1 ? H : (phi * (1 - Math.pow(phi, H))) / (1 - phi);
      const trend = Math.max(0, st.level, st.level + st.slope * damp);
      let template: number | null = null;
      if (period) {
        const past = maxIn(h, nowMs - period, nowMs - period + horizonMs);
        const thenLevel = meanIn(h, nowMs - period - this.o.recentWindowMs, nowMs - period);
        const nowLevel = meanIn(h, nowMs - this.o.recentWindowMs, nowMs);
        if (past !== null) {
          const r = this.o.templateRatioClamp;
          const ratio = thenLevel && nowLevel !== null && thenLevel > 0 ? Math.min(r, Math.max(1 / r, nowLevel / thenLevel)) : 1;
          template = past * ratio;
        }
      }
      const peak = Math.max(trend, recentMax, template ?? 0) * (1 + this.o.safetyMargin);
      out.push({ type: t, template, trend, recentMax, peak });
    }
    return out;
  }

  /** Forecast peak load per type (req/s) over [nowMs, nowMs + horizonMs]. */
  forecast(nowMs: number, horizonMs: number): LoadByType {
    const out: LoadByType = {};
    for (const d of this.explain(nowMs, horizonMs)) if (d.peak > 0) out[d.type] = d.peak;
    return out;
  }
}

function maxIn(h: [number, number][], from: number, to: number): number | null {
  let m: number | null = null;
  for (let i = h.length - 1; i >= 0; i--) {
    const [t, x] = h[i]!;
    if (t < from) break;
    if (t <= to) m = m === null ? x : Math.max(m, x);
  }
  return m;
}

function meanIn(h: [number, number][], from: number, to: number): number | null {
  let s = 0, n = 0;
  for (let i = h.length - 1; i >= 0; i--) {
    const [t, x] = h[i]!;
    if (t < from) break;
    if (t <= to) { s += x; n++; }
  }
  return n ? s / n : null;
}
