/**
 * The instance manager's reading of its engine's prefix-cache counters (vLLM v1 vllm:prefix_cache_queries_total /
 * _hits_total, tokens, from /metrics): the status reports them (the pool's and the cluster's measured reuse) and
 * the machine prices its clock at the uncached share (event prefix_cache), as the simulator hands it its core's
 * counters. One scrape at a time; a failed scrape leaves the last counts. The counters move only with the requests
 * the engine runs, so an engine that ran nothing since the last scrape (no request started or ended there, none
 * running, no restart) is not scraped: an idle instance would fetch and parse a 13-KB text every second for nothing.
 */
import type { Logger } from 'pino';
import type { Engine } from '../../src/engine/engine.ts';

export class PrefixCacheScrape {
  /** the counters, cumulative over this process (an engine restart's counters add on); undefined before any read. */
  counts: { lookup: number; hit: number } | undefined;
  /** the engine's last scraped counters (raw: they restart from 0 with the engine). */
  #raw = { lookup: 0, hit: 0 };
  #busy = false;
  /** requests started and ended at the engine, and its restarts, counted. */
  #moves = 0;
  /** #moves at the start of the last scrape that read the counters (-1: none yet). */
  #read = -1;

  /** A request started or ended at the engine, or the engine restarted: its counters may have moved. */
  moved(): void {
    this.#moves++;
  }

  /**
   * Reads the counters through `read` (undefined: the engine has none) when they may have moved or `running` > 0;
   * resolves with the new cumulative counts when they changed, else undefined. Rejects with `read`'s error.
   */
  async scrape(read: () => Promise<{ queries: number; hits: number } | undefined>, running: number): Promise<{ lookup: number; hit: number } | undefined> {
    const moves = this.#moves;
    if (this.#busy || (moves === this.#read && running === 0)) return undefined;
    this.#busy = true;
    try {
      const pc = await read();
      this.#read = moves;
      if (!pc) return undefined;
      const raw = { lookup: pc.queries, hit: Math.min(pc.hits, pc.queries) };
      const prev = this.counts ?? { lookup: 0, hit: 0 };
      // counters below the last scrape: the engine restarted, its counts start again from 0
      const restarted = raw.lookup < this.#raw.lookup || raw.hit < this.#raw.hit;
      const d = restarted ? raw : { lookup: raw.lookup - this.#raw.lookup, hit: raw.hit - this.#raw.hit };
      this.#raw = raw;
      this.counts = { lookup: prev.lookup + d.lookup, hit: prev.hit + d.hit };
      return d.lookup > 0 || d.hit > 0 ? this.counts : undefined;
    } finally {
      this.#busy = false;
    }
  }

  /** scrape() of `engine` when it is ready (within its probe deadline), new counts to `moved`; a failed read is logged (debug) and leaves the last counts. */
  async scrapeEngine(engine: Pick<Engine, 'state' | 'prefixCache'>, running: number, moved: (c: { lookup: number; hit: number }) => void, log: Logger): Promise<void> {
    if (engine.state !== 'ready') return;
    try {
      const c = await this.scrape(() => engine.prefixCache(), running);
      if (c) moved(c);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'engine metrics not read');
    }
  }
}
