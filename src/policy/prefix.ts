/**
 * Cache-aware routing (pure): prefer the instance that holds the prompt's prefix in its KV cache, as llm-d's
 * prefix-cache scorer and Dynamo's KV router do. Dynamo's router scores an instance by the prefill it would
 * have to do for this request (blocks not cached there) plus the work already waiting on it; this is the same
 * cost in tokens per GPU: (prompt tokens not cached there + prompt tokens already waiting for prefill) / TP,
 * i.e. the prefill work before this prompt's first token. Only instances the caller found eligible (under
 * their SLO cap) are candidates, so a warm cache never overloads an instance past its SLO.
 */
export interface PrefixCandidate {
  id: string;
  tp: number;
  /** prompt tokens of this request already cached on the instance. */
  cachedPrefixTokens: number;
  /** prompt tokens admitted there and not prefilled yet. */
  pendingPrefillTokens: number;
}

/**
 * The eligible instance with the least prefill work before this prompt's first token, when at least one of
 * them holds part of the prefix; undefined when none does (the caller's load/energy choice stands: with
 * nothing cached anywhere, prefix routing has nothing to add). Ties: more cached tokens, then id.
 */
export function preferPrefixHolder(promptTokens: number, eligible: readonly PrefixCandidate[]): string | undefined {
  let best: PrefixCandidate | undefined;
  let bestCost = Infinity;
  let anyCached = false;
  for (const c of eligible) {
    if (c.cachedPrefixTokens > 0) anyCached = true;
    const cost = (Math.max(0, promptTokens - c.cachedPrefixTokens) + Math.max(0, c.pendingPrefillTokens)) / Math.max(1, c.tp);
    if (!best || cost < bestCost - 1e-9 || (Math.abs(cost - bestCost) <= 1e-9 && (c.cachedPrefixTokens > best.cachedPrefixTokens || (c.cachedPrefixTokens === best.cachedPrefixTokens && c.id < best.id)))) {
      best = c;
      bestCost = cost;
    }
  }
  return anyCached ? best?.id : undefined;
}
