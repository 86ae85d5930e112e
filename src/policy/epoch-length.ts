/**
 * The cluster epoch's length from the forecast's recent error (issue 17: a shorter cluster epoch when the forecast
 * is confident). Pure; the live cluster manager and the simulator run it inside the cluster machine
 * (./machines/cluster.ts), on the minutes the forecaster observes, with no knowledge of the coming load.
 *
 * Each observed minute is scored against the forecaster's one-step prediction of it (Holt's level and damped slope,
 * LoadForecaster.predict, made before the minute is fed in) in units of counting noise (forecastError: a type that
 * sees n requests a minute varies by about sqrt(n) on its own, so a relative error cannot tell a poor forecast from a
 * thin type). Over the last `samples` minutes:
 * - at each epoch the machine runs, a mean error at or below `confidentError` sets the next epoch's length to
 *   `floorMs`; the epoch then plans for that shorter horizon and the highest minute of that shorter recent window, and
 *   the machine runs the next one as soon as that length has passed and the plan takes servers away (a scale-in: a
 *   rise already has the forecast-change epoch and the start-ahead);
 * - a minute that brings the mean above `unconfidentError` puts the length back to the full epoch at once;
 * - in between the length stays.
 */
import type { LoadByType } from './types.ts';

export interface EpochLengthConfig {
  /** the configured cluster epoch, ms: the longest length. */
  fullMs: number;
  /** the shortest length, ms. */
  floorMs: number;
  /** a mean error at or below this shortens the epoch. */
  confidentError: number;
  /** a mean error above this lengthens it back to fullMs. */
  unconfidentError: number;
  /** minutes of error the mean reads (and needs before it shortens anything). */
  samples: number;
}

/**
 * Defaults: a 5-min floor (the pool's re-shard epoch, an instance start); confident while the forecast's misses are
 * within twice counting noise (RMS, a dispersion of 4) over 10 minutes, back to the full epoch past three times (9).
 */
export const EPOCH_LENGTH_DEFAULTS = { floorMs: 300_000, confidentError: 4, unconfidentError: 9, samples: 10 } as const;

export interface EpochLengthState {
  /** the last minutes' errors, oldest first (at most cfg.samples). */
  errors: number[];
  /** the length the next epoch is due after, ms. */
  lenMs: number;
}

export function initialEpochLength(cfg: Pick<EpochLengthConfig, 'fullMs'>): EpochLengthState {
  return { errors: [], lenMs: cfg.fullMs };
}

/**
 * One sample's error against its prediction (req/s by type, over a sample of `sampleS` seconds), in units of counting
 * noise: Pearson's dispersion of the sample's counts about the predicted ones, sum (O - P)^2 / max(P, 1) over the types
 * either names, divided by their number. About 1 when the load follows the prediction up to Poisson noise, growing with
 * the square of a miss. Undefined when neither names a type with load.
 */
export function forecastError(predicted: LoadByType, observed: LoadByType, sampleS: number): number | undefined {
  let sum = 0, n = 0;
  const types = new Set([...Object.keys(predicted), ...Object.keys(observed)]) as Set<keyof LoadByType>;
  for (const t of types) {
    const p = Math.max(0, predicted[t] ?? 0) * sampleS, o = Math.max(0, observed[t] ?? 0) * sampleS;
    if (p <= 0 && o <= 0) continue;
    sum += (o - p) ** 2 / Math.max(p, 1);
    n++;
  }
  return n ? sum / n : undefined;
}

/** The mean of the recorded errors (undefined before the first). */
export function meanError(st: EpochLengthState): number | undefined {
  return st.errors.length ? st.errors.reduce((a, b) => a + b, 0) / st.errors.length : undefined;
}

/** A minute scored: its error recorded; the mean above unconfidentError puts the length back to fullMs. */
export function epochAfterObservation(st: EpochLengthState, err: number | undefined, cfg: EpochLengthConfig): EpochLengthState {
  if (err === undefined || !Number.isFinite(err)) return st;
  const errors = [...st.errors, err].slice(-cfg.samples);
  const next = { errors, lenMs: st.lenMs };
  if ((meanError(next) ?? 0) > cfg.unconfidentError) next.lenMs = cfg.fullMs;
  return next;
}

/** An epoch runs: the next one's length (floorMs while the forecast is confident over a full window). */
export function epochAfterRun(st: EpochLengthState, cfg: EpochLengthConfig): EpochLengthState {
  const m = meanError(st);
  if (st.errors.length < cfg.samples || m === undefined) return { ...st, lenMs: Math.min(st.lenMs, cfg.fullMs) };
  if (m <= cfg.confidentError) return { ...st, lenMs: Math.min(cfg.floorMs, cfg.fullMs) };
  if (m > cfg.unconfidentError) return { ...st, lenMs: cfg.fullMs };
  return st;
}
