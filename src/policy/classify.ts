/**
 * Request classification (paper Table IV): input class from the known prompt length, output class from
 * the predicted output (tokens, or a class a predictor already chose); intake's classification, and the
 * classification of a request admitted directly, under a cluster's thresholds (SloSettings).
 */
import { LENGTH_CLASSES, requestTypeOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import { classifyLengths, RequestLengthError } from '../model/request-types.ts';
import { DynError } from '../../protocols/errors.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import type { OutputLengthPredictor } from './predictor.ts';
import { DEFAULT_THRESHOLDS, requestSloOf, thresholdsOf, withSlo, type ClassThresholds, type ClassifiedRequest, type RequestSlo, type SloSettings } from './slo.ts';

export { RequestLengthError };

/** Output class of a token count (S < outputUpper.S <= M < outputUpper.M <= L). */
export function outputClassOfTokens(tokens: number, th: ClassThresholds = DEFAULT_THRESHOLDS): LengthClass {
  if (!(tokens >= 0)) throw new RequestLengthError(`output tokens must be >= 0, got ${tokens}`);
  return tokens < th.outputUpper.S ? 'S' : tokens < th.outputUpper.M ? 'M' : 'L';
}

/**
 * The request type of a request with `inputTokens` prompt tokens and a predicted output given either as
 * tokens or as a class. Throws RequestLengthError (retryable: false) for an input above the L bound.
 */
export function classifyRequest(
  inputTokens: number,
  predictedOutputTokensOrClass: number | LengthClass,
  thresholds: ClassThresholds = DEFAULT_THRESHOLDS,
): RequestType {
  if (typeof predictedOutputTokensOrClass === 'number') return classifyLengths(inputTokens, predictedOutputTokensOrClass, thresholds);
  if (!(LENGTH_CLASSES as readonly string[]).includes(predictedOutputTokensOrClass)) {
    throw new RequestLengthError(`unknown output class ${JSON.stringify(predictedOutputTokensOrClass)}`);
  }
  // input class through the same thresholds; output 0 tokens is always class S, so take the input half
  const t = classifyLengths(inputTokens, 0, thresholds);
  return requestTypeOf(t[0] as LengthClass, predictedOutputTokensOrClass);
}

/**
 * The type of a request that reached an instance without one (direct admission): its prompt's input class (a
 * prompt past the L bound is of the L class), its predicted output (else max_tokens) as the output; LL when no
 * class fits.
 */
export function classifyForRecord(req: Pick<InferenceRequest, 'inputTokens' | 'maxTokens' | 'predictedOutputTokens'>, s: Pick<SloSettings, 'thresholds'>): RequestType {
  try {
    return classifyRequest(Math.min(req.inputTokens, s.thresholds.input.L), req.predictedOutputTokens ?? req.maxTokens, thresholdsOf(s));
  } catch {
    return 'LL';
  }
}

/** The request with its classification, or classified here (a request admitted directly: max_tokens as the output). */
export function classified(req: InferenceRequest, s: SloSettings): ClassifiedRequest {
  if (req.type && req.slo && req.ttftDeadlineMs !== undefined) return req as ClassifiedRequest;
  return withSlo(req, req.type ?? classifyForRecord(req, s), s);
}

/**
 * The SLO of a request not yet classified, as withSlo will set it: the TTFT SLO of its prompt's input class
 * (promptTtftSloMs past 8,192 tokens; a prompt past the L bound gets the L class's), and the TBT SLO. The output
 * class (which the predictor decides) changes neither.
 */
export function promptSloOf(inputTokens: number, s: SloSettings): RequestSlo {
  return requestSloOf(classifyRequest(Math.min(inputTokens, s.thresholds.input.L), 'S', thresholdsOf(s)), inputTokens, s);
}

/**
 * Intake's classification (paper Sec. IV-A): the input class from the prompt, the output class from the
 * online predictor (a max_tokens below the S bound is S whatever it predicts). The cluster manager's intake
 * and the gateway's own routing (actors/gateway/router.ts) call it. A request no class fits is invalid
 * (DynError invalid_request, not retryable).
 */
export function classifyIntake(r: InferenceRequest, predictor: OutputLengthPredictor, s: Pick<SloSettings, 'thresholds'>): { type: RequestType; predicted: number } {
  const p = predictor.predict({ inputTokens: r.inputTokens, maxTokens: r.maxTokens, model: r.model, tenant: r.tenant });
  try {
    return { type: classifyRequest(r.inputTokens, r.maxTokens < s.thresholds.output.S ? 'S' : p.outputClass, thresholdsOf(s)), predicted: Math.min(p.tokens, r.maxTokens) };
  } catch (err) {
    throw new DynError('invalid_request', (err as Error).message, { retryable: false });
  }
}
