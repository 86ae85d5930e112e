import type { Profile } from '../model/profile-types.ts';
import { perfModelOfProfile } from '../model/perf.ts';

/**
 * Cache-aware routing (pure): prefer the instance that holds the prompt's prefix in its KV cache, as llm-d's
 * prefix-cache scorer and Dynamo's KV router do. Dynamo's router scores an instance by the prefill it would
 * have to do for this request (blocks not cached there) plus the work already waiting on it; this is the same
 * cost in tokens per GPU: (prompt tokens not cached there + prompt tokens already waiting for prefill that its
 * cache will not serve) / TP, i.e. the prefill work before this prompt's first token. Only instances the caller
 * found eligible (under their SLO cap) are candidates, so a warm cache never overloads an instance past its SLO.
 */
export interface PrefixCandidate {
  id: string;
  tp: number;
  /** prompt tokens of this request already cached on the instance. */
  cachedPrefixTokens: number;
  /** prompt tokens admitted there and not prefilled yet, whole prompts (InstanceStatus.pendingPrefillTokens). */
  pendingPrefillTokens: number;
  /**
   * the share of those pending tokens its prefix cache is expected to serve: the share of the prompt tokens it
   * looked up that its cache served so far (its engine's counters, prefixHitShare), 0..1; default 0. A holder's
   * queue is mostly the next turns of the sessions whose prefixes it holds: counted whole, a busy holder would
   * lose every turn to an idle instance that must prefill the whole prompt again.
   */
  cachedShare?: number;
}

/** hit / lookup of an engine's prefix-cache counters (vLLM's prefix_cache_hits / _queries), 0 without lookups. */
export function prefixHitShare(c: { lookup: number; hit: number } | undefined): number {
  return c && c.lookup > 0 ? Math.min(1, Math.max(0, c.hit / c.lookup)) : 0;
}

/** The prefill work before this prompt's first token on a candidate, in prompt tokens per GPU. */
export function prefillBeforeFirstToken(promptTokens: number, c: PrefixCandidate): number {
  const pending = Math.max(0, c.pendingPrefillTokens) * (1 - Math.min(1, Math.max(0, c.cachedShare ?? 0)));
  return (Math.max(0, promptTokens - c.cachedPrefixTokens) + pending) / Math.max(1, c.tp);
}

/**
 * The eligible instance with the least prefill work before this prompt's first token, when at least one of
 * them holds part of the prefix; undefined when none does (the caller's load/energy choice stands: with
 * nothing cached anywhere, prefix routing has nothing to add). Ties: more cached tokens, then id. The balance
 * between instances is the pending term: a holder whose uncached backlog costs more than its cache saves loses
 * to a less loaded instance, which then holds the prefix too.
 */
export function preferPrefixHolder(promptTokens: number, eligible: readonly PrefixCandidate[]): string | undefined {
  let best: PrefixCandidate | undefined;
  let bestCost = Infinity;
  let anyCached = false;
  for (const c of eligible) {
    if (c.cachedPrefixTokens > 0) anyCached = true;
    const cost = prefillBeforeFirstToken(promptTokens, c);
    if (!best || cost < bestCost - 1e-9 || (Math.abs(cost - bestCost) <= 1e-9 && (c.cachedPrefixTokens > best.cachedPrefixTokens || (c.cachedPrefixTokens === best.cachedPrefixTokens && c.id < best.id)))) {
      best = c;
      bestCost = cost;
    }
  }
  return anyCached ? best?.id : undefined;
}

/**
 * Approximate prefix matching where requests carry no block hashes (live requests: the gateway sees the prompt's
 * text, not the engine's KV blocks), as llm-d's approximate prefix-cache scorer does: the prompt is cut into
 * fixed-size chunks, each chunk's hash is the running hash of the whole prefix up to its end (so equal hashes mean
 * equal prefixes), and the router remembers, per instance, the chunk hashes of the prompts it sent there. The
 * leading chunks an instance holds estimate the prompt tokens its engine has cached; preferPrefixHolder then picks
 * as it does on the simulator's block hashes.
 */
export const PREFIX_CHUNK_CHARS = 256;
/** Token ids per chunk of a prompt given as token ids (~4 characters a token). */
export const PREFIX_CHUNK_TOKENS = 64;
/** Chunks hashed per prompt at most (its first 256k characters). */
export const MAX_PREFIX_CHUNKS = 1024;

type PromptLike = { prompt?: string | readonly number[] | undefined; messages?: readonly { role: string; content?: unknown }[] | undefined };

/** The prompt's chunk hashes (whole chunks only, at most MAX_PREFIX_CHUNKS) and the characters (or token ids) they cover of its length. */
export function promptChunkHashes(req: PromptLike): { hashes: number[]; units: number } {
  let h = 0x811c9dc5;
  const hashes: number[] = [];
  if (Array.isArray(req.prompt)) {
    const ids = req.prompt as readonly number[];
    for (let i = 0; i < ids.length && hashes.length < MAX_PREFIX_CHUNKS; i++) {
      h = Math.imul(h ^ (ids[i]! & 0xffff), 16777619) >>> 0;
      h = Math.imul(h ^ (ids[i]! >>> 16), 16777619) >>> 0;
      if ((i + 1) % PREFIX_CHUNK_TOKENS === 0) hashes.push(h);
    }
    return { hashes, units: ids.length };
  }
  const text = typeof req.prompt === 'string' ? req.prompt : (req.messages ?? []).map((m) => `<${m.role}>${typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? '')}`).join('\n');
  for (let i = 0; i < text.length && hashes.length < MAX_PREFIX_CHUNKS; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
    if ((i + 1) % PREFIX_CHUNK_CHARS === 0) hashes.push(h);
  }
  return { hashes, units: text.length };
}

/**
 * Per instance, a bounded LRU of the chunk hashes of the prompts routed there (a stand-in for its engine's prefix
 * cache, which the router cannot see): at most `perInstance` hashes each (16,384 chunks: ~4M characters, ~1M
 * tokens), fewer where the caller passes the chunks the instance's KV cache holds (record's `maxChunks`: an
 * engine evicts what does not fit, and a router that remembers more sends turns to an instance for a prefix it
 * no longer holds), and `maxInstances` instances (the least recently routed one forgotten first).
 */
export class RoutedPrefixes {
  private readonly m = new Map<string, Map<number, true>>();
  constructor(readonly perInstance = 16_384, readonly maxInstances = 4096) {}

  /** Leading chunks of `hashes` the instance was sent. */
  matched(id: string, hashes: readonly number[]): number {
    const set = this.m.get(id);
    if (!set) return 0;
    let n = 0;
    while (n < hashes.length && set.has(hashes[n]!)) n++;
    return n;
  }

  /**
   * The instance was sent a prompt with these chunks: they become its most recent, the oldest past the bound
   * (`perInstance`, or `maxChunks` when lower: what its KV cache holds) are dropped.
   */
  record(id: string, hashes: readonly number[], maxChunks = this.perInstance): void {
    const bound = Math.max(0, Math.min(this.perInstance, Math.floor(maxChunks)));
    if (!hashes.length) return;
    let set = this.m.get(id);
    if (set) this.m.delete(id);
    else set = new Map();
    this.m.set(id, set);
    for (const x of hashes) {
      set.delete(x);
      set.set(x, true);
    }
    for (const k of set.keys()) {
      if (set.size <= bound) break;
      set.delete(k);
    }
    for (const k of this.m.keys()) {
      if (this.m.size <= this.maxInstances) break;
      this.m.delete(k);
    }
  }

  forget(id: string): void {
    this.m.delete(id);
  }
}

/**
 * Prompt chunks of `tokensPerChunk` tokens an instance of `tp` GPUs holds in its KV cache (src/model's capacity
 * of the profile's model on its GPU, what the emulator's and the simulator's prefix caches are sized from);
 * undefined when the model cannot say (a model or TP outside the catalog). Memoised per profile and TP.
 */
export function kvCacheChunks(profile: Pick<Profile, 'model' | 'gpu' | 'source'>, tp: number, tokensPerChunk: number): number | undefined {
  let byTp = kvMemo.get(profile);
  if (!byTp) kvMemo.set(profile, (byTp = new Map<number, number>()));
  let tokens = byTp.get(tp);
  if (tokens === undefined) {
    try {
      tokens = perfModelOfProfile(profile).kvCapacityTokens(tp);
    } catch {
      tokens = NaN;
    }
    byTp.set(tp, tokens);
  }
  return Number.isFinite(tokens) && tokensPerChunk > 0 ? Math.floor(tokens / tokensPerChunk) : undefined;
}
const kvMemo = new WeakMap<object, Map<number, number>>();
