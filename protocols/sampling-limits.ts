/**
 * vLLM's range rules for the request's sampling parameters, as data: the pinned release's (src/engine/vllm-version.ts)
 * SamplingParams checks (vllm/sampling_params.py), its OpenAI request models' checks
 * (vllm/entrypoints/openai/protocol.py) and its engine's logprobs bound (`--max-logprobs`, default 20; the config's
 * engine.maxLogprobs). The gateway refuses a request that breaks one with vLLM's 400 before classifying or dispatching
 * it (actors/gateway/openai.ts; the logprobs bound once the prompt is counted, as the model's instances report it with
 * the count: actors/gateway/tokenize-routes.ts engineLimitsError), the emulator answers it with the same 400
 * (src/engine/emulator/server.ts), and the wire schema of the parameters (protocols/messages.ts engineParams, compiled
 * by protocols/fast-check.ts) holds the same ranges (the logprobs bound is each engine's own).
 */
import { z } from 'zod';

/** the most alternatives per token a request may ask for without engine.maxLogprobs: vLLM's `--max-logprobs` default. */
export const MAX_LOGPROBS = 20;
/**
 * the largest engine.maxLogprobs (vLLM's `--max-logprobs`) the gateway serves: each streamed token carries that many
 * alternatives (about 50 bytes each) in a TokenChunk under NATS max_payload (1 MiB).
 */
export const MAX_LOGPROBS_CEILING = 1024;
/** 2^63: a seed is a signed 64-bit integer (vLLM's `seed` field, ge/le torch.long's bounds). A JSON number of
 * 2^63 - 1 reads as 2^63 in JavaScript and is refused: the engine would refuse the number the gateway writes. */
const INT64_LIMIT = 2 ** 63;

export interface SamplingRange {
  readonly min: number;
  /** min itself is out of range. */
  readonly minOpen?: boolean;
  readonly max: number;
  readonly maxOpen?: boolean;
  readonly int?: boolean;
  /** vLLM's words, completed with `, got <value>.` */
  readonly says: string;
}

/** Each numeric parameter's accepted values (a value of the right type outside them is vLLM's 400). */
export const SAMPLING_RANGES = {
  temperature: { min: 0, max: Infinity, says: 'temperature must be non-negative' },
  top_p: { min: 0, minOpen: true, max: 1, says: 'top_p must be in (0, 1]' },
  // -1 and 0 both disable it
  top_k: { min: -1, max: Infinity, int: true, says: 'top_k must be 0 (disable), or at least 1' },
  min_p: { min: 0, max: 1, says: 'min_p must be in [0, 1]' },
  presence_penalty: { min: -2, max: 2, says: 'presence_penalty must be in [-2, 2]' },
  frequency_penalty: { min: -2, max: 2, says: 'frequency_penalty must be in [-2, 2]' },
  repetition_penalty: { min: 0, minOpen: true, max: Infinity, says: 'repetition_penalty must be greater than zero' },
  seed: { min: -INT64_LIMIT, max: INT64_LIMIT, maxOpen: true, int: true, says: 'seed must be a signed 64-bit integer, in [-9223372036854775808, 9223372036854775807]' },
  // completions: alternatives per token; chat: top_logprobs (with logprobs: true). vLLM's own messages: samplingError.
  // bounded by the engine's --max-logprobs (logprobsLimitError); top_logprobs -1: the whole vocabulary
  logprobs: { min: 0, max: Infinity, int: true, says: 'logprobs must be a positive value' },
  top_logprobs: { min: -1, max: Infinity, int: true, says: 'top_logprobs must be a positive value or -1' },
} as const satisfies Record<string, SamplingRange>;
export type RangedParam = keyof typeof SAMPLING_RANGES;

export function inRange(r: SamplingRange, x: number): boolean {
  if (Number.isNaN(x) || (r.int === true && !Number.isInteger(x))) return false;
  if (r.minOpen ? x <= r.min : x < r.min) return false;
  return r.maxOpen ? x < r.max : x <= r.max;
}

/** The zod schema of a ranged parameter (compiled by fast-check: int, finite and bounds are checks it knows). */
export function rangedNumber(name: RangedParam): z.ZodNumber {
  const r: SamplingRange = SAMPLING_RANGES[name];
  let s = r.int === true ? z.number().int() : z.number().finite();
  if (r.min !== -Infinity) s = r.minOpen ? s.gt(r.min) : s.gte(r.min);
  if (r.max !== Infinity) s = r.maxOpen ? s.lt(r.max) : s.lte(r.max);
  return s;
}

export interface SamplingRefusal {
  param: string;
  message: string;
}

const got = (x: unknown): string => (typeof x === 'number' ? String(x) : JSON.stringify(x));
/** vLLM's words (its engine's processor) for more alternatives per token than `--max-logprobs`. */
export const tooManyLogprobs = (n: number, max: number): string => `Requested sample logprobs of ${n}, which is greater than max allowed: ${max}`;
const RANGED_ORDER = Object.keys(SAMPLING_RANGES).filter((k) => k !== 'logprobs' && k !== 'top_logprobs') as RangedParam[];

/**
 * The first of vLLM's sampling rules that the request's fields break, with vLLM's message, or undefined. `body` is
 * the request body (or its engine parameters): a ranged field that is present (not null) must be a number in its
 * range; logprobs follow the API's rules (completions: a non-negative integer; chat: top_logprobs needs
 * `logprobs: true`) and, with `maxLogprobs` (the engine's `--max-logprobs`), its bound
 * (logprobsLimitError); no stop string may be empty.
 */
export function samplingError(kind: 'completion' | 'chat', body: Record<string, unknown>, maxLogprobs?: number): SamplingRefusal | undefined {
  for (const k of RANGED_ORDER) {
    const x = body[k];
    if (x === undefined || x === null) continue;
    const r: SamplingRange = SAMPLING_RANGES[k];
    if (typeof x !== 'number' || !inRange(r, x)) return { param: k, message: `${r.says}, got ${got(x)}.` };
  }
  const lp = body.logprobs;
  if (kind === 'completion') {
    if (lp !== undefined && lp !== null && (typeof lp !== 'number' || !Number.isInteger(lp))) return { param: 'logprobs', message: `\`logprobs\` must be an integer on /v1/completions, got ${got(lp)}.` };
    if (typeof lp === 'number' && lp < 0) return { param: 'logprobs', message: '`logprobs` must be a positive value.' };
  } else {
    const top = body.top_logprobs;
    if (top !== undefined && top !== null) {
      if (typeof top !== 'number' || !Number.isInteger(top)) return { param: 'top_logprobs', message: `\`top_logprobs\` must be an integer, got ${got(top)}.` };
      if (top < -1) return { param: 'top_logprobs', message: '`top_logprobs` must be a positive value or -1.' };
      if (top !== 0 && lp !== true) return { param: 'top_logprobs', message: 'when using `top_logprobs`, `logprobs` must be set to true.' };
    }
  }
  const over = maxLogprobs === undefined ? undefined : logprobsLimitError(body, maxLogprobs);
  if (over) return over;
  const stop = body.stop;
  if (stop === '' || (Array.isArray(stop) && stop.includes(''))) return { param: 'stop', message: 'stop cannot contain an empty string.' };
  return undefined;
}

/**
 * The engine's logprobs bound (vLLM's processor, after the request's own checks): more alternatives per token than
 * `maxLogprobs` (completions: logprobs; chat: top_logprobs, -1 the whole vocabulary) is vLLM's 400 naming the limit.
 * `params`: the engine parameters of a request samplingError passed.
 */
export function logprobsLimitError(params: { logprobs?: unknown; top_logprobs?: unknown } | undefined, maxLogprobs: number): SamplingRefusal | undefined {
  const lp = params?.logprobs;
  if (typeof lp === 'number' && lp > maxLogprobs) return { param: 'logprobs', message: tooManyLogprobs(lp, maxLogprobs) };
  const top = params?.top_logprobs;
  if (top === -1) return { param: 'top_logprobs', message: `${tooManyLogprobs(-1, maxLogprobs)} (-1: the whole vocabulary)` };
  if (typeof top === 'number' && top > maxLogprobs) return { param: 'top_logprobs', message: tooManyLogprobs(top, maxLogprobs) };
  return undefined;
}
