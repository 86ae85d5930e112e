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
}

export class SimClassifier {
  readonly #o: SimClassifierOptions;
  readonly #seed: number;
  readonly #rand: () => number;
  readonly #online?: OnlineOutputPredictor;
  readonly #features = new Map<string, RequestFeatures & { output: number }>();
  #templateRand?: () => number;

  constructor(o: SimClassifierOptions) {
    this.#o = o;
    this.#seed = o.seed + 7919;
    this.#rand = rng(this.#seed);
    if (o.predictor === 'online' && !o.oracle) this.#online = new OnlineOutputPredictor({ thresholds: o.thresholds });
  }

  /** The true type and the predicted one of a request (`id`: the online predictor learns when it completes); null: no class fits. */
  classify(r: TraceRecord, id: string): { type: RequestType; pred: RequestType } | null {
    const type = classifyCached(r.inputTokens, r.outputTokens, this.#o.thresholds);
    if (type === null) return null;
    if (!this.#online) return { type, pred: this.#proxy(type, this.#rand) };
    const f = { inputTokens: Math.max(1, r.inputTokens), maxTokens: Math.max(1, r.outputTokens), model: this.#o.model };
    if (this.#features.size >= FEATURES_KEPT) this.#features.delete(this.#features.keys().next().value!);
    this.#features.set(id, { ...f, output: f.maxTokens });
    return { type, pred: WITH_OUTPUT[type][this.#online.predict(f).outputClass] };
  }

  /** The request completed (the live intake learns from the records of completed requests). */
  completed(id: string): void {
    const f = this.#features.get(id);
    if (!f || !this.#online) return;
    this.#features.delete(id);
    this.#online.observe(f, f.output);
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
