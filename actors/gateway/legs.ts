/**
 * The gateway's bookkeeping of a request streamed from engines directly (actors/gateway/nats-backend.ts):
 * what the client has seen across legs, token timing on the gateway's clock, and the continuation leg of a
 * request whose engine or instance died (request migration, docs/DATAPATH.md); waiting for NATS to reconnect;
 * a request-reply retried inside a deadline.
 */
import type { NativeOffer } from './data-plane.ts';
import type { ReaderFlow } from '../../src/engine/client.ts';
import { randomBytes } from 'node:crypto';
import type { Bus } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { subjects } from '../../protocols/subjects.ts';
import { Cancel, LegReply, type InferenceRequest, type TokenChunk } from '../../protocols/messages.ts';
import { DynError, type WireError } from '../../protocols/errors.ts';
import type { EngineChunk, EngineCompletionRequest } from '../../src/engine/engine.ts';
import { EngineHttpError, EngineTimeoutError } from '../../src/engine/errors.ts';
import type { JournalLeg, ResumeFrom } from './resume.ts';
import type { LegEnergy } from './leg-energy.ts';
import { estimatedLegRecord, publishLegRecord } from './leg-record.ts';
import { continuable, rerunnable } from '../../src/policy/drain-migration.ts';
import { deadlineEnd, deadlineError, pastDeadline } from '../../src/policy/deadline.ts';
export { accountSpan, nativeOf } from './native-leg.ts';
export { DEADLINE_ERROR, deadlineError, pastDeadline } from '../../src/policy/deadline.ts';
export { continuation, contextFullEnd, countedBy, countedWithin, continuationEnd, continuationError } from './continuation.ts';

/** The control plane ended a leg (an error chunk on its stream subject while the gateway read the engine). */
export class LegEnded extends Error {
  constructor(readonly error: WireError) {
    super(error.message);
  }
}

/** Counters of the admission path (the gateway's metrics and the chaos harness read them). */
export interface AdmissionCounters {
  /** intake attempts sent again after one hit a dead manager or a dropped connection. */
  retries: number;
  /** requests that waited for NATS to reconnect before their first attempt. */
  heldForReconnect: number;
  /** terminal chunks accepted although their seq had been seen (a stream ended by someone else than its instance). */
  foreignTerminals: number;
  /** requests that continued on another leg after their engine or instance died mid-stream. */
  migrated: number;
  /** legs admitted by an instance the gateway chose itself (one round trip, or none on a credit). */
  routed: number;
  /** routed legs started on a credit the instance lent this gateway (no round trip). */
  credited: number;
  /** legs the gateway sent to the cluster intake (no routing table, nothing ready in its view, a refusal as unavailable, an admit that timed out). */
  viaIntake: number;
  /** routed legs whose instance process died (or was replaced) before their stream ended: admitted again elsewhere, or ended at once. */
  holderDied: number;
  /** legs a pool announced it held for a ready instance (TokenChunk.hold): their admission was waited for past admitTimeoutMs when the hold needed it. */
  poolHolds: number;
  /** legs whose intake was waited for past admitTimeoutMs because a leader election was under way during it (elections.ts). */
  electionHolds: number;
  /** prompts (and detokenize calls) no instance's tokenizer answered at the first attempt, answered by the gateway's own copy of the engines' tokenizer. */
  localTokenized: number;
  /** resumable streams this gateway took over from another replica (a reconnect with Last-Event-ID) and continued as a new leg. */
  resumed: number;
  /** legs whose instance died before answering their end report: their energy estimated from its telemetry (leg-energy.ts). */
  energyEstimated: number;
  /** the estimated energy of those legs (each one's record's energyEstimatedJ) by its source, J. */
  estimatedMeasuredJ: number;
  estimatedModelledJ: number;
  /** relayed legs (the NATS data path) ended at a missing chunk (relayGapChunk): continued on another leg, or ended with a retryable error. */
  relayGaps: number;
  /** times a relayed leg's instance used its whole credit window (its client behind): it waits for the next grant (relay-flow.ts). */
  relayWaits: number;
  /** relayed legs ended because their hold at the gateway passed RELAY_HOLD_BYTES (their instance did not wait for its grant). */
  relayOverflows: number;
  /** chunks ignored because another instance than the leg's own sent them (relay-order.ts LegOrder.own: a second admission of the same leg id). */
  otherCopies: number;
}

/** An engine URL's host and port, parsed once per URL (a grant names one of a few engines; bounded). */
const engineAddresses = new Map<string, { host: string; port: number }>();
export function engineAddress(url: string): { host: string; port: number } {
  let a = engineAddresses.get(url);
  if (a) return a;
  const u = new URL(url);
  a = { host: u.hostname, port: Number(u.port) };
  if (engineAddresses.size >= 1024) engineAddresses.clear();
  engineAddresses.set(url, a);
  return a;
}

/** What the client's stream has seen so far, across legs. */
export interface StreamState {
  /** next seq of the client's stream. */
  out: number;
  /** tokens sent to the client. */
  sent: number;
  /** their text (for a continuation), while the migration caps let it be kept (MigrationText). */
  text: string;
  /** the text's size, UTF-8 bytes, counted piece by piece as it is kept. */
  textBytes: number;
  /** the text is kept: false once a cap was passed (the stream can no longer migrate; it goes on streaming). */
  keepText: boolean;
  energyJ: number;
  energySource?: 'measured' | 'modelled';
  /** of energyJ, the estimate of the legs whose instance died before answering their end report (chargeLeg). */
  energyEstimatedJ?: number;
  promptTokens?: number;
  /** legs after the first (migrations and resumes). */
  legs: number;
  /** of those, the legs a resume on another gateway started (resume.ts): not counted against the migration limit. */
  resumes?: number;
  /** the last chunk of the request was given to the client: its instance knows the leg ended, so no Cancel. */
  ended?: boolean;
  /** the reader's batch sink threw: the stream ends with its exception (the leg cancelled, no migration, no error chunk). */
  readerFailed?: boolean;
  /**
   * the client got a tool-call or reasoning delta (sentEvent): output a continuation's prompt cannot carry (it takes
   * text only), so the stream does not migrate (canMigrate) and a broken leg ends it with a retryable error.
   */
  opaque?: boolean;
  /** what makes this stream's continuation leg ids its own (a resume's: resumedState), so no two resumes reuse a leg id. */
  legTag?: string;
}

/**
 * A reader's callback for the batches of a leg streamed from its engine (`batches(sink)`): called synchronously
 * from the engine socket's read, in stream order with the batches yielded. An exception it throws ends the stream
 * (the leg cancelled, no migration) and is what the iteration throws. `flow`: the reader's client (client-flow.ts),
 * whose backlog stops the engine's reads until it drains.
 */
export type BatchSink = ((batch: readonly TokenChunk[]) => void) & { native?: NativeOffer; flow?: ReaderFlow };

/** Token timing of one leg, on the gateway's clock: first token (wall ms) and the gaps between tokens. */
export interface LegTiming {
  tokens: number;
  firstMs?: number;
  lastPerf?: number;
  tbtSum: number;
  tbtMax: number;
  tbtN: number;
}

/** An event of k tokens arrived now; `offs` (the emulator's) says when the engine made each, ms after the first. */
export function timeTokens(t: LegTiming, k: number, offs: number[] | undefined, nowMs: number): void {
  const p = performance.now();
  for (let i = 0; i < k; i++) {
    const at = offs ? Math.max(t.lastPerf ?? -Infinity, p - (offs[k - 1]! - offs[i]!)) : p;
    if (t.firstMs === undefined) t.firstMs = nowMs - (offs ? offs[k - 1]! - offs[0]! : 0);
    else if (t.lastPerf !== undefined) {
      const d = at - t.lastPerf;
      t.tbtSum += d;
      t.tbtN++;
      if (d > t.tbtMax) t.tbtMax = d;
    }
    t.lastPerf = at;
  }
  t.tokens += k;
}

/**
 * An engine event given to the client (text, a tool-call delta, reasoning, logprobs): its tokens, counted in `st.sent`
 * (the engine's count of a multi-token event, else one for an event with output, none for logprobs alone), and its text
 * kept for a continuation. A tool-call or reasoning delta makes the stream opaque: the text kept no longer says what the
 * client has (the tool call's text is what vLLM's tool parser made of tokens the gateway never sees; a chat template
 * closes the reasoning of a continued assistant turn), so the text is released and the stream cannot migrate.
 */
export function sentEvent(st: StreamState, ch: Pick<EngineChunk, 'text' | 'tokens' | 'toolCalls' | 'reasoning'>, kept: MigrationText): number {
  const other = ch.toolCalls !== undefined || !!ch.reasoning;
  const k = ch.tokens ?? (ch.text !== '' || other ? 1 : 0);
  st.sent += k;
  if (other && !st.opaque) {
    st.opaque = true;
    kept.release(st);
  }
  kept.append(st, ch.text);
  return k;
}

export async function* flatten(batches: AsyncIterable<readonly TokenChunk[]>): AsyncGenerator<TokenChunk> {
  for await (const b of batches) yield* b;
}

/**
 * An admitted stream (NatsBackend's AdmittedStream): its admission, its batches, and its chunks one by one. A class: an
 * object literal with a computed `[Symbol.asyncIterator]` member is built on V8's slow path, once per request.
 */
export class AdmittedBatches<A> {
  constructor(readonly admission: A, readonly batches: (sink?: BatchSink) => AsyncIterable<readonly TokenChunk[]>) {}
  [Symbol.asyncIterator](): AsyncIterator<TokenChunk> {
    return flatten(this.batches())[Symbol.asyncIterator]();
  }
}

/** What the cluster or the connection answered that another attempt (same id) can fix: a dead or moving manager. */
export function retryableAdmission(code: string | undefined): boolean {
  return code === 'timeout' || code === 'no_responders' || code === 'unavailable';
}

/** A tokenizer reply another attempt may fix: its instance's engine did not answer. */
export const engineDown = (r: { ok: boolean; error?: WireError }): boolean => !r.ok && retryableAdmission(r.error?.code) && r.error?.retryable !== false;

/** The engine call of leg `lr` at `nowMs` (the gateway's direct read): its deadline the leg's give-up time, its idle deadlines `idle`; `counted`: the usage so far on every event (a leg that may migrate). */
export function engineRequestOf(lr: InferenceRequest, nowMs: number, idle: EngineCompletionRequest['idle'], counted: boolean): EngineCompletionRequest {
  return {
    model: lr.model,
    prompt: lr.prompt ?? (lr.messages ? undefined : ''),
    chat: lr.messages,
    maxTokens: lr.maxTokens,
    minTokens: lr.minTokens,
    ignoreEos: lr.ignoreEos,
    temperature: lr.temperature,
    params: lr.params,
    requestId: lr.id,
    timeoutMs: Math.max(1000, lr.giveUpAtMs - nowMs),
    continuousUsage: counted,
    ...(idle ? { idle } : {}),
  };
}

/** `c` with where its leg ran (the grant's instance, pool and type, those it names), in that order. */
export function placedChunk(c: TokenChunk, grant: Pick<TokenChunk, 'instance' | 'pool' | 'type'>): TokenChunk {
  if (grant.instance) c.instance = grant.instance;
  if (grant.pool) c.pool = grant.pool;
  if (grant.type) c.type = grant.type;
  return c;
}

/**
 * A request may go on as a new leg at `now`: before its give-up time (pastDeadline) and with legs left (`limit`), either
 * as it came when nothing reached its client (rerunnable: continuable or not), or continued on a peer (canContinue).
 */
export function canMigrate(req: InferenceRequest, st: StreamState, limit: number, now: number): boolean {
  if (pastDeadline(req, now) || st.legs - (st.resumes ?? 0) >= limit) return false;
  return rerunnable(st) || canContinue(req, st);
}

/**
 * A stream the client has text of may continue on a peer: its text kept, no tool-call or reasoning output sent (opaque),
 * tokens still to make, a prompt it can extend without changing what the model must write (continuable).
 */
export function canContinue(req: InferenceRequest, st: StreamState): boolean {
  if (!st.keepText || st.opaque || st.sent >= req.maxTokens) return false;
  // echo would repeat the prompt (and the text already sent) at the start of the next leg; a token-id prompt takes no
  // text; guided decoding would start its grammar again after the text already sent
  return continuable(req);
}

/** The most text a gateway keeps for migration, UTF-8 bytes: per stream, and in all (its streams' together). */
export interface MigrationCaps {
  maxBytes: number;
  maxTotalBytes: number;
}

/**
 * Whether a stream that keeps `streamBytes` of text keeps a piece of `pieceBytes` more, while the gateway's streams
 * keep `totalBytes` in all: both caps still hold with it. False: the stream stops keeping text (it can no longer migrate).
 */
export function keepsPiece(streamBytes: number, pieceBytes: number, totalBytes: number, caps: MigrationCaps): boolean {
  return streamBytes + pieceBytes <= caps.maxBytes && totalBytes + pieceBytes <= caps.maxTotalBytes;
}

/**
 * The text a gateway's streams keep for migration, bounded per stream and in all (`caps`, keepsPiece). A stream's text
 * counts in `totalBytes` from claim (its stream loop's start) until release (its end, or the moment it stops keeping
 * text); each piece is measured once, as it is appended. `dropped` counts the streams a cap made stop keeping text.
 */
export class MigrationText {
  totalBytes = 0;
  dropped = 0;
  constructor(readonly caps: MigrationCaps) {}

  /** `piece` joins the stream's text when both caps hold with it; else the stream stops keeping text. */
  append(st: StreamState, piece: string): void {
    if (!st.keepText || piece === '') return;
    const b = Buffer.byteLength(piece);
    if (!keepsPiece(st.textBytes, b, this.totalBytes, this.caps)) return this.drop(st);
    st.text += piece;
    st.textBytes += b;
    this.totalBytes += b;
  }

  /** The text a stream starts with (a resumed stream's, from its journal) counted in the total; dropped when a cap does not hold with it. */
  claim(st: StreamState): void {
    const b = st.textBytes;
    st.textBytes = 0;
    if (!st.keepText || b === 0) return;
    if (!keepsPiece(0, b, this.totalBytes, this.caps)) return this.drop(st);
    st.textBytes = b;
    this.totalBytes += b;
  }

  /** The stream ended: its text leaves the total, and the stream keeps no more text (an append after it is not counted). */
  release(st: StreamState): void {
    this.totalBytes -= st.textBytes;
    st.textBytes = 0;
    st.text = '';
    st.keepText = false;
  }

  private drop(st: StreamState): void {
    this.release(st);
    this.dropped++;
  }
}

/** The gateway's own end of leg `id` whose instance process is gone (router.ts holderGone): retryable, so a leg that never started is sent again. */
export function holderGoneChunk(id: string): TokenChunk {
  return {
    v: 1, id, seq: 0, text: '', tokens: 0, done: true, finishReason: 'error',
    error: { code: 'unavailable', message: 'the instance holding this request stopped before finishing it; retry', retryable: true, retryAfterS: 1 },
  };
}

/**
 * A leg silent for chunkTimeoutMs (the ChunkQueue's retryable timeout) as its retryable end, after `cancel` (its instance
 * may hold it or still serve it), instead of ending the client's stream: the next leg of a stream the client already
 * has tokens of, silent since its admission, is sent again as one ended before it started (its instance died holding
 * it, nobody left to end it); a relayed leg silent mid-stream (`started`) ends as lost (`unavailable`, legLost) and
 * continues on a new leg from the text sent. Any other error is thrown.
 */
export function silentLegEnd(err: unknown, id: string, cancel: () => void, started = false): TokenChunk {
  if (!(err instanceof DynError) || err.code !== 'timeout') throw err;
  cancel();
  return { v: 1, id, seq: 0, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: started ? 'unavailable' : 'timeout', message: err.message, retryable: true, retryAfterS: 1 } };
}

/** Resolves once NATS is connected (at once when it is), false when `ms` passed first (on `clock`) or the bus closed. */
export function waitConnected(bus: Pick<Bus, 'connected' | 'closed'>, ms: number, signal: AbortLike, clock: Clock = systemClock): Promise<boolean> {
  if (bus.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      clock.clearInterval(t);
      clock.clearTimeout(to);
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const onAbort = () => done(false);
    // the Bus flips `connected` on the client's reconnect status; poll it (a few requests at most wait here)
    const t = clock.setInterval(() => {
      if (bus.connected) done(true);
      else if (bus.closed) done(false);
    }, 25);
    const to = clock.setTimeout(() => done(bus.connected), Math.max(0, ms));
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A deadline that does not move. */
export const fixed = (ms: number) => (): number => ms;

/**
 * One request-reply, sent again (after a short backoff) while it fails in a way another attempt can fix:
 * no reply within `attemptMs`, no responders, a dropped connection (it first waits for the reconnect), or
 * a reply `again(reply)` says is worth another attempt; until `until()` (read at each step: a pool's hold
 * notice moves it), on `clock`. The last failure is thrown, or the last reply returned, when the budget is
 * spent. The callee must be idempotent.
 */
export async function retrying<R>(
  bus: Pick<Bus, 'connected' | 'closed'>, counters: { retries: number; heldForReconnect: number }, until: () => number, attemptMs: number,
  signal: AbortLike | undefined, send: (timeoutMs: number) => Promise<R>, again: (r: R) => boolean = () => false, clock: Clock = systemClock,
): Promise<R> {
  let wait = 50;
  for (let attempt = 0; ; attempt++) {
    if (!bus.connected) {
      if (attempt === 0) counters.heldForReconnect++;
      if (!(await waitConnected(bus, until() - clock.now(), signal ?? new LeanAbort(), clock))) {
        if (signal?.aborted) throw new DynError('cancelled', 'client disconnected', { retryable: false });
        throw new DynError('unavailable', 'the gateway lost its connection to the cluster and it did not come back in time', { retryable: true, retryAfterS: 1 });
      }
    }
    try {
      const r = await send(Math.max(1, Math.min(attemptMs, until() - clock.now())));
      if (!again(r) || clock.now() + wait >= until()) return r;
    } catch (err) {
      const e = err as DynError;
      const fixable = e instanceof DynError && (retryableAdmission(e.code) || !bus.connected);
      if (signal?.aborted || !fixable || clock.now() + wait >= until()) throw err;
    }
    counters.retries++;
    await clock.sleep(wait);
    wait = Math.min(500, wait * 2);
  }
}

/**
 * An instance's answer when the first attempt (deadline `attemptMs`) gets one; what another attempt could fix (no
 * responders, no reply in time, its engine down, NATS not connected) is answered by `here` (the gateway's own copy of
 * the engines' tokenizer) at once: its answer is the engines' own, so waiting for an instance would only delay it.
 */
export async function firstOrLocal<R extends { ok: boolean; error?: WireError }>(
  bus: Pick<Bus, 'connected'>, counters: { localTokenized: number }, attemptMs: number, remote: (timeoutMs: number) => Promise<R>, here: () => Promise<R>,
): Promise<R> {
  if (bus.connected) {
    try {
      const r = await remote(attemptMs);
      if (!engineDown(r)) return r;
    } catch (err) {
      if (!(err instanceof DynError) || !(retryableAdmission(err.code) || !bus.connected)) throw err;
    }
  }
  counters.localTokenized++;
  return here();
}

import { endReport } from './leg-reports.ts';
import { LeanAbort, type AbortLike } from '../../src/runtime/abort.ts';
export { LEG_REPORT_BATCH, creditedReport, endReport, flushLegReports, keptSeat, legReport, legStarted, reportAs } from './leg-reports.ts';

/** The legs charged an estimate, and their estimated joules by source (AdmissionCounters'). */
type EstimateCounters = Pick<AdmissionCounters, 'energyEstimated'> & Partial<Pick<AdmissionCounters, 'estimatedMeasuredJ' | 'estimatedModelledJ'>>;

/**
 * Adds a leg's energy to `st`: its instance's figure in its answer to the end report, else the engine's own figure
 * (`engineJ`, modelled); with neither (the instance died before answering, or answered without a figure: a restarted
 * process, or one that ended the leg itself when its engine crashed, holds no such request), the estimate from its
 * instance's telemetry (leg-energy.ts), counted in `energyEstimatedJ` too. `fallback`: the source of a leg whose energy
 * nobody knows. Returns the estimate when it charged one: no instance records that leg, so its record is the
 * gateway's to publish (leg-record.ts).
 */
export function chargeLeg(
  st: StreamState, reply: LegReply | undefined, engineJ: number | undefined, estimate: (() => LegEnergy | undefined) | undefined, counters: EstimateCounters, fallback?: 'measured',
): LegEnergy | undefined {
  const e = reply?.energyJ === undefined && engineJ === undefined ? estimate?.() : undefined;
  if (e) {
    counters.energyEstimated++;
    const k = e.energySource === 'measured' ? 'estimatedMeasuredJ' : 'estimatedModelledJ';
    counters[k] = (counters[k] ?? 0) + e.energyJ;
    st.energyJ += e.energyJ;
    st.energyEstimatedJ = (st.energyEstimatedJ ?? 0) + e.energyJ;
  }
  else st.energyJ += reply?.energyJ ?? engineJ ?? 0;
  const source = e?.energySource ?? reply?.energySource ?? (engineJ !== undefined ? 'modelled' : fallback);
  if (source) st.energySource ??= source;
  return e;
}

/**
 * A leg that never started may be sent again: as a migration, while the request's give-up time leaves room (`now` plus
 * the admission's wait, at most 5 s), and while nothing was sent for it only until `firstByMs` (holdLimitMs after its
 * admission began): each new leg may wait chunkTimeoutMs again, and a client with no answer gets the retryable error
 * instead of that wait.
 */
export function canRedrive(req: InferenceRequest, st: StreamState, firstByMs: number, now: number, admitTimeoutMs: number, migrationLimit: number): boolean {
  return now + Math.min(admitTimeoutMs, 5000) < req.giveUpAtMs && (st.sent > 0 || now < firstByMs) && canMigrate(req, st, migrationLimit, now);
}

/**
 * How a direct leg whose engine call failed with `err` ends (`ended`: the instance's own end of it): the instance's
 * error, a refusal of the engine (400: not retryable), else a retryable engine failure that may migrate; but at or past
 * the request's give-up time (the engine call's deadline fired, EngineTimeoutError, or `now` is past it) a retryable end
 * is the request's timeout, DEADLINE_ERROR, and its leg's outcome 'timed_out' (not a crash).
 */
export function legFailure(err: unknown, ended: WireError | undefined, req: InferenceRequest, now: number): { w: WireError; outcome: 'failed' | 'timed_out' } {
  const w: WireError = ended
    ?? (err instanceof EngineHttpError && !err.retryable
      ? { code: 'invalid_request', message: err.engineMessage, retryable: false }
      : { code: 'engine_crashed', message: 'the engine serving this request failed; retry', retryable: true, retryAfterS: 1 });
  return deadlineEnd(w, err instanceof EngineTimeoutError, req, now);
}

/** Why a resumed stream cannot continue: its give-up time has passed (the timeout), or nothing lets it (canMigrate). */
export function cannotContinue(req: InferenceRequest, now: number): DynError {
  return pastDeadline(req, now) ? deadlineError() : new DynError('unavailable', 'the stream cannot continue (nothing left to generate, or its text is past the migration cap)', { retryable: false });
}

/** The client's usage at the end of the stream: tokens and energy summed over its legs. */
export function usageOf(st: StreamState): NonNullable<TokenChunk['usage']> {
  const u: NonNullable<TokenChunk['usage']> = { promptTokens: st.promptTokens ?? 0, completionTokens: st.sent, energyJ: st.energyJ, energySource: st.energySource ?? 'measured' };
  if (st.energyEstimatedJ) u.energyEstimatedJ = st.energyEstimatedJ;
  return u;
}

/**
 * The state of a stream resumed from its journal (`from`): its tokens and text, the legs and energy (its estimated part
 * too) before it, one more resume. Its leg ids carry `nonce` (legTag): a resume whose gateway died after its leg was
 * admitted, before the journal had that leg, leaves the journal as it was, and the next resume must not ask an
 * instance for a leg id it already holds (an instance answers a known id without a new grant).
 */
export function resumedState(req: InferenceRequest, from: ResumeFrom, maxTextBytes: number, nonce: string = randomBytes(3).toString('hex')): StreamState {
  const textBytes = Buffer.byteLength(from.text);
  return {
    out: 0, sent: from.sent, text: from.text, textBytes, keepText: textBytes <= maxTextBytes, energyJ: from.leg?.energyJ ?? 0, legs: (from.leg?.legs ?? 0) + 1,
    resumes: from.resumes + 1, legTag: `g${from.resumes + 1}${nonce}`, promptTokens: req.inputTokens, ...(from.leg?.energyEstimatedJ ? { energyEstimatedJ: from.leg.energyEstimatedJ } : {}),
    ...(from.leg?.energySource ? { energySource: from.leg.energySource } : {}),
  };
}

/**
 * The leg another gateway streamed (a resumed stream's `from.leg`: that gateway died, or its client's connection did),
 * ended on its behalf: an end report ('failed', the tokens the journal has of it, `resumed`) to its instance, which
 * stops that gateway's engine call if it still runs (an error chunk on the leg's stream subject, which a direct leg's
 * gateway obeys), records the leg once and frees its engine slot now instead of at the request's deadline; the
 * energy it answers goes into `st`. An answer without a figure (the instance ended the leg already, when the dead
 * gateway's heartbeats lapsed, and recorded it): nothing added. No answer (the instance died too): the leg is charged
 * the estimate from that instance's telemetry since the leg's start (`estimateFrom(instance, leg.startedMs)`:
 * InstanceEnergyMeters.markAt), counted in `energyEstimatedJ`, and the gateway publishes the leg's record with it
 * (leg-record.ts), as for a leg of its own. Then a Cancel, for a relayed leg (its instance stops streaming it).
 */
export async function endForeignLeg(
  bus: Bus, timeoutMs: number, req: InferenceRequest, from: ResumeFrom, st: StreamState,
  estimateFrom?: (instance: string, startedMs: number) => (() => LegEnergy | undefined) | undefined, counters: EstimateCounters = { energyEstimated: 0 }, clock: Pick<Clock, 'now'> = systemClock,
): Promise<void> {
  const leg = from.leg;
  if (!leg) return;
  if (leg.instance) {
    const t: LegTiming = { tokens: Math.max(0, from.sent - leg.sentBefore), tbtSum: 0, tbtMax: 0, tbtN: 0 };
    const reply = await endReport(bus, timeoutMs, leg.instance, leg.id, 'failed', t, undefined, { resumed: true });
    if (reply?.ok) chargeLeg(st, reply, undefined, undefined, counters);
    const estimate = !reply && leg.startedMs !== undefined ? estimateFrom?.(leg.instance, leg.startedMs) : undefined;
    const e = estimate && chargeLeg(st, undefined, undefined, estimate, counters);
    if (e) {
      const legReq: InferenceRequest = { ...req, id: leg.id, inputTokens: req.inputTokens + leg.sentBefore };
      publishLegRecord(bus, estimatedLegRecord(req, legReq, { instance: leg.instance, ...(leg.pool ? { pool: leg.pool } : {}), ...(leg.type ? { type: leg.type } : {}) }, 'failed', t, t.tokens, e, clock.now()));
    }
  }
  // a relayed leg (the instance streams it: its end report is not_found) ends here, as does one whose instance was slow to answer
  try {
    bus.publish(subjects.cancel(leg.id), Cancel, { v: 1, id: leg.id, reason: 'its stream was resumed on another gateway' });
  } catch {
    // the connection is gone: the instance frees the slot at the request's deadline
  }
}

/**
 * The journal's record of leg `id` now generating (resume.ts JournalLeg): the legs, tokens and energy (its estimated
 * part too) before it; where (`at`: its instance, pool and type) and when (`startedMs`) it started streaming.
 */
export function legOf(id: string, at: Pick<TokenChunk, 'instance' | 'pool' | 'type'>, st: StreamState, startedMs?: number): JournalLeg {
  return {
    id, ...(at.instance ? { instance: at.instance } : {}), legs: st.legs, sentBefore: st.sent, energyJ: st.energyJ,
    ...(st.energyEstimatedJ ? { energyEstimatedJ: st.energyEstimatedJ } : {}), ...(st.energySource ? { energySource: st.energySource } : {}),
    ...(startedMs !== undefined ? { startedMs } : {}), ...(at.pool ? { pool: at.pool } : {}), ...(at.type ? { type: at.type } : {}),
  };
}
