/**
 * Contract of the continuous-batching core (implemented in src/engine/core.ts). The core is pure and
 * clock-driven: it never reads wall time and never sets timers. The emulator drives it with real timers
 * (scaled by --time-scale); the simulator drives many of them on a virtual clock.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { PerfModel } from '../model/types.ts';

export interface CoreRequest {
  id: string;
  /** arrival time on the driver's clock, ms. */
  arrivalMs: number;
  promptTokens: number;
  /** tokens this request will generate (the emulator draws it from max_tokens / ignore_eos; the sim from the trace). */
  outputTokens: number;
  type?: RequestType;
  /** absolute deadline for the first token on the driver's clock, ms (for emergency reordering). */
  ttftDeadlineMs?: number;
  /** prefix-block hashes of the prompt (one per CoreOptions.prefixCacheBlockTokens tokens); used when the core caches prefixes. */
  prefixHashes?: readonly number[];
}

export interface CoreOptions {
  perf: PerfModel;
  tp: number;
  clockMhz: number;
  /** vLLM max_num_seqs; default 256. */
  maxNumSeqs?: number;
  /** vLLM max_num_batched_tokens (chunked prefill budget per step); default 8192. */
  maxNumBatchedTokens?: number;
  /**
   * vLLM long_prefill_token_threshold: a request with more prompt tokens left than this gets at most this many
   * per step (0 = off, vLLM's default), so a long prompt's chunks leave budget for short prompts arriving
   * behind it instead of taking whole steps. Default 0.
   */
  longPrefillTokenThreshold?: number;
  /** KV capacity in tokens; default perf.kvCapacityTokens(tp). */
  kvCapacityTokens?: number;
  /** bound of the waiting queue; submit() beyond it throws QueueFullError. default 4096. */
  maxWaiting?: number;
  /**
   * automatic prefix caching (vLLM enable_prefix_caching) over requests' `prefixHashes`, blocks of this many
   * tokens, an LRU sized from the KV capacity (src/engine/prefix-cache.ts). Default 0: off.
   */
  prefixCacheBlockTokens?: number;
  /** counters the prefix cache adds its hit and looked-up prompt tokens to (shared across cores by a simulator). */
  prefixCacheCounters?: { hitTokens: number; lookupTokens: number };
}

/**
 * What happened to requests during one step; times are the step's end time. `first_token` is the output
 * token of index 0; `token` events carry indexes >= 1 (one event per generated token, so a consumer that
 * streams text emits one token for `first_token` and one per `token`). `preempted` requests went back to
 * the front of the waiting queue (vLLM recompute) and re-emit no tokens they already produced.
 */
export type CoreEvent =
  | { kind: 'first_token'; id: string; atMs: number }
  | { kind: 'token'; id: string; atMs: number; index: number }
  | { kind: 'finished'; id: string; atMs: number; promptTokens: number; outputTokens: number; energyJ: number }
  | { kind: 'preempted'; id: string; atMs: number };

export interface StepResult {
  startMs: number;
  durationMs: number;
  /** instance power (all its GPUs) during the step, W. */
  powerW: number;
  prefillTokens: number;
  decodeSeqs: number;
  events: CoreEvent[];
}

export interface CoreStats {
  waiting: number;
  running: number;
  kvUsedTokens: number;
  kvCapacityTokens: number;
  /** cumulative energy of the instance since creation, J (steps + idle time advanced via idleUntil). */
  energyJ: number;
  /** the part of energyJ drawn idle (no step running: idle power at the clock of the time, or asleep), J. */
  idleEnergyJ: number;
  clockMhz: number;
  tp: number;
}

export interface BatchingCoreApi {
  submit(req: CoreRequest): void;
  /** Remove a request (client gone); true if it was known. */
  cancel(id: string): boolean;
  /** Form the next batch starting at nowMs and execute it; null when there is nothing to run. */
  step(nowMs: number): StepResult | null;
  /** Account idle energy from the last activity up to nowMs (model-loaded idle power). */
  idleUntil(nowMs: number): void;
  setClock(mhz: number): void;
  /** Not-yet-started requests, in queue order. */
  waiting(): readonly CoreRequest[];
  /** Take not-yet-started requests out (emergency move to a peer). */
  takeWaiting(ids: readonly string[]): CoreRequest[];
  /** Reorder the waiting queue (emergency step 1: earliest deadline first). */
  reorderWaiting(compare: (a: CoreRequest, b: CoreRequest) => number): void;
  stats(): CoreStats;
}
