/**
 * Which requests a draining instance hands to its pool's peers instead of finishing them itself (request migration
 * used for a scale-in or a re-shard). Pure; the live instance manager (actors/instance-manager/drain-migrate.ts) and
 * the simulator (src/sim/drain-migration.ts) both run legsToMigrate on what each knows of its running requests.
 *
 * A draining instance holds all its GPUs until its last request ends; a request moved to a peer continues there with
 * its prompt and the tokens already sent as the new prompt (the peer prefills them again, the KV cache not being moved)
 * and the rest of its output. A request is moved when its remaining decode, at the TBT it has been getting, is longer
 * than `minRemainingS`: the GPUs it would hold (the whole instance, loaded idle at least) for that long cost more than
 * one prefill of its context on a peer.
 *
 * Its remaining tokens are an estimate (remainingTokens): the instance knows the tokens sent, its max_tokens and the
 * output predictor's estimate made when it was routed (InferenceRequest.predictedOutputTokens), not where it will stop.
 * max_tokens alone is no estimate: a chat request sent without it has the model's remaining context as its limit,
 * thousands of tokens, so a limit-based rule would move nearly every such request at every drain, each paying a
 * prefill of its whole context on a peer, though most end within a few tokens of their prediction. While a request
 * has sent fewer tokens than predicted it is expected to end at its prediction. Past it, the prediction is shown
 * wrong (short), and the request's age is the best evidence left: it is expected to run about as long again as it has
 * (the median residual of a Pareto tail of index 1), capped by what max_tokens leaves. On the Azure traces
 * (data/traces, over all rows) the mean output still to come of the requests past t tokens is 0.9-2.0x t at
 * t = 100-200 on both, 0.4x (conversation) and 0.9x (coding) at 300, 0.2x and 0.6x at 500: the rule is of that size
 * up to 200 tokens and errs long (towards a move) past them. Without a prediction the estimate is the rest of
 * max_tokens. A request without its first token stays: its gateway sends a leg that ended
 * before it started again only within the request's first-token budget (past it, the client would get the error).
 * A request that is already a continuation (moved before, or migrated after a failure) stays: the peer a drain sends
 * it to may be drained next (a re-shard's stop units, one after another), and each move costs a leg of the gateway's
 * migration limit and a prefill.
 */
import { TBT_SLO_MS } from '../model/request-types.ts';

export interface DrainMigrationConfig {
  /** a request whose remaining decode is longer than this moves, s. */
  minRemainingS: number;
}

export interface DrainingRequest {
  id: string;
  /** tokens generated (sent) so far. */
  generated: number;
  /** tokens it is expected to generate still (remainingTokens). */
  remaining: number;
  /** the TBT it has been getting, ms (the instance's step time while it decodes). */
  tbtMs: number;
  /** a continuation already (an earlier leg ended elsewhere): it is not moved again. */
  continued?: boolean;
}

/** The requests to move, longest remaining decode first. */
export function drainMigrations(reqs: readonly DrainingRequest[], cfg: DrainMigrationConfig): string[] {
  return reqs
    .filter((r) => !r.continued && r.remaining > 0 && (r.remaining * r.tbtMs) / 1000 > cfg.minRemainingS)
    .sort((a, b) => b.remaining * b.tbtMs - a.remaining * a.tbtMs || (a.id < b.id ? -1 : 1))
    .map((r) => r.id);
}

/**
 * vLLM's guided-decoding parameters (and response_format other than text): the engine constrains a leg's output from
 * that leg's first token, so a continuation, whose prompt ends with the part of the output already sent, would be
 * constrained from there again (a second JSON value after half of one), not as the rest of the first.
 */
const GUIDED = ['guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'structural_tag', 'structured_outputs'] as const;

/** Whether a request's output is constrained by guided decoding (structured output: a grammar, a JSON schema, a choice). */
export function guided(params: Readonly<Record<string, unknown>> | undefined): boolean {
  if (!params) return false;
  const rf = params.response_format;
  if (rf !== undefined && rf !== null && !(typeof rf === 'object' && (rf as { type?: unknown }).type === 'text')) return true;
  return GUIDED.some((k) => params[k] !== undefined && params[k] !== null);
}

/** Whether a chat request may answer with a tool call (tools given, tool_choice not 'none'): output a continuation cannot carry. */
export function mayCallTools(params: Readonly<Record<string, unknown>> | undefined): boolean {
  return Array.isArray(params?.tools) && params.tools.length > 0 && params.tool_choice !== 'none';
}

/**
 * A request whose stream can continue as a new leg (the gateway's request migration, actors/gateway/legs.ts canMigrate):
 * its prompt a string or chat messages (the text already sent is appended to it), no `echo` (the next leg would echo
 * that text again), no guided decoding (`guided`). A token-id prompt cannot be extended with text: such a leg ended for
 * a drain would end its stream. A request sent without its prompt is read by its `promptForm`.
 */
export function continuable(req: { messages?: unknown; prompt?: unknown; promptForm?: 'text' | 'chat' | 'ids'; params?: Readonly<Record<string, unknown>> }): boolean {
  if (req.params?.echo || guided(req.params)) return false;
  if (req.messages !== undefined) return true;
  if (req.prompt !== undefined) return typeof req.prompt === 'string';
  // a direct request sent without its prompt names the prompt's form (InferenceRequest.promptForm)
  return req.promptForm !== 'ids';
}

/**
 * Whether a stream of which nothing reached its client (no chunk out, no text, none dropped past a migration cap, not a
 * resumed stream's continuation) may start again as the same request on a new leg, continuable or not: the new leg
 * carries nothing of the broken one, so an echo, a token-id prompt or a guided request is re-run as it came
 * (actors/gateway/legs.ts canMigrate).
 */
export function rerunnable(st: { out: number; text: string; keepText: boolean; opaque?: boolean; resumes?: number }): boolean {
  return st.out === 0 && st.text === '' && st.keepText && !st.opaque && !st.resumes;
}

/** A request running on a draining instance, as the instance knows it: legsToMigrate's input. */
export interface RunningLeg {
  id: string;
  /** its first token's time, ms on the instance's clock (none yet: it stays). */
  firstTokenMs?: number;
  /** its own TBT samples so far: their sum, ms, and count. */
  tbtSumMs: number;
  tbtN: number;
  /** tokens it may generate in all (its max_tokens). */
  maxTokens: number;
  /** its predicted output length, tokens (InferenceRequest.predictedOutputTokens); absent: none made (maxTokens decides). */
  predictedTokens?: number;
  /** a continuation already (an earlier leg ended elsewhere). */
  continued: boolean;
  /** its gateway can continue it on a peer: a direct leg (the gateway reads the engine) whose prompt it can extend (continuable). */
  movable: boolean;
}

/**
 * The tokens a request that has sent `generated` of at most `maxTokens` is expected to generate still (the file
 * comment says why): its prediction (capped by maxTokens) less `generated` while it has sent fewer; past its
 * prediction as many again as it has sent, capped by what maxTokens leaves; without a prediction, what maxTokens leaves.
 */
export function remainingTokens(generated: number, maxTokens: number, predictedTokens?: number): number {
  const left = Math.max(0, maxTokens - generated);
  if (predictedTokens === undefined || !(predictedTokens >= 0)) return left;
  const predicted = Math.min(predictedTokens, maxTokens);
  return generated < predicted ? predicted - generated : Math.min(left, generated);
}

/**
 * What drainMigrations reads of each running request: its tokens so far, counted from its first token at its TBT (its
 * own samples' mean when it has any, else the mean of the instance's recent samples `tbtSamplesMs`, else the TBT SLO;
 * at least one more than its samples), those it is expected to generate still (remainingTokens over its prediction and
 * max_tokens). A request without its first token, or one its gateway cannot continue, is left out.
 */
export function drainingRequests(legs: Iterable<RunningLeg>, now: number, tbtSamplesMs: readonly number[]): DrainingRequest[] {
  const fallback = tbtSamplesMs.length ? tbtSamplesMs.reduce((a, b) => a + b, 0) / tbtSamplesMs.length : TBT_SLO_MS;
  const out: DrainingRequest[] = [];
  for (const r of legs) {
    if (!r.movable || r.firstTokenMs === undefined) continue;
    const tbt = r.tbtN > 0 ? r.tbtSumMs / r.tbtN : fallback;
    const generated = Math.max(r.tbtN + 1, 1 + Math.floor(Math.max(0, now - r.firstTokenMs) / Math.max(1, tbt)));
    out.push({ id: r.id, generated, remaining: remainingTokens(generated, r.maxTokens, r.predictedTokens), tbtMs: tbt, continued: r.continued });
  }
  return out;
}

/** The requests a draining instance ends for its peers to continue (drainMigrations over drainingRequests). */
export function legsToMigrate(legs: Iterable<RunningLeg>, now: number, tbtSamplesMs: readonly number[], cfg: DrainMigrationConfig): string[] {
  return drainMigrations(drainingRequests(legs, now, tbtSamplesMs), cfg);
}
