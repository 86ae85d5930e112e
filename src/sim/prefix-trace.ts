/**
 * A synthetic long-context trace with prefix reuse, in the shape of the public Mooncake/Kimi traces (JSONL,
 * `timestamp` in integer ms from 0, `input_length`, `output_length`, `hash_ids`: one id per 512-token block,
 * equal ids = equal prompt up to that block). Generated, not copied: sessions of several turns, each turn's
 * prompt the previous prompt + the previous answer + a new message (so turn k+1 reuses turn k's blocks), and
 * a few system prompts shared by all sessions. Deterministic for a seed.
 */
import { rng } from './trace.ts';

export interface PrefixTraceOptions {
  /** length, s. */
  durationS: number;
  /** new sessions per second (Poisson). */
  sessionsPerS: number;
  seed: number;
  /** tokens per hash block; default 512. */
  blockTokens?: number;
  /** largest prompt + output, tokens; default 126,000 (under a 128k context; a few rows are made to exceed it). */
  maxTokens?: number;
  /** share of requests whose prompt is made longer than `overContextTokens` (to exercise refusal); default 0.01. */
  overContextShare?: number;
  /** default 131,072. */
  overContextTokens?: number;
}

export interface PrefixTraceRow {
  timestamp: number;
  input_length: number;
  output_length: number;
  hash_ids: number[];
}

export function* synthPrefixTrace(o: PrefixTraceOptions): Generator<PrefixTraceRow> {
  const r = rng(o.seed);
  const B = o.blockTokens ?? 512;
  const maxTokens = o.maxTokens ?? 126_000;
  const overShare = o.overContextShare ?? 0.01;
  const overTokens = o.overContextTokens ?? 131_072;
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const exp = (mean: number) => -Math.log(1 - r()) * mean;
  let nextId = 1;
  // 6 shared system prompts of 1-4 blocks (whole blocks: the session's own text starts on a block boundary)
  const systems = Array.from({ length: 6 }, () => Array.from({ length: 1 + Math.floor(r() * 4) }, () => nextId++));
  // turns, generated per session and merged by time
  const rows: PrefixTraceRow[] = [];
  const endMs = o.durationS * 1000;
  for (let t = exp(1000 / o.sessionsPerS); t < endMs; t += exp(1000 / o.sessionsPerS)) {
    const sys = systems[Math.floor(r() * systems.length)];
    const blocks = [...sys]; // full blocks of the session's text so far
    let tail = 0; // tokens after the last full block
    // a document or code base pasted in the first turn: lognormal, median ~2.7k tokens
    let grow = Math.round(Math.exp(7.9 + 1.2 * gauss()));
    const turns = 1 + Math.floor(exp(3));
    let at = t;
    for (let k = 0; k < turns && at < endMs; k++) {
      const msg = grow + Math.round(Math.exp(5 + 0.8 * gauss()));
      grow = 0;
      const total = tail + msg;
      for (let n = 0; n < Math.floor(total / B); n++) blocks.push(nextId++);
      tail = total % B;
      let input = blocks.length * B + tail;
      const output = Math.max(1, Math.min(4096, Math.round(Math.exp(5.6 + 0.8 * gauss()))));
      if (input + output > maxTokens) break; // the session ends at the context (as a client truncating would)
      const ids = tail > 0 ? [...blocks, nextId++] : [...blocks];
      if (r() < overShare) input = overTokens + Math.floor(r() * 8192); // a prompt past the context: refused
      rows.push({ timestamp: Math.round(at), input_length: input, output_length: output, hash_ids: ids });
      // the answer joins the session's text; the user reads and replies after a think time
      const t2 = tail + output;
      for (let n = 0; n < Math.floor(t2 / B); n++) blocks.push(nextId++);
      tail = t2 % B;
      at += 15_000 + exp(45_000);
    }
  }
  rows.sort((a, b) => a.timestamp - b.timestamp);
  yield* rows;
}
