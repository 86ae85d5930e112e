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
   * Prompt tokens a request can skip: its leading cached blocks within its first promptTokens - 1 tokens (vLLM
   * always computes the last prompt token to sample from it, and reuses whole blocks only). Marks those blocks used
   * (most recent) and counts hits.
   */
  acquire(hashes: readonly number[], promptTokens: number): number {
    const n = Math.min(this.matchedBlocks(hashes), Math.floor(Math.max(0, promptTokens - 1) / this.blockTokens));
    for (let k = 0; k < n; k++) {
      this.lru.delete(hashes[k]);
      this.lru.set(hashes[k], true);
    }
    const hit = n * this.blockTokens;
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

/**
 * The hashes of a prompt's full blocks of `blockTokens` token ids, chained as vLLM's block hashes are (each
 * block's hash covers its tokens and the hash of the block before it, so equal hashes at position k mean equal
 * prompts up to block k). A partial last block has none (vLLM caches full blocks only). 53-bit integers: two
 * 32-bit FNV-1a lanes (a collision would let a prompt reuse another's KV; at 2^-53 per pair it does not happen).
 */
export function promptBlockHashes(ids: readonly number[], blockTokens: number): number[] {
  if (!(Number.isInteger(blockTokens) && blockTokens >= 1)) throw new RangeError(`blockTokens must be an integer >= 1, got ${blockTokens}`);
  const out: number[] = [];
  let a = 0x811c9dc5, b = 0x9e3779b9;
  for (let k = 0; (k + 1) * blockTokens <= ids.length; k++) {
    for (let i = k * blockTokens; i < (k + 1) * blockTokens; i++) {
      const t = ids[i]!;
      a = Math.imul(a ^ t, 0x01000193) >>> 0;
      b = Math.imul(b ^ (t + 0x7f4a7c15), 0x0100_01b3) >>> 0;
      b = (b ^ (b >>> 15)) >>> 0;
    }
    // the block's hash: 21 bits of lane b over the 32 of lane a; the chain carries both lanes on
    out.push((b & 0x1f_ffff) * 0x1_0000_0000 + a);
  }
  return out;
}
