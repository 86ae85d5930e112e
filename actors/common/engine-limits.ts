/**
 * The request limits the cluster's engines run with, from the cluster config: what the instance manager passes to its
 * engine and reports to the gateways with each prompt count (TokenizeReply), and what a gateway counting a prompt
 * itself (emulated engines) reports the same way.
 */
import { MAX_LOGPROBS, MAX_LOGPROBS_CEILING } from '../../protocols/sampling-limits.ts';
import type { ClusterConfig } from './config.ts';

/**
 * vLLM's `--max-logprobs` of the engines: engine.args' own flag where it has one (the args come last on the command
 * line, and the last flag wins), else engine.maxLogprobs, else vLLM's default (20). -1 in args (vLLM: the whole
 * vocabulary) and a value above the wire's bound read as MAX_LOGPROBS_CEILING, the most a request can carry.
 */
export function maxLogprobsOf(engine: Pick<ClusterConfig['engine'], 'args' | 'maxLogprobs'>): number {
  const args = engine.args ?? [];
  let fromArgs: number | undefined;
  args.forEach((a, i) => {
    const v = a === '--max-logprobs' ? args[i + 1] : a.startsWith('--max-logprobs=') ? a.slice('--max-logprobs='.length) : undefined;
    if (v !== undefined && /^-?\d+$/.test(v)) fromArgs = Number(v);
  });
  const n = fromArgs ?? engine.maxLogprobs ?? MAX_LOGPROBS;
  return n < 0 || n > MAX_LOGPROBS_CEILING ? MAX_LOGPROBS_CEILING : n;
}
