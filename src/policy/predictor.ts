/**
 * Output-length prediction. The paper uses a BERT proxy classifier (81% accurate); here the default is an
 * online learner over honest features only (what is known when the request arrives): prompt length,
 * max_tokens, model and tenant. It keeps exponentially decayed class histograms per
 * (tenant, model, input bucket), per (model, input bucket) and globally, and predicts the class with the
 * highest posterior, each level using its parent as a prior (hierarchical back-off). max_tokens is a hard
 * upper bound on the output, so it caps the class and the token estimate.
 */
import { LENGTH_CLASSES, type LengthClass } from '../../protocols/request-types.ts';
import { outputClassOfTokens } from './classify.ts';
import { DEFAULT_THRESHOLDS, type ClassThresholds } from './slo.ts';

export interface RequestFeatures {
  inputTokens: number;
  /** the client's max_tokens, if it sent one: an upper bound on the output. */
  maxTokens?: number;
  model: string;
  tenant?: string;
}

export interface Prediction {
  outputClass: LengthClass;
  /** point estimate of output tokens (mean of that class as observed, capped by max_tokens). */
  tokens: number;
}

export interface PredictorAccuracy {
  total: number;
  correct: number;
  /** correct / total over all observations (0 when none). */
  rate: number;
  /** decayed recent accuracy (same decay as the histograms), 0 when none. */
  recentRate: number;
}

export interface OutputLengthPredictor {
  predict(f: RequestFeatures): Prediction;
  /** Learn from a finished request; also scores the prediction the predictor would have made. */
  observe(f: RequestFeatures, actualOutputTokens: number): void;
  accuracy(): PredictorAccuracy;
}

export interface OnlinePredictorOptions {
  /** per-observation decay of a histogram (0..1]; 0.995 = half-life ~140 observations of that key. Default 0.995. */
  decay?: number;
  /** weight (pseudo-observations) of the parent level's distribution as prior. Default 2. */
  priorStrength?: number;
  /** keys kept per level before the least recently used is evicted (bounds memory). Default 10000. */
  maxKeys?: number;
  /** token thresholds (Table IV). Default DEFAULT_THRESHOLDS. */
  thresholds?: ClassThresholds;
  /** default token estimate per class before any observation. Default S 50, M 200, L 500. */
  defaultTokens?: Record<LengthClass, number>;
}

interface Hist {
  n: [number, number, number]; // decayed counts per class S, M, L
  tok: [number, number, number]; // decayed token sums per class
}

const ci = (c: LengthClass) => LENGTH_CLASSES.indexOf(c);

/** log2 bucket of the prompt length: 0-15, 16-31, ... (coarse enough to share evidence). */
export function inputBucket(inputTokens: number): number {
  return Math.max(0, Math.floor(Math.log2(Math.max(1, inputTokens))) - 3);
}

export class OnlineOutputPredictor implements OutputLengthPredictor {
  private readonly decay: number;
  private readonly priorStrength: number;
  private readonly maxKeys: number;
  private readonly th: ClassThresholds;
  private readonly defTokens: Record<LengthClass, number>;
  private readonly fine = new Map<string, Hist>();
  private readonly mid = new Map<string, Hist>();
  private readonly global: Hist = { n: [0, 0, 0], tok: [0, 0, 0] };
  private total = 0;
  private correct = 0;
  private recentN = 0;
  private recentC = 0;

  constructor(o: OnlinePredictorOptions = {}) {
    this.decay = o.decay ?? 0.995;
    this.priorStrength = o.priorStrength ?? 2;
    this.maxKeys = o.maxKeys ?? 10_000;
    this.th = o.thresholds ?? DEFAULT_THRESHOLDS;
    this.defTokens = o.defaultTokens ?? { S: 50, M: 200, L: 500 };
    if (!(this.decay > 0 && this.decay <= 1)) throw new RangeError(`decay must be in (0, 1], got ${this.decay}`);
  }

  private keys(f: RequestFeatures): [string, string] {
    const b = inputBucket(f.inputTokens);
    return [`${f.tenant ?? ''}\u0000${f.model}\u0000${b}`, `${f.model}\u0000${b}`];
  }

  predict(f: RequestFeatures): Prediction {
    const [kf, km] = this.keys(f);
    return this.#predict(f, this.mid.get(km), this.fine.get(kf));
  }

  /**
   * The prediction from the histograms of f's keys (read once per request: the gateway predicts every request
   * it routes). The posterior: global -> model/bucket -> tenant/model/bucket, each parent a prior of strength
   * priorStrength, each level's distribution normalised (its parent's where it sums to 0).
   */
  #predict(f: RequestFeatures, mid: Hist | undefined, fine: Hist | undefined): Prediction {
    const g = this.global.n;
    let d0 = 1 / 3, d1 = 1 / 3, d2 = 1 / 3;
    const gs = g[0] + g[1] + g[2];
    if (gs > 0) {
      d0 = g[0] / gs;
      d1 = g[1] / gs;
      d2 = g[2] / gs;
    }
    const s = this.priorStrength;
    for (const h of [mid, fine]) {
      if (!h) continue;
      const v0 = h.n[0] + s * d0, v1 = h.n[1] + s * d1, v2 = h.n[2] + s * d2;
      const sum = v0 + v1 + v2;
      if (sum > 0) {
        d0 = v0 / sum;
        d1 = v1 / sum;
        d2 = v2 / sum;
      }
    }
    let best = 0;
    if (d1 > d0 + 1e-12) best = 1;
    if (d2 > (best === 0 ? d0 : d1) + 1e-12) best = 2;
    return this.#estimate(f, LENGTH_CLASSES[best]!, mid, fine);
  }

  /**
   * The prediction for an output class chosen elsewhere (the simulator's proxy classifier, src/sim/classifier.ts):
   * `cls` capped by max_tokens, its token estimate as predict's (the mean output of that class as observed, capped by
   * max_tokens).
   */
  predictClass(f: RequestFeatures, cls: LengthClass): Prediction {
    const [kf, km] = this.keys(f);
    return this.#estimate(f, cls, this.mid.get(km), this.fine.get(kf));
  }

  /** `cls` capped by max_tokens, and its token estimate: the class's mean at the finest level with evidence, else its default. */
  #estimate(f: RequestFeatures, cls: LengthClass, mid: Hist | undefined, fine: Hist | undefined): Prediction {
    if (f.maxTokens !== undefined && f.maxTokens >= 0) {
      const capCls = outputClassOfTokens(f.maxTokens, this.th);
      if (ci(capCls) < ci(cls)) cls = capCls;
    }
    const i = ci(cls);
    let tokens = this.defTokens[cls];
    if (this.global.n[i] > 0.5) tokens = this.global.tok[i] / this.global.n[i];
    if (mid && mid.n[i] > 0.5) tokens = mid.tok[i] / mid.n[i];
    if (fine && fine.n[i] > 0.5) tokens = fine.tok[i] / fine.n[i];
    if (f.maxTokens !== undefined && f.maxTokens >= 0) tokens = Math.min(tokens, f.maxTokens);
    return { outputClass: cls, tokens: Math.round(tokens) };
  }

  observe(f: RequestFeatures, actualOutputTokens: number): void {
    if (!(actualOutputTokens >= 0)) throw new RangeError(`actual output tokens must be >= 0, got ${actualOutputTokens}`);
    const actual = outputClassOfTokens(actualOutputTokens, this.th);
    const [kf, km] = this.keys(f);
    const hit = this.#predict(f, this.mid.get(km), this.fine.get(kf)).outputClass === actual ? 1 : 0;
    this.total++;
    this.correct += hit;
    this.recentN = this.recentN * this.decay + 1;
    this.recentC = this.recentC * this.decay + hit;
    const i = ci(actual);
    for (const h of [this.global, touch(this.mid, km, this.maxKeys), touch(this.fine, kf, this.maxKeys)]) {
      for (let j = 0; j < 3; j++) {
        h.n[j] *= this.decay;
        h.tok[j] *= this.decay;
      }
      h.n[i] += 1;
      h.tok[i] += actualOutputTokens;
    }
  }

  accuracy(): PredictorAccuracy {
    return {
      total: this.total,
      correct: this.correct,
      rate: this.total ? this.correct / this.total : 0,
      recentRate: this.recentN ? this.recentC / this.recentN : 0,
    };
  }
}

/** get-or-create with LRU order (Map keeps insertion order; re-insert on use, evict the oldest). */
function touch(m: Map<string, Hist>, k: string, max: number): Hist {
  let h = m.get(k);
  if (h) m.delete(k);
  else h = { n: [0, 0, 0], tok: [0, 0, 0] };
  m.set(k, h);
  if (m.size > max) m.delete(m.keys().next().value!);
  return h;
}
