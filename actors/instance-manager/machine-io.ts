/**
 * The instance manager's translations between the world and its machine (src/policy/machines/instance.ts):
 * the machine's configuration from the cluster config, a request as the machine sees it,
 * an engine failure as a client may see it, the engine's tokenizer as the gateways ask for it, an admission as
 * the debug log tells it.
 */
import type { WireError } from '../../protocols/errors.ts';
import type { DetokenizeReply, DetokenizeRequest, TokenizeReply, TokenizeRequest } from '../../protocols/index.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { EngineHttpError } from '../../src/engine/errors.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { InstanceEffect, InstanceEvent, InstanceMachineConfig, InstanceMachineState, MachineRequest } from '../../src/policy/machines/instance.ts';
import type { ClusterConfig } from '../common/config.ts';
import { suspectAfterMsOf } from '../../src/policy/suspect.ts';
import type { ClassifiedRequest } from '../../src/policy/slo.ts';

/** the `applied` of a machine step that asked for no clock change (no promise made for each of a request's steps). */
export const APPLIED: Promise<void> = Promise.resolve();

/** An engine call's failure as the client may see it: the engine's own message for a refusal, nothing internal. */
export function engineWireError(err: unknown): WireError {
  if (err instanceof EngineHttpError && !err.retryable) return { code: 'invalid_request', message: err.engineMessage, retryable: false };
  return { code: 'unavailable', message: 'the engine did not answer; retry', retryable: true, retryAfterS: 1 };
}

/** The machine's configuration from the cluster config and this instance's options. */
export function instanceMachineConfig(o: { tp: number; profile?: Profile; emergencyTickMs?: number; engineApiKey?: string; config: ClusterConfig }): InstanceMachineConfig {
  const c = o.config;
  return {
    tp: o.tp, profile: o.profile, headroom: c.policy.headroom, epochMs: c.epochs.instanceS * 1000, tickMs: o.emergencyTickMs ?? 100,
    maxInEngine: c.engine.maxInEngine, maxQueued: c.engine.maxQueued,
    // wall seconds -> modelled seconds: an emulator with timeScale k runs k times faster than the model
    timeScale: c.engine.kind === 'emulator' ? c.engine.timeScale : 1,
    deadAfterMs: c.liveness.deadAfterMs, suspectAfterMs: suspectAfterMsOf(c.liveness), moveQueueAbove: c.emergency.moveQueueAbove, rejectAfterMs: c.emergency.rejectAfterMs,
    retryAfterS: c.emergency.retryAfterS, maxMovePerStep: 16,
    // credits go only with a grant: an instance without an engine key streams every request itself
    credits: { perGateway: o.engineApiKey ? c.engine.gatewayCredits : 0, ttlMs: c.engine.gatewayCreditTtlMs },
  };
}

/** The machine's view of a classified request. */
export function machineRequest(req: ClassifiedRequest): MachineRequest {
  return { id: req.id, type: req.type, inputTokens: req.inputTokens, arrivalMs: req.arrivalMs, ttftDeadlineMs: req.ttftDeadlineMs, ttftSloMs: req.slo.ttftMs, moves: req.moves ?? 0, ...(req.probe ? { probe: true } : {}) };
}

/**
 * vLLM's /tokenize on the instance's engine, with the engine's limits: its context length (the engine's answer) and its
 * logprobs bound (`maxLogprobs`: the `--max-logprobs` it runs with, engine-limits.ts maxLogprobsOf). A refused prompt
 * is an invalid_request reply with the engine's words.
 */
export async function engineTokenize(engine: Engine, req: TokenizeRequest, maxLogprobs?: number): Promise<TokenizeReply> {
  try {
    const r = await engine.tokenize({ model: req.model, prompt: req.prompt, chat: req.messages, params: req.params, returnTokenStrs: req.returnTokenStrs });
    const out: TokenizeReply = { v: 1, ok: true, count: r.count, maxModelLen: r.maxModelLen, ...(maxLogprobs !== undefined ? { maxLogprobs } : {}) };
    if (req.returnTokens) out.tokens = r.tokens;
    if (req.returnTokenStrs && r.tokenStrs) out.tokenStrs = r.tokenStrs;
    return out;
  } catch (err) {
    return { v: 1, ok: false, error: engineWireError(err) };
  }
}

/** vLLM's /detokenize on the instance's engine. */
export async function engineDetokenize(engine: Engine, req: DetokenizeRequest): Promise<DetokenizeReply> {
  try {
    return { v: 1, ok: true, prompt: await engine.detokenize(req.tokens) };
  } catch (err) {
    return { v: 1, ok: false, error: engineWireError(err) };
  }
}

/** The GPU's max clock as the machine knows it (0 before the GPU is open). */
export function maxClockOf(m: Pick<InstanceMachineState, 'supportedMhz'>): number {
  return m.supportedMhz[m.supportedMhz.length - 1] ?? 0;
}

/**
 * An admission (or a credited start) as the debug log tells it: the request, its age (ms since the gateway took it:
 * what the way to this instance took of its TTFT SLO), the machine's state it met (clock, queue, engine) and whether
 * it was taken. The twin check (test/bench/twin.bench.ts, TWIN_LOG_LEVEL=debug) lines these up with the simulated
 * instances' admissions.
 */
export function admissionLog(ev: Extract<InstanceEvent, { type: 'admit' | 'credited_start' }>, m: { clockMhz: number; queued: number; running: number }, effects: InstanceEffect[], now: number): Record<string, unknown> {
  const r = ev.req;
  return {
    admission: ev.type, rid: r.id, type: r.type, inputTokens: r.inputTokens, moves: r.moves, ageMs: now - r.arrivalMs, clockMhz: m.clockMhz, queued: m.queued, running: m.running,
    taken: effects.some((e) => (e.kind === 'admitted' || e.kind === 'start') && e.id === r.id),
  };
}
