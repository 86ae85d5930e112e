/**
 * The engine scheduler's budget, shared by the profile generator (src/model/generate.ts) and the batching
 * core the emulator and simulator run (src/engine/core.ts), so a generated profile and the engine it describes
 * schedule alike. Values are vLLM v1's defaults for a serving engine with chunked prefill.
 */
export interface SchedulerConfig {
  /** max tokens per engine step (decodes count 1 each, prompts their prefill tokens); vLLM max_num_batched_tokens. */
  maxNumBatchedTokens: number;
  /** max sequences running at once (decoding or prefilling); vLLM max_num_seqs. */
  maxNumSeqs: number;
}

/** max_num_batched_tokens 8192 tokens/step, max_num_seqs 256 sequences. */
export const DEFAULT_SCHEDULER: Readonly<SchedulerConfig> = Object.freeze({ maxNumBatchedTokens: 8192, maxNumSeqs: 256 });
