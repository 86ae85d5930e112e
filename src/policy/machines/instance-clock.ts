/**
 * The instance machine's load and clock (src/policy/machines/instance.ts instanceStep): the epoch's load (EWMA and
 * the window's rate), the clock's four sources arbitrated in one place (clockSource), the epoch's least-energy
 * clock, the raises between epochs (load rise, prefill rise) and the prefill floor. Pure helpers of instanceStep:
 * they edit the state instanceStep handed them and add effects.
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { Profile } from '../../model/profile-types.ts';
import { chooseClock } from '../frequency.ts';
import { prefillClockFloor } from '../dispatch.ts';
import { riseRate } from '../arrival-rate.ts';
import { DEFAULT_HEADROOM } from '../types.ts';
import { closeWindow } from './instance-load.ts';
import { maxClockOf, serving, type InstanceEffect, type InstanceMachineConfig, type InstanceMachineState, type Load, type MachineRequest } from './instance-types.ts';

/**
 * Where the clock may come from now: 'emergency' (max clock held), 'pool' (set_clock for its epoch), or
 * 'instance' (the epoch's choice and the raises between epochs).
 */
export function clockSource(s: InstanceMachineState, now: number): 'emergency' | 'pool' | 'instance' {
  if (s.emergencyMaxClock) return 'emergency';
  if (now < s.forcedUntilMs) return 'pool';
  return 'instance';
}

export function setClock(s: InstanceMachineState, fx: InstanceEffect[], mhz: number, why: string, inputs: Record<string, unknown>): void {
  if (!s.supportedMhz.length) return;
  s.clockPending = mhz;
  fx.push({ kind: 'set_clock', clockMhz: mhz, why, inputs });
}

/** Closes the epoch's arrival window (closeWindow): the EWMA (half weight per epoch) and the clock's view max(EWMA, rate). */
function measureLoad(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): Load {
  const { window, forClock } = closeWindow(s, now, cfg);
  s.arrivals = window.arrivals;
  s.windowStartMs = window.windowStartMs;
  s.load = window.load;
  return forClock;
}

/** Instance epoch: the least-energy clock meeting the SLO at this load (policy chooseClock), not below the prefill floor. */
export function epoch(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!serving(s)) return;
  const load = measureLoad(s, now, cfg);
  if (clockSource(s, now) !== 'instance') return;
  const d = decideClock(cfg, uncachedLoad(s, load), s.supportedMhz);
  if (!d) return;
  const inputs = { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW };
  const floor = prefillFloor(s, now, cfg);
  if (floor !== undefined && floor > d.clockMhz) setClock(s, fx, floor, `${d.reason}; raised to ${floor} MHz for the prefill backlog`, inputs);
  else setClock(s, fx, d.clockMhz, d.reason, inputs);
}

/** A raise between epochs: one at a time, only from the instance's own source, only upwards. */
function raise(s: InstanceMachineState, fx: InstanceEffect[], mhz: number, now: number, why: string, inputs: Record<string, unknown>): void {
  if (s.raising || clockSource(s, now) !== 'instance' || mhz <= s.clockMhz) return;
  s.raising = true;
  setClock(s, fx, mhz, why, inputs);
}

/** On admission: raise the clock at once when the prefill backlog needs it. */
export function prefillRise(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (s.raising || s.emergencyMaxClock || s.clockMhz >= maxClockOf(s)) return;
  const f = prefillFloor(s, now, cfg);
  if (f !== undefined) raise(s, fx, f, now, 'prefill backlog needs it', { pendingPrefillTokens: pendingPrefillTokens(s) });
}

/**
 * Between epochs (every tick, when requests arrived since the last check): the clock follows a load rise within the epoch
 * instead of at its end. The epoch's arrival rate so far (riseRate, over at least 1 s) against the EWMA, the larger per type; only raises. */
export function loadRise(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!s.arrivedSinceRiseCheck || s.raising) return;
  s.arrivedSinceRiseCheck = false;
  if (clockSource(s, now) !== 'instance' || s.clockMhz >= maxClockOf(s)) return;
  const rate = riseRate(s.arrivals, Math.max(1, (now - s.windowStartMs) / 1000) * cfg.timeScale);
  const load: Load = { ...s.load };
  for (const [t, r] of Object.entries(rate) as [RequestType, number][]) load[t] = Math.max(load[t] ?? 0, r);
  const d = decideClock(cfg, uncachedLoad(s, load), s.supportedMhz);
  if (d) raise(s, fx, d.clockMhz, now, `load rose within the epoch: ${d.reason}`, { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW });
}

/**
 * The load the clock is priced at. The profile prices every prompt uncached; an engine with a prefix cache prefills
 * only what it does not hold, so where the engine reports its prefix-cache counters (event prefix_cache) the load is
 * scaled to the uncached share of the prompt tokens it looked up (the prompt work left; the L types the profile
 * prices are prefill-bound). Without such counts, the load as measured.
 */
export function uncachedLoad(s: Pick<InstanceMachineState, 'promptTokens' | 'cachedTokens'>, load: Load): Load {
  if (!s.promptTokens || !s.cachedTokens) return load;
  const f = Math.max(0, 1 - s.cachedTokens / s.promptTokens);
  const out: Load = {};
  for (const [t, v] of Object.entries(load) as [RequestType, number][]) out[t] = v * f;
  return out;
}

/** The least-energy clock meeting the SLO at this load (policy chooseClock), undefined without a profile for this TP. */
export function decideClock(
  cfg: Pick<InstanceMachineConfig, 'profile' | 'tp' | 'headroom'>,
  load: Load,
  supported: number[],
): { clockMhz: number; powerW: number; feasible: boolean; reason: string } | undefined {
  const profile = cfg.profile;
  if (!profile || !profile.tpDegrees.includes(cfg.tp)) return undefined;
  const d = chooseClock({ profile, tp: cfg.tp, loadByType: load, clocks: profileClocks(profile, supported), headroom: cfg.headroom ?? DEFAULT_HEADROOM });
  return { clockMhz: d.clockMhz, powerW: d.powerW, feasible: d.feasible, reason: d.reason };
}

/** The GPU's supported clocks inside the profile's range, as profile grid clocks (undefined: the profile's grid). */
function profileClocks(profile: Profile, supported: number[]): number[] | undefined {
  const lo = profile.clocksMhz[0]!, hi = profile.clocksMhz[profile.clocksMhz.length - 1]!;
  const inRange = supported.filter((f) => f >= lo && f <= hi);
  const clocks = inRange.length ? profile.clocksMhz.filter((f) => inRange.some((g) => Math.abs(g - f) <= 15)) : undefined;
  return clocks && clocks.length ? clocks : undefined;
}

/** The requests whose prompt is not prefilled yet: in the engine without a first token, then the queue in order. */
function* awaitingPrefill(s: InstanceMachineState): Generator<MachineRequest> {
  for (const r of s.running.values()) if (!r.prefilled) yield r;
  yield* s.queue;
}

/** Prompt tokens admitted but not prefilled yet. */
export function pendingPrefillTokens(s: InstanceMachineState): number {
  let n = 0;
  for (const r of awaitingPrefill(s)) n += r.inputTokens;
  return n;
}

/**
 * The clock the prefill backlog needs (policy prefillClockFloor): each prompt awaiting prefill with the
 * time left to its TTFT deadline. A prompt's length is known on arrival, so one far longer than its type's
 * profile cell raises the clock before its prefill, not after a miss.
 */
function prefillFloor(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): number | undefined {
  const backlog: { tokens: number; slackMs: number }[] = [];
  // whole prompts: which part the engine holds is known to it alone (vLLM says how much it reused after the prefill)
  for (const r of awaitingPrefill(s)) backlog.push({ tokens: Math.max(1, r.inputTokens), slackMs: r.ttftDeadlineMs - now });
  return decidePrefillFloor(cfg, backlog, s.supportedMhz);
}

/** The prefill floor of a backlog (policy prefillClockFloor on the GPU's clocks), undefined without a profile or backlog. */
export function decidePrefillFloor(cfg: Pick<InstanceMachineConfig, 'profile' | 'tp'>, backlog: { tokens: number; slackMs: number }[], supported: number[]): number | undefined {
  const profile = cfg.profile;
  if (!profile || !profile.tpDegrees.includes(cfg.tp) || !backlog.length) return undefined;
  return prefillClockFloor(profile, cfg.tp, backlog, 0, profileClocks(profile, supported));
}
