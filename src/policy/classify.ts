/**
 * Request classification (paper Table IV): input class from the known prompt length, output class from
 * the predicted output (tokens, or a class a predictor already chose).
 */
import { LENGTH_CLASSES, requestTypeOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import { classifyLengths, RequestLengthError } from '../model/request-types.ts';
import { DEFAULT_THRESHOLDS, type ClassThresholds } from './slo.ts';

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
