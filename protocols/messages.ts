/**
 * Every message of dynamollm, as zod schemas (the validation) with their TypeScript types and codecs.
 * Each carries `v: 1`; the codec rejects any other version. Field units are in the names (Ms, W, J, Mhz).
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { REQUEST_TYPES } from './request-types.ts';
import { ACTOR_KINDS, EVENT_KINDS } from './subjects.ts';

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();
const requestType = z.enum(REQUEST_TYPES);
const loadByType = z.record(requestType, nonneg);
/** most tokens one coalesced TokenChunk may carry offsets for. */
export const MAX_CHUNK_TOKENS = 4096;

export const wireError = z.object({
  code: z.enum([
    'protocol', 'timeout', 'no_responders', 'remote', 'mailbox_full', 'overloaded', 'rejected', 'not_found',
    'unavailable', 'cancelled', 'engine_crashed', 'invalid_request', 'internal',
  ]),
  message: z.string().max(4096),
  retryable: z.boolean(),
  retryAfterS: nonneg.optional(),
});

/** Generic reply to commands, and the error reply to a request whose payload failed validation. */
export const ack = z.object({ v, ok: z.boolean(), error: wireError.optional(), detail: z.record(z.unknown()).optional() });
export type Ack = z.infer<typeof ack>;
export const Ack = codec('Ack', ack);

export const chatMessage = z.object({ role: z.enum(['system', 'user', 'assistant', 'tool', 'developer']), content: z.string() });

/** A client request as it travels gateway -> cluster -> pool -> instance. */
export const inferenceRequest = z.object({
  v,
  id,
  model: z.string().min(1).max(256),
  kind: z.enum(['completion', 'chat']),
  prompt: z.union([z.string(), z.array(int)]).optional(),
  messages: z.array(chatMessage).optional(),
  /** prompt length in tokens, counted at the gateway. */
  inputTokens: int,
  maxTokens: z.number().int().positive(),
  minTokens: int.optional(),
  ignoreEos: z.boolean().optional(),
  temperature: z.number().finite().optional(),
  tenant: z.string().max(128).optional(),
  /** wall time the gateway accepted it (ms since epoch). */
  arrivalMs: nonneg,
  /**
   * The client's give-up time (ms since epoch): past it nobody waits for the answer any more (the gateway's
   * request timeout, 600 s by default). Not the SLO: that is `slo` and `ttftDeadlineMs`.
   */
  giveUpAtMs: nonneg,
  /** where the instance sends TokenChunks (subjects.stream(id)). */
  streamSubject: z.string().min(1).max(256),
  /** set by the cluster manager on classification, with `slo` and `ttftDeadlineMs`. */
  type: requestType.optional(),
  /** the SLO of the request's type (p99 TTFT by input class, TBT), ms; set on classification. */
  slo: z.object({ ttftMs: nonneg, tbtMs: nonneg }).optional(),
  /** arrivalMs + slo.ttftMs: when its first token is due (the emergency reorder sorts by it), ms since epoch. */
  ttftDeadlineMs: nonneg.optional(),
  predictedOutputTokens: int.optional(),
  pool: z.string().max(128).optional(),
  /** times this request was moved between instances (emergency step 3, failures). */
  moves: int.optional(),
});
export type InferenceRequest = z.infer<typeof inferenceRequest>;
export const InferenceRequest = codec('InferenceRequest', inferenceRequest);

/** Answer to intake/dispatch/admit: accepted (tokens will follow on streamSubject) or refused. */
export const admission = z.object({
  v,
  id,
  ok: z.boolean(),
  type: requestType.optional(),
  pool: z.string().max(128).optional(),
  instance: z.string().max(128).optional(),
  error: wireError.optional(),
});
export type Admission = z.infer<typeof admission>;
export const Admission = codec('Admission', admission);

export const usage = z.object({
  promptTokens: int,
  completionTokens: int,
  energyJ: nonneg,
  /** where the energy figure came from: the GPU's counter, or the model (emulated GPU). */
  energySource: z.enum(['measured', 'modelled']),
});
export type Usage = z.infer<typeof usage>;

/** One piece of a token stream; the last one has `done: true` (with usage) or an `error`. */
export const tokenChunk = z.object({
  v,
  id,
  seq: int,
  text: z.string(),
  tokens: int,
  done: z.boolean().optional(),
  finishReason: z.enum(['stop', 'length', 'error', 'cancelled']).optional(),
  usage: usage.optional(),
  error: wireError.optional(),
  instance: z.string().max(128).optional(),
  pool: z.string().max(128).optional(),
  type: requestType.optional(),
  ttftMs: nonneg.optional(),
  /**
   * Coalesced chunks (instance config engine.streamCoalesceMs > 0) carry `tokens` tokens in `text`; this
   * gives each token's arrival from the engine, ms after the chunk's first token (so [0, ...], one entry
   * per token, non-decreasing). Absent: one token per chunk, or timing not known.
   */
  tokenOffsetsMs: z.array(nonneg).max(MAX_CHUNK_TOKENS).optional(),
});
export type TokenChunk = z.infer<typeof tokenChunk>;

// ---- hand-written validator of the hottest message (one per streamed chunk): exactly tokenChunk's rules
// for the common shapes; anything it does not vouch for (an error field, unknown keys, any doubt) returns
// false and goes through zod (protocols/codec.ts FastCheck). Checked against zod by protocols-fast.test.ts.
const ID_RE = /^[A-Za-z0-9_-]+$/;
const FINISH = new Set(['stop', 'length', 'error', 'cancelled']);
const TYPES = new Set<unknown>(REQUEST_TYPES);
const ENERGY_SOURCES = new Set(['measured', 'modelled']);
const isInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
const isNonneg = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
const isStr128 = (x: unknown) => typeof x === 'string' && x.length <= 128;
function fastUsage(u: unknown): boolean {
  if (u === null || typeof u !== 'object' || Array.isArray(u)) return false;
  let n = 0;
  for (const k in u) {
    if (!Object.prototype.hasOwnProperty.call(u, k)) return false;
    const x = (u as Record<string, unknown>)[k];
    n++;
    if (k === 'promptTokens' || k === 'completionTokens') {
      if (!isInt(x)) return false;
    } else if (k === 'energyJ') {
      if (!isNonneg(x)) return false;
    } else if (k === 'energySource') {
      if (!ENERGY_SOURCES.has(x as string)) return false;
    } else return false;
  }
  return n === 4;
}
function fastTokenChunk(c: Record<string, unknown>): boolean {
  if (Object.getPrototypeOf(c) !== Object.prototype) return false;
  let required = 0;
  for (const k in c) {
    if (!Object.prototype.hasOwnProperty.call(c, k)) return false;
    const x = c[k];
    switch (k) {
      case 'v':
        if (x !== 1) return false;
        required++;
        break;
      case 'id':
        if (typeof x !== 'string' || x.length < 1 || x.length > 128 || !ID_RE.test(x)) return false;
        required++;
        break;
      case 'seq':
      case 'tokens':
        if (!isInt(x)) return false;
        required++;
        break;
      case 'text':
        if (typeof x !== 'string') return false;
        required++;
        break;
      // optional fields: `undefined` is what zod's .optional() accepts as absent
      case 'done':
        if (x !== undefined && typeof x !== 'boolean') return false;
        break;
      case 'finishReason':
        if (x !== undefined && !FINISH.has(x as string)) return false;
        break;
      case 'usage':
        if (x !== undefined && !fastUsage(x)) return false;
        break;
      case 'instance':
      case 'pool':
        if (x !== undefined && !isStr128(x)) return false;
        break;
      case 'type':
        if (x !== undefined && !TYPES.has(x)) return false;
        break;
      case 'ttftMs':
        if (x !== undefined && !isNonneg(x)) return false;
        break;
      case 'tokenOffsetsMs':
        if (x === undefined) break;
        if (!Array.isArray(x) || x.length > MAX_CHUNK_TOKENS) return false;
        for (let i = 0; i < x.length; i++) if (!isNonneg(x[i])) return false;
        break;
      default:
        // `error` (rare: let zod judge it) and unknown keys (zod strips them: the output would differ)
        return false;
    }
  }
  return required === 5;
}
export const TokenChunk = codec('TokenChunk', tokenChunk, fastTokenChunk);
/** the fast validator alone, for the agreement test against zod. */
export const fastTokenChunkCheck: (c: Record<string, unknown>) => boolean = fastTokenChunk;

export const cancel = z.object({ v, id, reason: z.string().max(512) });
export type Cancel = z.infer<typeof cancel>;
export const Cancel = codec('Cancel', cancel);

export const lifecycleState = z.enum(['starting', 'running', 'draining', 'stopped', 'failed']);

export const heartbeat = z.object({
  v,
  kind: z.enum(ACTOR_KINDS),
  id,
  seq: int,
  /** process start, ms since epoch (a restart shows as a new startedMs). */
  startedMs: nonneg,
  sentMs: nonneg,
  state: lifecycleState,
  load: z.object({ queued: int, running: int, mailbox: int.optional(), rps: nonneg.optional() }),
  meta: z.record(z.union([z.string(), z.number(), z.boolean()])).optional(),
});
export type Heartbeat = z.infer<typeof heartbeat>;
export const Heartbeat = codec('Heartbeat', heartbeat);

export const instanceTelemetry = z.object({
  v,
  id,
  pool: z.string().max(128),
  node: z.string().max(128).optional(),
  tp: z.number().int().positive(),
  gpus: z.array(int),
  clockMhz: nonneg,
  maxClockMhz: nonneg,
  /** instance power (sum over its GPUs), W. */
  powerW: nonneg,
  /** cumulative instance energy since the manager started, J. */
  energyJ: nonneg,
  energySource: z.enum(['measured', 'modelled']),
  queued: int,
  running: int,
  kvUsage: nonneg.optional(),
  loadByType,
  ttftP99Ms: nonneg.optional(),
  tbtP99Ms: nonneg.optional(),
  emergency: z.string().max(64).optional(),
  state: z.string().max(32),
  sentMs: nonneg,
});
export type InstanceTelemetry = z.infer<typeof instanceTelemetry>;
export const InstanceTelemetry = codec('InstanceTelemetry', instanceTelemetry);

/** One finished (or failed) request, for latency/SLO/energy accounting. */
export const requestRecord = z.object({
  v,
  id,
  type: requestType,
  pool: z.string().max(128),
  instance: z.string().max(128).optional(),
  outcome: z.enum(['ok', 'rejected', 'failed', 'cancelled']),
  promptTokens: int,
  completionTokens: int,
  ttftMs: nonneg.optional(),
  /** mean and max time between tokens of this request, ms. */
  tbtMeanMs: nonneg.optional(),
  tbtMaxMs: nonneg.optional(),
  energyJ: nonneg,
  energySource: z.enum(['measured', 'modelled']),
  sloMet: z.boolean(),
  predictedType: requestType.optional(),
  finishedMs: nonneg,
});
export type RequestRecord = z.infer<typeof requestRecord>;
export const RequestRecord = codec('RequestRecord', requestRecord);

/** A decision or reconfiguration, with the inputs that justified it. */
export const decisionEvent = z.object({
  v,
  kind: z.enum(EVENT_KINDS),
  actor: z.string().max(128),
  atMs: nonneg,
  summary: z.string().max(1024),
  decision: z.record(z.unknown()),
  inputs: z.record(z.unknown()),
});
export type DecisionEvent = z.infer<typeof decisionEvent>;
export const DecisionEvent = codec('DecisionEvent', decisionEvent);

export const statusRequest = z.object({ v, detail: z.boolean().optional() });
export type StatusRequest = z.infer<typeof statusRequest>;
export const StatusRequest = codec('StatusRequest', statusRequest);

export const clusterStatus = z.object({
  v,
  leader: z.string().max(128),
  atMs: nonneg,
  pools: z.array(
    z.object({
      id: z.string().max(128),
      types: z.array(requestType),
      gpus: int,
      leader: z.string().max(128).optional(),
      instances: z.array(
        z.object({
          id: z.string().max(128),
          tp: z.number().int().positive(),
          gpus: z.array(int),
          node: z.string().max(128).optional(),
          clockMhz: nonneg,
          powerW: nonneg,
          energyJ: nonneg,
          queued: int,
          running: int,
          state: z.string().max(32),
        }),
      ),
    }),
  ),
  freeGpus: int,
  powerW: nonneg,
  energyJ: nonneg,
});
export type ClusterStatus = z.infer<typeof clusterStatus>;
export const ClusterStatus = codec('ClusterStatus', clusterStatus);

/** All codecs, for round-trip tests and the garbage-payload tests. */
export const ALL_CODECS = {
  Ack, InferenceRequest, Admission, TokenChunk, Cancel, Heartbeat, InstanceTelemetry, RequestRecord,
  DecisionEvent, StatusRequest, ClusterStatus,
} as const;
