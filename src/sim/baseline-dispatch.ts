/**
 * The paper's baselines' dispatch (single-pool, multi-pool, scale-*: `SimOptions.dispatch` 'least-loaded'), which
 * no live manager runs: the live pool leader dispatches with policy dispatchRequest through its machine
 * (./pool-leader.ts). Least outstanding work per GPU, (running + 2 x queued) / TP, ties to the larger TP, among
 * the instances under their SLO throughput whose KV cache holds the request; at capacity, the least outstanding
 * requests per GPU.
 */
import type { BatchingCore } from '../engine/core.ts';

export interface BaselineInstance {
  id: string;
  tp: number;
  state: 'starting' | 'active' | 'draining' | 'stopping' | 'stopped';
  core?: BatchingCore;
  outstanding: number;
  brain?: { s: { queue: readonly unknown[] } };
}

/** An active instance with an engine whose KV cache holds `tokens`. */
export const canServe = (i: BaselineInstance, tokens: number): boolean => i.state === 'active' && !!i.core && i.core.canHold(tokens);

/**
 * Least outstanding work per GPU among the instances that can serve the request and are `underCap`; `prefer`
 * (cache-aware routing) may name one of them instead. Null when none.
 */
export function leastLoadedUnderCap<I extends BaselineInstance>(instances: readonly I[], tokens: number, underCap: (i: I) => boolean, prefer?: (eligible: I[]) => string | undefined): I | null {
  const eligible: I[] = [];
  let best: I | null = null;
  let bestScore = Infinity;
  for (const i of instances) {
    if (!canServe(i, tokens) || !underCap(i)) continue;
    const s = i.core!.stats();
    eligible.push(i);
    const score = (s.running + 2 * (s.waiting + (i.brain?.s.queue.length ?? 0))) / i.tp;
    if (score < bestScore || (score === bestScore && best !== null && i.tp > best.tp)) {
      bestScore = score;
      best = i;
    }
  }
  const id = eligible.length && prefer ? prefer(eligible) : undefined;
  return (id !== undefined ? eligible.find((i) => i.id === id) : undefined) ?? best;
}

/** At capacity: the instance with the least (outstanding + 1) / TP among those that can serve the request, null when none. */
export function leastOutstanding<I extends BaselineInstance>(instances: Iterable<I>, tokens: number): I | null {
  let best: I | null = null;
  let bs = Infinity;
  for (const i of instances) {
    if (!canServe(i, tokens)) continue;
    const s = (i.outstanding + 1) / i.tp;
    if (s < bs) {
      bs = s;
      best = i;
    }
  }
  return best;
}
