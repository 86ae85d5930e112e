/** Public API of the performance and power model (pure; file I/O lives in src/telemetry/profile-io.ts and calib-data-io.ts). */
export * from './types.ts';
export * from './profile-types.ts';
export { MODELS, GPUS, getModelSpec, getGpuSpec, UnknownIdError, kvBytesPerToken, headDimOf, TP_CHOICES, tpDegreesOf } from './catalog.ts';
export { DEFAULT_REQUEST_TYPES, DEFAULT_THRESHOLDS, TTFT_SLO_MS, TBT_SLO_MS, FLAT_TTFT_SLO_TOKENS, promptTtftSloMs, classifyLengths, RequestLengthError } from './request-types.ts';
export { createPerfModel, perfModelOfProfile, engineOfProfile, paramsFor, ModelInputError, type DetailedPerfModel, type PerfModelOptions, type StepBreakdown } from './perf.ts';
export * from './profile.ts';
export { generateProfile, regenerationOptions, steadyState, maxFeasibleLoad, erlangC, atomQuantile, PAPER_CLOCKS_MHZ, SATURATED_MS, type GenerateOptions, type SteadyState } from './generate.ts';
export type { EngineParams, PowerParams, ModelParams } from './params.ts';
export { CALIBRATION } from './calibration.ts';
export { DEFAULT_SCHEDULER, type SchedulerConfig } from './scheduler.ts';
