/**
 * The continuous-batching core: a pure, clock-driven model of vLLM's (v1) scheduler. No timers, no wall
 * clock; the caller passes `nowMs` (the emulator: scaled wall time; the simulator: a virtual clock).
 *
 * Scheduling per step, as vLLM v1 does it:
 *  1. running requests first, oldest first, each asks for `(prompt + generated) - computed` tokens (1 for a
 *     decode, the rest of the prompt for a chunked prefill), clipped by the step's token budget
 *     (max_num_batched_tokens); KV blocks (16 tokens) are allocated as tokens grow; when the cache is full
 *     the newest running request is preempted back to the front of the waiting queue (recompute: its KV
 *     is freed and its prompt plus generated tokens are prefilled again later);
 *  2. if nothing was preempted, waiting requests that have arrived by the step's start are admitted in queue
 *     order while the budget, the max_num_seqs cap and free KV blocks allow (the last one admitted may get a
 *     partial prefill chunk); one arriving later joins a later step. A step starts where the previous one
 *     ended (or at `nowMs` if later), and with nothing running not before the first waiting arrival.
 * A request samples a token when its computed tokens reach prompt + generated (end of prefill, or a decode).
 *
 * Step duration and per-GPU power come from the PerfModel at the current SM clock; instance power is
 * per-GPU power x TP. Energy (modelled, not measured) accumulates per step and over idle gaps at the
 * model-loaded idle power (or unloaded idle power while sleeping). Each finished request is attributed a
 * share of every step it took part in, split by the tokens it processed in that step.
 * With prefix caching on (CoreOptions.prefixCacheBlockTokens), a request admitted with `prefixHashes` starts
 * with its leading cached blocks computed (vLLM automatic prefix caching; src/engine/prefix-cache.ts): only the
 * rest of its prompt is prefilled (the cached part still counts as attention context and holds KV blocks).
 */
import type { BatchingCoreApi, CoreEvent, CoreOptions, CoreRequest, CoreStats, StepResult } from './core-types.ts';
import type { PerfModel, StepBatch } from '../model/types.ts';
import { QueueFullError } from './errors.ts';
import { DEFAULT_SCHEDULER } from '../model/scheduler.ts';
import { PrefixCache } from './prefix-cache.ts';

/** KV-cache block size in tokens (vLLM's default). */
export const KV_BLOCK_TOKENS = 16;

interface Seq {
  req: CoreRequest;
  /** tokens whose KV is computed. */
  computed: number;
  /** output tokens sampled so far. */
  generated: number;
  /** KV blocks held. */
  blocks: number;
  /** modelled energy attributed so far, J. */
  energyJ: number;
  /** tokens scheduled in the current step (scratch). */
  sched: number;
}

export class BatchingCore implements BatchingCoreApi {
  private readonly perf: PerfModel;
  readonly tp: number;
  private clockMhz: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly longPrefillTokenThreshold: number;
  readonly kvCapacityTokens: number;
  readonly maxWaiting: number;
  private readonly totalBlocks: number;
  private freeBlocks: number;

  private waitingQ: Seq[] = [];
  private running: Seq[] = [];
  private readonly byId = new Map<string, Seq>();
  /** time up to which energy is accounted (end of the last step or idle accounting), ms. */
  private accountedMs: number | null = null;
  private energyJ = 0;
  private idleEnergyJ = 0;
  private sleeping = false;
  private lastPowerW = 0;
  private preemptions = 0;
  /** the last step's span and prefill tokens (pendingPrefillTokens reads the part still in progress). */
  private lastStep: { startMs: number; endMs: number; prefillTokens: number } | null = null;
  private readonly prefix: PrefixCache | null;
  private readonly prefixCounters: { hitTokens: number; lookupTokens: number } | undefined;

  constructor(opts: CoreOptions) {
    this.perf = opts.perf;
    this.tp = opts.tp;
    this.clockMhz = opts.clockMhz;
    this.maxNumSeqs = opts.maxNumSeqs ?? DEFAULT_SCHEDULER.maxNumSeqs;
    this.maxNumBatchedTokens = opts.maxNumBatchedTokens ?? DEFAULT_SCHEDULER.maxNumBatchedTokens;
    this.longPrefillTokenThreshold = opts.longPrefillTokenThreshold ?? 0;
    if (!(Number.isInteger(this.longPrefillTokenThreshold) && this.longPrefillTokenThreshold >= 0)) throw new RangeError(`longPrefillTokenThreshold must be an integer >= 0, got ${this.longPrefillTokenThreshold}`);
    this.kvCapacityTokens = opts.kvCapacityTokens ?? this.perf.kvCapacityTokens(this.tp);
    this.maxWaiting = opts.maxWaiting ?? 4096;
    if (!(this.tp >= 1) || !Number.isInteger(this.tp)) throw new RangeError(`tp must be a positive integer, got ${this.tp}`);
    if (!(this.maxNumSeqs >= 1)) throw new RangeError(`maxNumSeqs must be >= 1, got ${this.maxNumSeqs}`);
    if (!(this.maxNumBatchedTokens >= 1)) throw new RangeError(`maxNumBatchedTokens must be >= 1`);
    this.totalBlocks = Math.floor(this.kvCapacityTokens / KV_BLOCK_TOKENS);
    if (this.totalBlocks < 1) throw new RangeError(`KV capacity ${this.kvCapacityTokens} tokens is below one block`);
    this.freeBlocks = this.totalBlocks;
    this.lastPowerW = this.idlePowerW();
    const pbt = opts.prefixCacheBlockTokens ?? 0;
    this.prefix = pbt > 0 ? new PrefixCache(pbt, Math.floor(this.kvCapacityTokens / pbt)) : null;
    this.prefixCounters = opts.prefixCacheCounters;
  }

  /** True when the KV cache can hold a request of this many tokens (prompt + output) at all. */
  canHold(totalTokens: number): boolean {
    return Math.ceil(totalTokens / KV_BLOCK_TOKENS) <= this.totalBlocks;
  }

  /** Prompt tokens looked up in this instance's prefix cache and found there, since it started; undefined when caching is off. */
  prefixCacheTokens(): { lookup: number; hit: number } | undefined {
    return this.prefix ? { lookup: this.prefix.lookupTokens, hit: this.prefix.hitTokens } : undefined;
  }

  /** Prompt tokens of these prefix hashes cached here now (what a cache-aware router asks); 0 when caching is off. */
  cachedPrefixTokens(hashes: readonly number[] | undefined, promptTokens: number): number {
    if (!this.prefix || !hashes?.length) return 0;
    const B = this.prefix.blockTokens;
    return Math.min(this.prefix.matchedBlocks(hashes), Math.floor(Math.max(0, promptTokens - 1) / B)) * B;
  }

  /** A request entering the running set with nothing computed takes its cached prefix. */
  private takeCachedPrefix(s: Seq): void {
    if (!this.prefix || s.computed !== 0 || s.blocks !== 0 || !s.req.prefixHashes?.length) return;
    const before = this.prefix.hitTokens;
    s.computed = this.prefix.acquire(s.req.prefixHashes, s.req.promptTokens);
    if (this.prefixCounters) {
      this.prefixCounters.hitTokens += this.prefix.hitTokens - before;
      this.prefixCounters.lookupTokens += s.req.promptTokens;
    }
  }

  submit(req: CoreRequest): void {
    if (this.byId.has(req.id)) throw new Error(`duplicate request id '${req.id}'`);
    if (!(req.promptTokens >= 1) || !(req.outputTokens >= 1)) {
      throw new RangeError(`request '${req.id}' needs promptTokens >= 1 and outputTokens >= 1`);
    }
    // A request whose full context can never fit the cache would be preempted forever: refuse it now.
    if (Math.ceil((req.promptTokens + req.outputTokens) / KV_BLOCK_TOKENS) > this.totalBlocks) {
      throw new RangeError(`request '${req.id}' needs ${req.promptTokens + req.outputTokens} tokens of KV, capacity is ${this.kvCapacityTokens}`);
    }
    if (this.waitingQ.length >= this.maxWaiting) throw new QueueFullError(this.maxWaiting);
    const s: Seq = { req, computed: 0, generated: 0, blocks: 0, energyJ: 0, sched: 0 };
    this.byId.set(req.id, s);
    this.waitingQ.push(s);
  }

  cancel(id: string): boolean {
    const s = this.byId.get(id);
    if (!s) return false;
    this.byId.delete(id);
    this.freeBlocks += s.blocks;
    s.blocks = 0;
    let i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    else if ((i = this.waitingQ.indexOf(s)) >= 0) this.waitingQ.splice(i, 1);
    return true;
  }

  /** Tokens a sequence would compute this step before the budget: the rest of it, capped at the long-prefill threshold. */
  private newTokens(s: Seq): number {
    const n = s.req.promptTokens + s.generated - s.computed;
    const t = this.longPrefillTokenThreshold;
    return t > 0 && n > t ? t : n;
  }

  /** True when a step would do work. */
  hasWork(): boolean {
    return !this.sleeping && (this.running.length > 0 || this.waitingQ.length > 0);
  }

  step(nowMs: number): StepResult | null {
    if (!this.hasWork()) return null;
    // A step cannot start before the previous one ended; the gap before it (if any) was idle. With nothing running
    // it cannot start before the first waiting request has arrived (the engine idles until then).
    let startMs = this.accountedMs === null ? nowMs : Math.max(nowMs, this.accountedMs);
    if (this.running.length === 0) startMs = Math.max(startMs, this.firstArrivalMs());
    this.idleUntil(startMs);

    let budget = this.maxNumBatchedTokens;
    const scheduled: Seq[] = [];
    let preempted: Seq[] | null = null;

    // 1. running requests, oldest first
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const s = this.running[i];
      const n = Math.min(this.newTokens(s), budget);
      let ok = this.allocate(s, n);
      while (!ok) {
        // preempt the newest running request (possibly s itself)
        const victim = this.running.pop()!;
        this.freeBlocks += victim.blocks;
        victim.blocks = 0;
        victim.computed = 0;
        (preempted ??= []).push(victim);
        this.preemptions++;
        if (victim === s) break;
        ok = this.allocate(s, n);
      }
      if (!ok) break;
      s.sched = n;
      budget -= n;
      scheduled.push(s);
    }
    if (preempted) {
      // back to the front of the waiting queue, oldest first
      for (let i = 0; i < preempted.length; i++) this.waitingQ.unshift(preempted[i]);
    } else {
      // 2. admit waiting requests, in queue order, those that have arrived by the step's start (a request that
      // arrives while the step is formed or running joins the next one, as with vLLM's engine loop)
      for (let i = 0; budget > 0 && i < this.waitingQ.length && this.running.length < this.maxNumSeqs; ) {
        const s = this.waitingQ[i];
        if (s.req.arrivalMs > startMs) {
          i++;
          continue;
        }
        this.takeCachedPrefix(s);
        const n = Math.min(this.newTokens(s), budget);
        if (!this.allocate(s, n)) break;
        this.waitingQ.splice(i, 1);
        this.running.push(s);
        s.sched = n;
        budget -= n;
        scheduled.push(s);
      }
    }

    // Classify the batch for the perf model: a decode is a sequence with exactly its last sampled token to
    // compute; everything else is a prefill chunk (first prefill, or recompute after preemption).
    let prefillTokens = 0;
    let prefillContextTokens = 0;
    let prefillSeqs = 0;
    let decodeSeqs = 0;
    let decodeContextTokens = 0;
    for (let i = 0; i < scheduled.length; i++) {
      const s = scheduled[i];
      if (s.generated > 0 && s.sched === 1 && s.computed === s.req.promptTokens + s.generated - 1) {
        decodeSeqs++;
        decodeContextTokens += s.req.promptTokens + s.generated;
      } else {
        prefillTokens += s.sched;
        prefillContextTokens += s.computed;
        prefillSeqs++;
      }
    }
    const events: CoreEvent[] = [];
    if (scheduled.length === 0) {
      // Nothing fits (e.g. the cache is full of preempted work that was just requeued): report an empty
      // step of zero length so the driver tries again; preemption events still matter.
      if (preempted) for (const v of preempted) events.push({ kind: 'preempted', id: v.req.id, atMs: startMs });
      return { startMs, durationMs: 0, powerW: this.lastPowerW, prefillTokens: 0, decodeSeqs: 0, events };
    }
    // prefillSeqs: attention cost is per prompt (quadratic in each prompt's length), not in their sum.
    const batch: StepBatch = { prefillTokens, prefillContextTokens, prefillSeqs, decodeSeqs, decodeContextTokens };
    const durationMs = this.perf.stepTimeMs(batch, this.tp, this.clockMhz);
    const powerW = this.perf.stepPowerW(batch, this.tp, this.clockMhz) * this.tp;
    const endMs = startMs + durationMs;
    const stepJ = (powerW * durationMs) / 1000;
    this.energyJ += stepJ;
    this.accountedMs = endMs;
    this.lastPowerW = powerW;
    this.lastStep = { startMs, endMs, prefillTokens };
    const perToken = stepJ / (this.maxNumBatchedTokens - budget);

    if (preempted) for (const v of preempted) events.push({ kind: 'preempted', id: v.req.id, atMs: startMs });
    let finished = 0;
    for (let i = 0; i < scheduled.length; i++) {
      const s = scheduled[i];
      s.energyJ += perToken * s.sched;
      s.computed += s.sched;
      s.sched = 0;
      if (s.computed === s.req.promptTokens + s.generated) {
        const index = s.generated++;
        // the prompt's full blocks are computed: they enter the prefix cache
        if (index === 0 && this.prefix && s.req.prefixHashes?.length) this.prefix.insert(s.req.prefixHashes.slice(0, Math.floor(s.req.promptTokens / this.prefix.blockTokens)));
        events.push(index === 0 ? { kind: 'first_token', id: s.req.id, atMs: endMs } : { kind: 'token', id: s.req.id, atMs: endMs, index });
        if (s.generated >= s.req.outputTokens) {
          events.push({
            kind: 'finished', id: s.req.id, atMs: endMs,
            promptTokens: s.req.promptTokens, outputTokens: s.generated, energyJ: s.energyJ,
          });
          this.freeBlocks += s.blocks;
          s.blocks = 0;
          s.computed = -1; // marker: finished
          this.byId.delete(s.req.id);
          finished++;
        }
      }
    }
    if (finished > 0) this.running = this.running.filter((s) => s.computed >= 0);
    return { startMs, durationMs, powerW, prefillTokens, decodeSeqs, events };
  }

  /** The earliest arrival among the waiting requests (Infinity when none waits). */
  private firstArrivalMs(): number {
    let t = Infinity;
    for (const s of this.waitingQ) if (s.req.arrivalMs < t) t = s.req.arrivalMs;
    return t;
  }

  idleUntil(nowMs: number): void {
    if (this.accountedMs === null) {
      this.accountedMs = nowMs;
      return;
    }
    if (nowMs <= this.accountedMs) return;
    const p = this.idlePowerW();
    const j = (p * (nowMs - this.accountedMs)) / 1000;
    this.energyJ += j;
    this.idleEnergyJ += j;
    this.accountedMs = nowMs;
    this.lastPowerW = p;
  }

  setClock(mhz: number): void {
    if (!(mhz > 0)) throw new RangeError(`clock must be > 0 MHz, got ${mhz}`);
    this.clockMhz = mhz;
  }

  /**
   * vLLM sleep mode (level 1): weights offloaded, KV cache discarded, so idle power drops to the unloaded
   * idle power. Sleeping with requests in the core is refused (the driver must drain first). Idle energy up
   * to `nowMs` is accounted at the previous power before the switch.
   */
  setSleeping(sleeping: boolean, nowMs: number): void {
    if (sleeping && (this.running.length > 0 || this.waitingQ.length > 0)) {
      throw new Error('cannot sleep with requests in the engine');
    }
    this.idleUntil(nowMs);
    this.sleeping = sleeping;
    if (sleeping) this.prefix?.clear(); // the KV cache is discarded
    this.lastPowerW = this.idlePowerW();
  }

  isSleeping(): boolean {
    return this.sleeping;
  }

  waiting(): readonly CoreRequest[] {
    return this.waitingQ.map((s) => s.req);
  }

  takeWaiting(ids: readonly string[]): CoreRequest[] {
    const want = new Set(ids);
    const out: CoreRequest[] = [];
    // Only never-started requests move (a preempted one has generated tokens a peer does not know).
    this.waitingQ = this.waitingQ.filter((s) => {
      if (want.has(s.req.id) && s.generated === 0 && s.blocks === 0) {
        out.push(s.req);
        this.byId.delete(s.req.id);
        return false;
      }
      return true;
    });
    return out;
  }

  reorderWaiting(compare: (a: CoreRequest, b: CoreRequest) => number): void {
    this.waitingQ.sort((a, b) => compare(a.req, b.req));
  }

  stats(): CoreStats {
    return {
      waiting: this.waitingQ.length,
      running: this.running.length,
      kvUsedTokens: (this.totalBlocks - this.freeBlocks) * KV_BLOCK_TOKENS,
      kvCapacityTokens: this.totalBlocks * KV_BLOCK_TOKENS,
      energyJ: this.energyJ,
      idleEnergyJ: this.idleEnergyJ,
      clockMhz: this.clockMhz,
      tp: this.tp,
    };
  }

  /**
   * The prefill backlog in the order the scheduler serves it: the uncomputed rest of every prompt without a first
   * token (running with a partial chunk first, then waiting), with its TTFT deadline. The step in progress is
   * not in it (its work is committed): see busyUntilMs / pendingPrefillTokens.
   */
  prefillBacklog(): { tokens: number; deadlineMs?: number }[] {
    const out: { tokens: number; deadlineMs?: number }[] = [];
    this.forEachUnprefilled((s, tokens) => out.push({ tokens, deadlineMs: s.req.ttftDeadlineMs }));
    return out;
  }

  /** Calls f on every sequence without a first token and prompt tokens left to compute, in prefill order. */
  private forEachUnprefilled(f: (s: Seq, tokensLeft: number) => void): void {
    for (const q of [this.running, this.waitingQ]) for (const s of q) if (s.generated === 0 && s.req.promptTokens > s.computed) f(s, s.req.promptTokens - s.computed);
  }

  /** End of the step in progress when `nowMs` is inside it, else null. */
  busyUntilMs(nowMs: number): number | null {
    return this.lastStep && nowMs < this.lastStep.endMs ? this.lastStep.endMs : null;
  }

  /**
   * Prompt tokens admitted but not prefilled yet at `nowMs`: the backlog plus the part of the step in progress's
   * prefill not yet done (pro rata). What a new prompt waits behind; the instance manager reports the same
   * quantity (InstanceStatus.pendingPrefillTokens: prompts without a first token) and dispatch reads it.
   */
  pendingPrefillTokens(nowMs: number): number {
    let n = 0;
    this.forEachUnprefilled((_, tokens) => (n += tokens));
    const l = this.lastStep;
    if (l && nowMs < l.endMs && l.prefillTokens > 0 && l.endMs > l.startMs) n += (l.prefillTokens * (l.endMs - nowMs)) / (l.endMs - l.startMs);
    return n;
  }

  /** Instance power of the last step, or idle power after idle accounting, W (all GPUs). */
  powerW(): number {
    return this.lastPowerW;
  }

  /** Cumulative number of preemptions (vllm:num_preemptions_total). */
  preemptionCount(): number {
    return this.preemptions;
  }

  /** A request in the engine (waiting or running), as submitted. */
  requestOf(id: string): CoreRequest | undefined {
    return this.byId.get(id)?.req;
  }

  /** Generated-token count of a known request (for the emulator's streaming), or -1. */
  generatedOf(id: string): number {
    return this.byId.get(id)?.generated ?? -1;
  }

  private idlePowerW(): number {
    return this.perf.idlePowerW(this.tp, this.clockMhz, !this.sleeping) * this.tp;
  }

  /** Ensure s holds blocks for computed + n tokens; false (and nothing changed) if the cache is short. */
  private allocate(s: Seq, n: number): boolean {
    const need = Math.ceil((s.computed + n) / KV_BLOCK_TOKENS) - s.blocks;
    if (need <= 0) return true;
    if (need > this.freeBlocks) return false;
    this.freeBlocks -= need;
    s.blocks += need;
    return true;
  }
}
