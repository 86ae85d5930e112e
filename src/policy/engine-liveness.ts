/**
 * Is an engine still working? Two pure decisions, run by the gateway's direct read of an engine, the instance
 * manager's own stream of a request and its health watch (docs/DATAPATH.md "Request migration", "A hung engine"):
 *
 * - `engineIdleBounds`: the longest silence (no byte from the engine) a request's stream may have before it is
 *   ended as an engine failure (retryable: the gateway continues it on a peer). Before the first token the bound
 *   is a generous multiple of the request's TTFT SLO with a floor (a queue, a long prefill, a loaded host never
 *   trip it); after it, a multiple of its TBT SLO with a floor of seconds.
 * - `healthProbeDue` / `healthProbed`: the instance manager probes its engine's /health every `intervalMs` (not
 *   while a probe is out, nor when tokens came within the interval), each probe within `deadlineMs`; `misses`
 *   failed probes in a row make the engine hung (the manager kills and restarts it as after a crash).
 */

/** timeouts.engineIdle: the stream's idle deadline, derived from the request's SLO. */
export interface EngineIdleSettings {
  /** before the first token: this many times the request's TTFT SLO. */
  firstTokenMultiple: number;
  /** ... and never less than this, ms. */
  firstTokenFloorMs: number;
  /** after the first token: this many times the request's TBT SLO. */
  nextTokenMultiple: number;
  /** ... and never less than this, ms. */
  nextTokenFloorMs: number;
}

/**
 * Defaults, justified:
 * - first token: 20 x the TTFT SLO (p99 targets 250/400/2000 ms by input class: 5/8/40 s), at least 30 s. The
 *   instance admits a request to its engine only with room for it (engine.maxInEngine), so its wait in the engine
 *   is a prefill behind a bounded batch; a prompt at the context limit of a 70B model prefills in a few seconds on
 *   an H100 (profiles/), and 30 s covers that many times over, and a starved host's stalls too.
 * - next token: 100 x the TBT SLO (100 ms: 10 s), at least 10 s. A running request is silent between two tokens
 *   for a decode step (tens of ms), a chunked prefill of others in the batch (bounded by the scheduler's token
 *   budget: under a second), or a preemption and its recompute (a prefill of its context: seconds); 10 s is
 *   past all of them. A silence that long is a frozen engine, which the health watch kills within
 *   `engineHealth` (about 11 s) anyway: this bound ends the streams a health watch cannot (the manager itself
 *   frozen or gone while the engine's socket stays open).
 */
export const DEFAULT_ENGINE_IDLE: EngineIdleSettings = { firstTokenMultiple: 20, firstTokenFloorMs: 30_000, nextTokenMultiple: 100, nextTokenFloorMs: 10_000 };

/** The request's SLO (InferenceRequest.slo), ms; absent fields take `fallback`'s. */
export interface IdleSlo {
  ttftMs: number;
  tbtMs: number;
}

/** A stream's idle deadlines, ms: before its first token, and between two later bytes. */
export interface EngineIdleBounds {
  firstMs: number;
  nextMs: number;
}

/** The idle deadlines of a request with SLO `slo` (`fallback`, the most lenient class's, for one not classified). */
export function engineIdleBounds(slo: IdleSlo | undefined, fallback: IdleSlo, s: EngineIdleSettings = DEFAULT_ENGINE_IDLE): EngineIdleBounds {
  const ttft = slo && slo.ttftMs > 0 ? slo.ttftMs : fallback.ttftMs;
  const tbt = slo && slo.tbtMs > 0 ? slo.tbtMs : fallback.tbtMs;
  return {
    firstMs: Math.max(s.firstTokenFloorMs, s.firstTokenMultiple * ttft),
    nextMs: Math.max(s.nextTokenFloorMs, s.nextTokenMultiple * tbt),
  };
}

/**
 * The stream's idle verdict at `nowMs`: the ms left before it is stalled (> 0), or 0 when it is. `lastMs` is when
 * the engine last sent a byte (the request's send before any), `tokens` whether a token came yet.
 */
export function idleLeftMs(b: EngineIdleBounds, lastMs: number, tokens: boolean, nowMs: number): number {
  return Math.max(0, lastMs + (tokens ? b.nextMs : b.firstMs) - nowMs);
}

/** timeouts.engineHealth: the instance manager's periodic /health probe of its engine. */
export interface EngineHealthSettings {
  /** a probe at most this often, ms. */
  intervalMs: number;
  /** deadline of one probe, ms. */
  deadlineMs: number;
  /** failed probes in a row that make the engine hung. */
  misses: number;
}

/**
 * Defaults: a probe every 2 s within 3 s; 3 misses in a row (a probe out counts when its deadline passes, and the
 * next goes then): a frozen engine is found hung at its third probe's deadline, the first sent 2 s after its last
 * token: about 2 + 3 x 3 = 11 s after it froze. One slow answer under load (a vLLM API server busy tokenizing a long
 * prompt) is not a miss in a row of 3, and a restart (minutes for a real 70B model) is not spent on one.
 */
export const DEFAULT_ENGINE_HEALTH: EngineHealthSettings = { intervalMs: 2000, deadlineMs: 3000, misses: 3 };

/** The health watch of one engine (its current process). */
export interface HealthWatch {
  /** failed probes in a row. */
  misses: number;
  /** a probe is out. */
  probing: boolean;
  /** when the last probe was sent, ms (-Infinity: none yet). */
  lastProbeMs: number;
}

export const newHealthWatch = (): HealthWatch => ({ misses: 0, probing: false, lastProbeMs: -Infinity });

/**
 * Whether to send a probe at `nowMs`: the engine is serving (`ready`), no probe is out, the last was at least an
 * interval ago, and no token came from the engine within the interval (`lastTokenMs`: tokens say it works).
 */
export function healthProbeDue(w: HealthWatch, ready: boolean, nowMs: number, lastTokenMs: number | undefined, s: EngineHealthSettings): boolean {
  if (!ready || w.probing) return false;
  if (nowMs - w.lastProbeMs < s.intervalMs) return false;
  return lastTokenMs === undefined || nowMs - lastTokenMs >= s.intervalMs;
}

/** The watch after a probe sent at `nowMs`. */
export const healthProbeSent = (w: HealthWatch, nowMs: number): HealthWatch => ({ ...w, probing: true, lastProbeMs: nowMs });

/**
 * The watch after a probe's answer (`ok`: 200 within its deadline), and the verdict: 'hung' once `misses` probes in
 * a row failed (the watch starts again, for the engine's next process).
 */
export function healthProbed(w: HealthWatch, ok: boolean, s: EngineHealthSettings): { w: HealthWatch; verdict: 'healthy' | 'missed' | 'hung' } {
  if (ok) return { w: { ...w, probing: false, misses: 0 }, verdict: 'healthy' };
  const misses = w.misses + 1;
  if (misses >= s.misses) return { w: { ...newHealthWatch(), lastProbeMs: w.lastProbeMs }, verdict: 'hung' };
  return { w: { ...w, probing: false, misses }, verdict: 'missed' };
}

/** A token (or a leg's report of one) came from the engine: the watch's misses start again. */
export const healthTokens = (w: HealthWatch): HealthWatch => (w.misses === 0 ? w : { ...w, misses: 0 });
