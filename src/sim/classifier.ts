/**
 * The simulator's intake classification: each request's true type (from its lengths) and the type the policy sees
 * (its predicted output class; the input class is known). Two predictors:
 * - 'proxy' (default): the paper's BERT proxy classifier, right with probability `accuracy` (0.81), else a
 *   neighbouring output class (its errors are mostly off by one class). Draws from its own random stream only, so
 *   the load template's pre-pass (`templateClass`) reproduces every prediction of the run exactly.
 * - 'online': the live intake's classifier (src/policy/classify.ts classifyIntake, which the gateway's own routing
 *   and the cluster intake run): policy OnlineOutputPredictor over what is known at arrival (prompt tokens,
 *   max_tokens, the model), max_tokens capping the class, learning from each request that completes. max_tokens is
 *   the trace's output length, as `replay` sends it (ignore_eos). Step fidelity only (it learns from completions);
 *   the load template (the forecasts) counts the proxy's classes, the run's own classes being known only as it runs.
 * With each class a predicted output length, tokens (`predTokens`: what the live router and intake put on
 * InferenceRequest.predictedOutputTokens, which a draining instance reads, src/policy/drain-migration.ts): the online
 * predictor's token estimate as classifyIntake takes it; under the proxy, with `predictTokens`, the same predictor's
 * estimate for the proxy's class (OnlineOutputPredictor.predictClass: that class's mean output as observed so far,
 * learning from completions as the online predictor does; its own random stream untouched); the oracle's, the true
 * output. Each capped by max_tokens, the trace's output length.
 */
import { REQUEST_TYPES, inputClassOf, outputClassOf, requestTypeOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import { OnlineOutputPredictor, type RequestFeatures } from '../policy/predictor.ts';
import type { ClassThresholds } from '../policy/slo.ts';
import { classifyCached, rng, type TraceRecord } from './trace.ts';

export type SimPredictor = 'proxy' | 'online';

const OUT_CLASSES: LengthClass[] = ['S', 'M', 'L'];
/** requestTypeOf(inputClassOf(t), oc), tabulated (the REQUEST_TYPES strings themselves: no string built per request). */
const WITH_OUTPUT = Object.fromEntries(
  REQUEST_TYPES.map((t) => [t, Object.fromEntries(OUT_CLASSES.map((oc) => [oc, REQUEST_TYPES.find((x) => x === requestTypeOf(inputClassOf(t), oc))!]))]),
) as Record<RequestType, Record<LengthClass, RequestType>>;

/** requests whose features are kept for the online predictor until they complete (the gateway router's bound). */
const FEATURES_KEPT = 50_000;

export interface SimClassifierOptions {
  predictor?: SimPredictor;
  /** the proxy's accuracy, 0..1; default 0.81. */
  accuracy?: number;
  /** the run's seed (the proxy's stream is seeded from it). */
  seed: number;
  /** the oracle knows every request's true length. */
  oracle: boolean;
  /** the class thresholds (the cluster's, their L input bound the model's context: trace simThresholds). */
  thresholds: ClassThresholds;
  /** the model name (a feature of the online predictor). */
  model: string;
  /** the proxy's classes get a token estimate too (an online predictor learns the classes' mean outputs); the drain migration's input. */
  predictTokens?: boolean;
}

export interface SimClassification {
  type: RequestType;
  pred: RequestType;
  /** the predicted output length, tokens (absent: the proxy without `predictTokens`). */
  predTokens?: number;
}

export class SimClassifier {
  readonly #o: SimClassifierOptions;
  readonly #seed: number;
  readonly #rand: () => number;
  readonly #online?: OnlineOutputPredictor;
  /** the token estimates' predictor: the online one, or the proxy's (`predictTokens`). */
  readonly #tokens?: OnlineOutputPredictor;
  readonly #features = new Map<string, RequestFeatures & { output: number }>();
  #templateRand?: () => number;

  constructor(o: SimClassifierOptions) {
    this.#o = o;
    this.#seed = o.seed + 7919;
    this.#rand = rng(this.#seed);
    if (o.predictor === 'online' && !o.oracle) this.#online = new OnlineOutputPredictor({ thresholds: o.thresholds });
    this.#tokens = this.#online ?? (o.predictTokens && !o.oracle ? new OnlineOutputPredictor({ thresholds: o.thresholds }) : undefined);
  }

  /** The true type and the predicted one of a request (`id`: the online predictor learns when it completes); null: no class fits. */
  classify(r: TraceRecord, id: string): SimClassification | null {
    const type = classifyCached(r.inputTokens, r.outputTokens, this.#o.thresholds);
    if (type === null) return null;
    if (!this.#tokens) {
      const pred = this.#proxy(type, this.#rand);
      return this.#o.oracle && this.#o.predictTokens ? { type, pred, predTokens: Math.max(1, r.outputTokens) } : { type, pred };
    }
    const f = { inputTokens: Math.max(1, r.inputTokens), maxTokens: Math.max(1, r.outputTokens), model: this.#o.model };
    if (this.#features.size >= FEATURES_KEPT) this.#features.delete(this.#features.keys().next().value!);
    this.#features.set(id, { ...f, output: f.maxTokens });
    // classifyIntake's predicted output: the prediction's tokens, capped by max_tokens (predict and predictClass cap them)
    if (this.#online) {
      const p = this.#online.predict(f);
      return { type, pred: WITH_OUTPUT[type][p.outputClass], predTokens: p.tokens };
    }
    const pred = this.#proxy(type, this.#rand);
    return { type, pred, predTokens: this.#tokens.predictClass(f, outputClassOf(pred)).tokens };
  }

  /** The request completed (the live intake learns from the records of completed requests). */
  completed(id: string): void {
    const f = this.#features.get(id);
    if (!f || !this.#tokens) return;
    this.#features.delete(id);
    this.#tokens.observe(f, f.output);
  }

  /** The request ended without completing: nothing to learn from it. */
  forget(id: string): void {
    this.#features.delete(id);
  }

  /** The load template's class of a record (the pre-pass over the trace, in order); null: no class fits. */
  templateClass(r: TraceRecord): RequestType | null {
    const type = classifyCached(r.inputTokens, r.outputTokens, this.#o.thresholds);
    if (type === null) return null;
    return this.#proxy(type, (this.#templateRand ??= rng(this.#seed)));
  }

  /** The proxy's prediction: right with probability `accuracy`, else a neighbouring output class. */
  #proxy(type: RequestType, rand: () => number): RequestType {
    if (this.#o.oracle) return type;
    const acc = this.#o.accuracy ?? 0.81;
    let oc = outputClassOf(type);
    if (rand() >= acc) {
      const i = OUT_CLASSES.indexOf(oc);
      oc = i === 0 ? 'M' : i === 2 ? 'M' : rand() < 0.5 ? 'S' : 'L';
    }
    return WITH_OUTPUT[type][oc];
  }
}
