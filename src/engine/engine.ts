/**
 * The engine interface the instance manager codes against. One implementation (VllmEngine) manages any
 * process that speaks vLLM's OpenAI-compatible HTTP API: `vllm serve` on GPUs, or our emulator
 * (`dynamollm engine-emulator`), so the instance manager's code path is identical in both cases.
 */
import type { EventEmitter } from 'node:events';
import type { EngineMetrics } from './metrics-parse.ts';
import type { TokenChunk } from '../../protocols/index.ts';

export type { EngineMetrics, Histogram } from './metrics-parse.ts';

/**
 * Lifecycle: created -> starting -> ready <-> sleeping; ready -> restarting (after a crash) -> ready;
 * any -> stopping -> stopped; failed when a start is refused or the restart budget is spent.
 */
export type EngineState = 'created' | 'starting' | 'ready' | 'sleeping' | 'restarting' | 'stopping' | 'stopped' | 'failed';

/** A chat message as the client sent it (content: text, content parts, or null); other fields pass through. */
export interface ChatMessage {
  role: string;
  content?: string | (string | Record<string, unknown>)[] | null;
  [field: string]: unknown;
}

export interface EngineCompletionRequest {
  /** served model name (vLLM's `model` field). */
  model: string;
  /** prompt text, or token ids (vLLM accepts both); ignored when `chat` is given. */
  prompt?: string | number[];
  /** chat messages: when set, /v1/chat/completions is used. */
  chat?: ChatMessage[];
  /** maximum tokens to generate (vLLM max_tokens). */
  maxTokens: number;
  /** tokens to generate before EOS may stop the request (vLLM min_tokens); default 0. */
  minTokens?: number;
  /** keep generating past EOS up to maxTokens (vLLM ignore_eos), for exact output lengths. */
  ignoreEos?: boolean;
  temperature?: number;
  /**
   * every other OpenAI/vLLM request parameter (vLLM's names: stop, seed, logprobs, tools, response_format,
   * priority...), sent to the engine unchanged.
   */
  params?: Record<string, unknown>;
  /** engine-side request id (vLLM echoes it in the X-Request-Id header); for logs. */
  requestId?: string;
  /** total deadline of the call, ms; default EngineConfig.requestTimeoutMs (600 000). */
  timeoutMs?: number;
  /**
   * the stream's idle deadlines, ms (src/policy/engine-liveness.ts engineIdleBounds): no byte from the engine for
   * `firstMs` before the first token, or `nextMs` after it, ends the call with EngineStalledError. Absent: none.
   */
  idle?: { firstMs: number; nextMs: number };
  /**
   * ask for the usage so far on every event (vLLM's stream_options.continuous_usage_stats): the exact count of the
   * tokens made when a stream breaks, whatever each event holds (several tokens with --stream-interval, none while the
   * detokenizer holds text back).
   */
  continuousUsage?: boolean;
}

export interface EngineTokenizeRequest {
  model: string;
  prompt?: string | number[];
  chat?: ChatMessage[];
  /** vLLM's tokenize options (add_special_tokens, add_generation_prompt, tools, chat_template...). */
  params?: Record<string, unknown>;
  returnTokenStrs?: boolean;
}

export interface EngineTokenizeResult {
  count: number;
  maxModelLen: number;
  tokens: number[];
  tokenStrs?: string[];
}

export interface EngineUsage {
  promptTokens: number;
  completionTokens: number;
  /** modelled energy of the request, J (the emulator's non-standard `energy_joules`); absent on vLLM. */
  energyJoules?: number;
}

export interface EngineChunk {
  /** text of this chunk (one token in vLLM's and the emulator's streaming); '' for the usage-only chunk. */
  text: string;
  /** index of this chunk's first token in the output, counted by the client (0-based). */
  tokenIndex: number;
  /**
   * tokens in `text` when the engine sent several in one event (the emulator's `--stream-interval`, which
   * then reports them); absent: one token if `text` is not empty. A real vLLM with --stream-interval > 1
   * does not say how many tokens an event holds: its events count one each, its final usage is exact.
   */
  tokens?: number;
  /** with `tokens`: when the engine produced each token, ms after the first of them (modelled engine time). */
  tokenOffsetsMs?: number[];
  /** set on the last token's chunk: 'stop' | 'length' | 'tool_calls' ... as the engine reports it. */
  finishReason?: string;
  /** with finishReason: vLLM's stop_reason (the stop string or token id that ended the output), or null. */
  stopReason?: string | number | null;
  /** the event's choice.logprobs, as the engine sent it. */
  logprobs?: Record<string, unknown>;
  /** the event's delta.tool_calls (chat), as the engine sent them. */
  toolCalls?: Record<string, unknown>[];
  /** the event's delta.reasoning_content (chat, with a reasoning parser). */
  reasoning?: string;
  /** set on the final usage chunk, and on an event parsed in full that carries the usage so far (continuous usage). */
  usage?: EngineUsage;
  /**
   * a text event's usage so far as the engine sent it (JSON, unparsed: sse-event.ts continuousUsage reads it), when the
   * request asked for continuous usage (EngineCompletionRequest.continuousUsage) and the event took the fast path.
   */
  usageJson?: string;
}

export interface EngineExitInfo {
  code: number | null;
  signal: string | null;
  /** true when we asked it to stop (stop()), false for a crash. */
  expected: boolean;
}

export interface EngineLogLine {
  stream: 'stdout' | 'stderr';
  line: string;
  atMs: number;
}

export interface EngineEvents {
  exit: [EngineExitInfo];
  crash: [EngineExitInfo];
  /** a crashed engine is healthy again; attempt counts restarts since the last stable period. */
  restarted: [{ attempt: number }];
  /** the restart budget is spent; the engine stays 'failed'. */
  failed: [Error];
  log: [EngineLogLine];
}

export interface Engine extends EventEmitter<EngineEvents> {
  readonly state: EngineState;
  /** http://host:port of the engine; valid after start(). */
  readonly baseUrl: string;
  /** Spawn the process and wait until healthy (EngineStartError on refusal or health deadline). */
  start(): Promise<void>;
  /** Poll /health until 200 or the deadline (ms from now). */
  waitHealthy(deadlineMs: number): Promise<void>;
  /** Stream a completion; throws EngineCrashedError if the process dies mid-stream. */
  completion(req: EngineCompletionRequest, signal?: AbortSignal): AsyncIterable<EngineChunk>;
  /** vLLM's /tokenize: the prompt's token ids with the engine's tokenizer (chat: the chat template applied). */
  tokenize(req: EngineTokenizeRequest): Promise<EngineTokenizeResult>;
  /** vLLM's /detokenize. */
  detokenize(tokens: number[]): Promise<string>;
  /** Scrape and parse /metrics (MetricsParseError on bad text). */
  metrics(): Promise<EngineMetrics>;
  /** vLLM v1's prefix-cache counters (tokens looked up, found) from /metrics, undefined when not exposed; only their lines are parsed (MetricsParseError on a bad one). */
  prefixCache(): Promise<{ queries: number; hits: number } | undefined>;
  /** vLLM sleep mode (level 1: offload weights, drop KV). Requires enableSleep. */
  sleep(level?: 1 | 2): Promise<void>;
  wakeUp(): Promise<void>;
  isSleeping(): Promise<boolean>;
  /** GET /health within `timeoutMs`: true on 200, false on anything else (an error, the deadline). */
  probeHealth(timeoutMs: number): Promise<boolean>;
  /** SIGKILL the process (a hung engine): its exit is a crash, restarted as one ('crash', then 'restarted'). */
  killHung(): void;
  /** SIGTERM, then SIGKILL after graceMs (default 10 000). Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** The last captured log lines of the process (bounded ring buffer). */
  logs(): readonly string[];
}

export interface RestartPolicy {
  /** restarts allowed within windowMs before the engine is declared failed; default 5. */
  maxRestarts: number;
  /** window of the restart budget, ms; default 600 000. */
  windowMs: number;
  /** first backoff, ms; default 500; doubles per consecutive restart up to maxBackoffMs. */
  initialBackoffMs: number;
  /** default 30 000 ms. */
  maxBackoffMs: number;
}

export interface EngineConfig {
  kind: 'vllm' | 'emulator';
  /** model: for vllm the HF name passed to `vllm serve`; for the emulator a model id known to src/model (e.g. 'llama2-70b'). */
  model: string;
  /** GPU id for the emulator's performance model ('h100'); default 'h100'. */
  gpu?: string;
  /** tensor parallelism degree. */
  tp: number;
  /** physical GPU indexes, exported as CUDA_VISIBLE_DEVICES. */
  gpuIds: number[];
  /** HTTP port; 0 lets the process pick one (the emulator prints it; vllm needs a real port). */
  port: number;
  /** host the engine listens on / we connect to; default 127.0.0.1. */
  host?: string;
  /** command to spawn instead of the default (`vllm`, or `node bin/dynamollm.js` for the emulator). */
  command?: string;
  /** replaces the default arguments entirely when given. */
  args?: string[];
  /** appended to the default arguments. */
  extraArgs?: string[];
  /** extra environment for the process (merged over process.env). */
  env?: Record<string, string>;
  /** served model name (vLLM --served-model-name); default: model. */
  servedModelName?: string;
  /** emulator only: speed-up factor of wall time; default 1. */
  timeScale?: number;
  /**
   * emulator only: the performance model's fitted engine generation (src/model/calibration.ts); the instance
   * manager passes its profile's (engineOfProfile), so the emulated engine is the model the profile came from.
   * Default: the emulator's default.
   */
  calibrationEngine?: string;
  /** emulator only: modelled weight-loading delay, ms; default 0. */
  startupDelayMs?: number;
  /** emulator only: PRNG seed; default 1. */
  seed?: number;
  /** emulator only: steps take no wall time. */
  zeroDelay?: boolean;
  /**
   * vLLM's `--stream-interval` (tokens per streamed event after the first; vLLM PR #27869), passed to both
   * kinds when > 1; default 1. The emulator's multi-token events say how many tokens they hold and when each
   * was produced; a real vLLM's do not (see EngineChunk.tokens).
   */
  streamInterval?: number;
  /**
   * the engine's scheduler budget (vLLM `--max-num-batched-tokens` / `--max-num-seqs`, chunked prefill below
   * the prompt length), passed to both kinds when given: the profile the controllers decide with records the
   * budget it describes (Profile.scheduler), and the engine must run with the same. Default: the engine's own.
   */
  scheduler?: { maxNumBatchedTokens: number; maxNumSeqs: number };
  /**
   * automatic prefix caching (both kinds): true passes `--enable-prefix-caching`, false `--no-enable-prefix-caching`
   * (vLLM) or nothing (the emulator, off by default); absent: the engine's own default (vLLM v1: on; emulator: off).
   */
  prefixCaching?: boolean;
  /** vLLM `--long-prefill-token-threshold` (both kinds) when > 0: a long prompt takes at most this many tokens per step. */
  longPrefillTokenThreshold?: number;
  /** vLLM `--max-logprobs` (both kinds) when given: most alternatives per token a request may ask for; absent: the engine's default, 20. */
  maxLogprobs?: number;
  /** deadline for /health after spawn, ms (a real 70B instance takes minutes). */
  healthDeadlineMs: number;
  /** pass --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1, and allow sleep()/wakeUp(). */
  enableSleep?: boolean;
  /** restart crashed engines; default true. */
  autoRestart?: boolean;
  restart?: Partial<RestartPolicy>;
  /** default total deadline of a completion, ms; default 600 000. */
  requestTimeoutMs?: number;
  /** deadline of /metrics, /health probes and admin calls, ms; default 5 000. */
  probeTimeoutMs?: number;
  /** captured log lines kept; default 500. */
  logLines?: number;
  /**
   * the engine's API key, given to the process as VLLM_API_KEY (never on its command line): vLLM and the
   * emulator then refuse /v1 calls without `Authorization: Bearer <key>`. The instance manager makes one per
   * engine and hands it only to the gateway it grants a request to.
   */
  apiKey?: string;
}

/** The parts of an engine event besides text that the client must get (logprobs, tool calls, reasoning), or null. */
export function chunkExtras(ch: EngineChunk): Pick<TokenChunk, 'logprobs' | 'toolCalls' | 'reasoning'> | null {
  if (!ch.logprobs && !ch.toolCalls && ch.reasoning === undefined) return null;
  const x: Pick<TokenChunk, 'logprobs' | 'toolCalls' | 'reasoning'> = {};
  if (ch.logprobs) x.logprobs = ch.logprobs;
  if (ch.toolCalls) x.toolCalls = ch.toolCalls;
  if (ch.reasoning !== undefined) x.reasoning = ch.reasoning;
  return x;
}
