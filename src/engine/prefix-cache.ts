/**
 * Automatic prefix caching as vLLM does it (enable_prefix_caching): KV blocks are identified by a hash of
 * their content and of everything before them, so a prompt whose leading blocks were computed before (by any
 * request on this instance) reuses their KV and prefills only the rest. Blocks stay cached after their request
 * ends and are evicted least-recently-used when the cache needs room.
 *
 * This model keeps one LRU of block hashes per instance, sized from the instance's KV capacity (capacity
 * tokens / block tokens); blocks held by running requests count against it as well (the cache never holds
 * more than the KV memory). The block hashes come from the trace (Mooncake-style `hash_ids`: one per block of
 * `blockTokens` tokens, chained, so equal ids at position k imply equal prompts up to block k).
 */
export class PrefixCache {
  /** hash -> true, in recency order (Map keeps insertion order; a hit re-inserts). */
  private readonly lru = new Map<number, true>();
  hitTokens = 0;
  lookupTokens = 0;

  constructor(
    /** tokens per block (the trace's hash granularity). */
    readonly blockTokens: number,
    /** blocks the cache holds at most. */
    readonly capacityBlocks: number,
  ) {
    if (!(Number.isInteger(blockTokens) && blockTokens >= 1)) throw new RangeError(`blockTokens must be an integer >= 1, got ${blockTokens}`);
    if (!(Number.isInteger(capacityBlocks) && capacityBlocks >= 0)) throw new RangeError(`capacityBlocks must be an integer >= 0, got ${capacityBlocks}`);
  }

  get size(): number {
    return this.lru.size;
  }

  /** Leading blocks of `hashes` cached here (no side effect: what a router may ask). */
  matchedBlocks(hashes: readonly number[]): number {
    let n = 0;
    while (n < hashes.length && this.lru.has(hashes[n])) n++;
    return n;
  }

  /**
   * Prompt tokens a request can skip: its leading cached blocks, at most promptTokens - 1 (vLLM always
   * computes the last prompt token to sample from it). Marks those blocks used (most recent) and counts hits.
   */
  acquire(hashes: readonly number[], promptTokens: number): number {
    const n = this.matchedBlocks(hashes);
    for (let k = 0; k < n; k++) {
      this.lru.delete(hashes[k]);
      this.lru.set(hashes[k], true);
    }
    const hit = Math.max(0, Math.min(n * this.blockTokens, promptTokens - 1));
    this.hitTokens += hit;
    this.lookupTokens += promptTokens;
    return hit;
  }

  /** The prompt's blocks are computed: cache them (most recent), evicting the least recently used beyond capacity. */
  insert(hashes: readonly number[]): void {
    for (const h of hashes) {
      this.lru.delete(h);
      this.lru.set(h, true);
    }
    while (this.lru.size > this.capacityBlocks) this.lru.delete(this.lru.keys().next().value!);
  }

  /** Drop everything (vLLM sleep mode discards the KV cache; so does a restart). */
  clear(): void {
    this.lru.clear();
  }
}
