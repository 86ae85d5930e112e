/**
 * Request-type thresholds and SLOs (paper Table IV). The defaults live in src/model (the profile generator
 * needs them too); re-exported here so policy callers have one import.
 */
export { DEFAULT_THRESHOLDS, DEFAULT_REQUEST_TYPES, TTFT_SLO_MS, TBT_SLO_MS, FLAT_TTFT_SLO_TOKENS, promptTtftSloMs } from '../model/request-types.ts';
export type { ClassThresholds, RequestTypeSpec } from '../model/types.ts';
