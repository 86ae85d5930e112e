/**
 * The emulated model's output: deterministic filler words (the emulator needs no weights; token counts are what
 * matter for load) and its EOS draw. Prompts are counted with a real tokenizer (./tokenizer.ts).
 */

const WORDS = (
  'the of and to in is was for on that with as by at from it an be this are or which have not has but had ' +
  'energy power clock token batch queue model cluster pool instance epoch load frequency latency engine ' +
  'request stream prefill decode cache memory server policy signal shard profile budget deadline ' +
  'green quiet river stone light cloud north field early water'
).split(' ');

/** 32-bit integer hash (splitmix-style) of three integers; stable across runs and platforms. */
export function hash3(a: number, b: number, c: number): number {
  let h = (a ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (b + 0x7f4a7c15), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13) ^ (c * 0x27d4eb2f), 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** Text of output token `index` of request number `reqNo` under `seed`: one word with a leading space. */
export function tokenText(seed: number, reqNo: number, index: number): string {
  return ' ' + WORDS[hash3(seed, reqNo, index) % WORDS.length];
}

/** Uniform (0,1] draw for request `reqNo` under `seed`, stream `k`. */
export function uniform(seed: number, reqNo: number, k: number): number {
  return (hash3(seed, reqNo, 0x100000 + k) + 1) / 4294967296;
}

/**
 * Output length of a request. With ignore_eos it is exactly maxTokens. Otherwise the stand-in model
 * "emits EOS" after a geometric number of tokens (mean EOS_MEAN_TOKENS), never before minTokens and never
 * past maxTokens, deterministically per (seed, request number).
 */
export const EOS_MEAN_TOKENS = 256;
export function outputLength(seed: number, reqNo: number, maxTokens: number, minTokens: number, ignoreEos: boolean): number {
  if (ignoreEos) return maxTokens;
  const eosAt = Math.ceil(-EOS_MEAN_TOKENS * Math.log(uniform(seed, reqNo, 1)));
  return Math.min(maxTokens, Math.max(minTokens, 1, eosAt));
}
