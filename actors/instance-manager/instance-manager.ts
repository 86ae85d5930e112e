/**
 * Instance manager: owns one engine process and the clocks of its GPUs.
 * - admits requests (subjects.instanceAdmit) into its own bounded admission queue, keeps at most
 *   `engine.maxInEngine` of them inside the engine, streams tokens back on each request's streamSubject;
 * - every instance epoch picks the least-energy SM clock that meets the SLO at the measured load
 *   (policy chooseClock, from the profile);
 * - walks the emergency ladder (policy emergencyStep) every tick: reorder by deadline, max clock, move
 *   not-yet-started requests to peers through the pool leader, reject those waiting past the threshold
 *   with a retryable error; each step is a decision event;
 * - publishes InstanceStatus (liveness + dispatch view), InstanceTelemetry and one RequestRecord per request.
 * No request is dropped silently: every admitted request ends with a done chunk or an error chunk.
 */
import type { Logger } from 'pino';
import { appendFileSync } from 'node:fs';
import {
  Admission, Cancel, InferenceRequest, InstanceCommand, InstanceStatus, InstanceTelemetry, MoveReply, MoveRequest,
  RequestRecord, TokenChunk, Ack, controlSubjects, subjects, DynError, toWireError,
  TokenizeRequest, TokenizeReply, DetokenizeRequest, DetokenizeReply, TOKENIZER_QUEUE,
  type InstanceCommand as InstanceCommandT, type RequestType, type WireError,
  type TokenizeRequest as TokenizeRequestT, type TokenizeReply as TokenizeReplyT,
  type DetokenizeRequest as DetokenizeRequestT, type DetokenizeReply as DetokenizeReplyT,
} from '../../protocols/index.ts';
import type { Bus, ServeHandle, SubscribeHandle } from '../../src/runtime/bus.ts';
import type { Engine, EngineChunk } from '../../src/engine/engine.ts';
import { EngineHttpError } from '../../src/engine/errors.ts';
import type { GpuControl } from '../../src/gpu/index.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { AdmissionQueue, type Queued } from '../common/admission-queue.ts';
import { decideClock, decidePrefillFloor, decideEmergency, classified, type ClassifiedRequest, type EmergencyObservation, type EmergencyState } from '../common/policy.ts';
import { initialEmergencyState } from '../../src/policy/emergency.ts';

/** diagnosis: a file to append one line per request's TTFT breakdown to (arrival, admission, start, first token). */
const TTFT_TRACE = process.env.DYNAMOLLM_TTFT_TRACE;

export type InstanceState = 'starting' | 'ready' | 'restarting' | 'draining' | 'stopped' | 'failed';

export interface InstanceManagerOptions {
  id: string;
  pool: string;
  node?: string;
  tp: 1 | 2 | 4 | 8;
  gpuIds: number[];
  config: ClusterConfig;
  bus: Bus;
  log: Logger;
  /** the engine (not started yet); the manager starts and stops it. */
  engine: Engine;
  /** opens the GPU control once the engine is up (the emulated backend needs its URL). */
  openGpu: (engineBaseUrl: string) => Promise<GpuControl>;
  /** profile for the clock epoch; without one the instance stays at max clock. */
  profile?: Profile;
  /** ms between emergency checks; default 100. */
  emergencyTickMs?: number;
}

interface Running {
  req: ClassifiedRequest;
  ac: AbortController;
  seq: number;
  startedMs: number;
  /** first token's arrival, Date.now() ms (TTFT). */
  firstTokenMs?: number;
  /** last token's arrival (engine time when the engine says), performance.now() ms (TBT). */
  lastTokenMs?: number;
  tbtSum: number;
  tbtMax: number;
  tbtN: number;
  /** energy attributed from the GPU counter while it ran, J. */
  energyJ: number;
}

export class InstanceManager {
  readonly id: string;
  readonly pool: string;
  state: InstanceState = 'starting';
  readonly startedMs = Date.now();
  #o: InstanceManagerOptions;
  #log: Logger;
  #bus: Bus;
  #evt: EventPublisher;
  #queue: AdmissionQueue;
  #running = new Map<string, Running>();
  /** DYNAMOLLM_TTFT_TRACE: running and queued when each request was admitted. */
  #admitState = new Map<string, [number, number]>();
  #cancelSubs = new Map<string, SubscribeHandle>();
  #serves: (ServeHandle | SubscribeHandle)[] = [];
  #timers: NodeJS.Timeout[] = [];
  #gpu?: GpuControl;
  #clockMhz = 0;
  #maxClockMhz = 0;
  #minClockMhz = 0;
  #supported: number[] = [];
  /** the pool forced a clock (set_clock) until this time, ms. */
  #forcedUntil = 0;
  #emergency: { step?: string; since?: number; maxClock: boolean } = { maxClock: false };
  #moving = false;
  #arrivals: Partial<Record<RequestType, number>> = {};
  #arrivalWindowStart = Date.now();
  #load: Partial<Record<RequestType, number>> = {};
  #energy0?: number;
  #energyLast = 0;
  #powerW = 0;
  #seq = 0;
  #ttfts: number[] = [];
  #tbts: number[] = [];
  #stopping?: Promise<void>;

  constructor(o: InstanceManagerOptions) {
    this.#o = o;
    this.id = o.id;
    this.pool = o.pool;
    this.#bus = o.bus;
    this.#log = o.log;
    this.#evt = eventPublisher(o.bus, o.id, o.log);
    this.#queue = new AdmissionQueue(o.config.engine.maxQueued, o.config.emergency.retryAfterS);
  }

  get queued(): number {
    return this.#queue.size;
  }
  get running(): number {
    return this.#running.size;
  }
  get clockMhz(): number {
    return this.#clockMhz;
  }

  async start(): Promise<void> {
    const { bus, engine } = this.#o;
    // announce ourselves as starting so the pool sees the instance coming (it will not dispatch to it yet)
    this.#timers.push(setInterval(() => this.#publishStatus(), this.#o.config.liveness.statusIntervalMs));
    this.#publishStatus();
    engine.on('crash', (info) => this.#onEngineCrash(info));
    engine.on('restarted', () => {
      if (this.state === 'restarting') this.#setState('ready', 'engine restarted');
      void this.#applyClock(this.#clockMhz || this.#maxClockMhz, 'engine restarted: clock re-applied');
      this.#pump();
    });
    engine.on('failed', (err) => {
      this.#setState('failed', `engine failed: ${err.message}`);
      void this.#evacuate(new DynError('engine_crashed', `engine of ${this.id} failed: ${err.message}`, { retryable: true }));
    });
    await engine.start();
    this.#gpu = await this.#o.openGpu(engine.baseUrl);
    this.#supported = await this.#gpu.supportedClocksMhz();
    this.#minClockMhz = this.#supported[0] ?? 0;
    this.#maxClockMhz = this.#supported[this.#supported.length - 1] ?? 0;
    // start at max clock: safe for the SLO until the first epoch has measured the load
    await this.#applyClock(this.#maxClockMhz, 'start-up: max clock until the first epoch');
    const e = await this.#gpu.readEnergyMj();
    this.#energy0 = e.reduce((a, b) => a + b, 0);

    this.#serves.push(
      bus.serve(subjects.instanceAdmit(this.id), InferenceRequest, Admission, (req) => this.#admit(req), {
        capacity: this.#o.config.engine.maxQueued,
        concurrency: 16,
      }),
      bus.serve(subjects.instanceControl(this.id), InstanceCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64 }),
      // the gateway counts prompts with the engine's tokenizer (any instance of the model answers)
      bus.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => this.#tokenize(req), { queue: TOKENIZER_QUEUE, capacity: 256, concurrency: 8 }),
      bus.serve(subjects.detokenize(), DetokenizeRequest, DetokenizeReply, (req) => this.#detokenize(req), { queue: TOKENIZER_QUEUE, capacity: 64, concurrency: 4 }),
      // peers of the pool: whether anyone has room (emergency step 3 needs somebody to move to)
      bus.subscribe(controlSubjects.instanceStatus(this.pool), InstanceStatus, (s) => {
        if (s.id !== this.id) this.#peers.set(s.id, { queued: s.queued, running: s.running, state: s.state, seenMs: Date.now() });
      }, { capacity: 1024 }),
    );
    const c = this.#o.config;
    this.#timers.push(setInterval(() => void this.#clockEpoch(), c.epochs.instanceS * 1000));
    this.#timers.push(setInterval(() => void this.#emergencyTick(), this.#o.emergencyTickMs ?? 100));
    this.#timers.push(setInterval(() => void this.#telemetry(), 1000));
    this.#setState('ready', 'engine healthy');
  }

  #setState(s: InstanceState, why: string): void {
    if (this.state === s) return;
    const from = this.state;
    this.state = s;
    this.#evt('instance', `${this.id}: ${from} -> ${s} (${why})`, { state: s, from }, { pool: this.pool, tp: this.#o.tp, gpuIds: this.#o.gpuIds });
    this.#publishStatus();
  }

  // ---------------------------------------------------------------- admission and streaming

  async #admit(wire: InferenceRequest): Promise<Admission> {
    // from here on the request carries its type, SLO and TTFT deadline (classified here when admitted directly)
    const req = classified(wire, this.#o.config);
    const refuse = (error: WireError): Admission => ({ v: 1, id: req.id, ok: false, instance: this.id, pool: this.pool, error });
    if (this.#running.has(req.id) || this.#queue.has(req.id)) return { v: 1, id: req.id, ok: true, instance: this.id, pool: this.pool, type: req.type };
    if (this.state !== 'ready') {
      return refuse({ code: 'unavailable', message: `instance ${this.id} is ${this.state}`, retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS });
    }
    const c = this.#o.config;
    if (!req.moves && this.#running.size >= c.engine.maxInEngine) {
      // Backpressure to the pool: a request that would wait here for an engine slot (slots free at about
      // maxInEngine per mean service time) longer than half its TTFT SLO is refused (retryable) while a peer
      // has room, and the pool places it on another instance (it tries up to 4).
      const waitMs = ((this.#queue.size + 1) * this.#serviceMs) / c.engine.maxInEngine;
      if (waitMs > req.slo.ttftMs / 2 && this.#peerWithRoom()) {
        return refuse({ code: 'overloaded', message: `instance ${this.id}: engine full, ~${Math.round(waitMs)} ms to a free slot`, retryable: true, retryAfterS: c.emergency.retryAfterS });
      }
    }
    try {
      this.#queue.push({ req, admittedMs: Date.now() });
      if (TTFT_TRACE) this.#admitState.set(req.id, [this.#running.size, this.#queue.size - 1]);
    } catch (err) {
      return refuse(toWireError(err));
    }
    const t = req.type;
    this.#arrivals[t] = (this.#arrivals[t] ?? 0) + 1;
    this.#arrivedSinceRiseCheck = true;
    this.#watchCancel(req.id);
    // the clock the prefill backlog needs is set before the prompt goes to the engine (a no-op resolves at once)
    void this.#prefillRise().finally(() => this.#pump());
    return { v: 1, id: req.id, ok: true, instance: this.id, pool: this.pool, type: req.type };
  }

  #watchCancel(id: string): void {
    if (this.#cancelSubs.has(id)) return;
    this.#cancelSubs.set(
      id,
      this.#bus.subscribe(subjects.cancel(id), Cancel, (c) => this.#cancel(c.id, c.reason), { capacity: 4 }),
    );
  }
  #unwatchCancel(id: string): void {
    this.#cancelSubs.get(id)?.unsubscribe();
    this.#cancelSubs.delete(id);
  }

  #cancel(id: string, reason: string): void {
    const q = this.#queue.remove(id);
    if (q) {
      this.#finishWithError(q.req, 0, { code: 'cancelled', message: `cancelled: ${reason}`, retryable: false }, 'cancelled');
      return;
    }
    this.#running.get(id)?.ac.abort(new DynError('cancelled', `cancelled: ${reason}`, { retryable: false }));
  }

  #pump(): void {
    if (this.state !== 'ready' && this.state !== 'draining') return;
    while (this.#running.size < this.#o.config.engine.maxInEngine && this.#queue.size > 0) {
      const q = this.#queue.shift()!;
      void this.#run(q);
    }
  }

  async #run(q: Queued): Promise<void> {
    const req = q.req;
    const r: Running = { req, ac: new AbortController(), seq: 0, startedMs: Date.now(), tbtSum: 0, tbtMax: 0, tbtN: 0, energyJ: 0 };
    this.#running.set(req.id, r);
    const type = req.type;
    const base = { v: 1 as const, id: req.id, instance: this.id, pool: this.pool, type: req.type };
    let finishReason: string | undefined;
    let stopReason: string | number | null | undefined;
    let usage: { promptTokens: number; completionTokens: number; energyJoules?: number } | undefined;
    let completion = 0;
    const remainingMs = Math.max(1000, req.giveUpAtMs - Date.now());
    // token coalescing (engine.streamCoalesceMs): tokens after the first gather in `pend` for at most the
    // window, then travel as one chunk with each token's arrival offset (see docs/REPLAY.md)
    const coalesceMs = this.#o.config.engine.streamCoalesceMs;
    let pend: { text: string; n: number; t0: number; offsets: number[]; timer?: NodeJS.Timeout } | null = null;
    const flush = () => {
      const p = pend;
      if (!p) return;
      pend = null;
      if (p.timer) clearTimeout(p.timer);
      const chunk: TokenChunk = { ...base, seq: r.seq++, text: p.text, tokens: p.n };
      if (p.n > 1) chunk.tokenOffsetsMs = p.offsets;
      try {
        this.#bus.publish(req.streamSubject, TokenChunk, chunk);
      } catch (err) {
        this.#log.debug({ id: req.id, err: (err as Error).message }, 'token chunk not published');
      }
    };
    try {
      const it = this.#o.engine.completion(
        {
          model: req.model,
          prompt: req.prompt ?? (req.messages ? undefined : ''),
          chat: req.messages,
          maxTokens: req.maxTokens,
          minTokens: req.minTokens,
          ignoreEos: req.ignoreEos,
          temperature: req.temperature,
          params: req.params,
          requestId: req.id,
          timeoutMs: remainingMs,
        },
        r.ac.signal,
      );
      for await (const ch of it) {
        if (ch.usage) usage = ch.usage;
        if (ch.finishReason) {
          finishReason = ch.finishReason;
          stopReason = ch.stopReason;
        }
        // what the client sees besides text (logprobs, tool calls, reasoning) travels with the chunk, uncoalesced
        const extra = chunkExtras(ch);
        if (ch.text === '' && !extra) {
          if (!ch.finishReason || ch.usage) continue;
        }
        // an engine event may hold k tokens (the engine's stream interval); `offs` says when the engine made
        // each, ms after the first of them, and the last of them arrived now
        const k = ch.tokens ?? 1;
        const offs = ch.tokenOffsetsMs && ch.tokenOffsetsMs.length === k ? ch.tokenOffsetsMs : undefined;
        const span = offs ? offs[k - 1]! - offs[0]! : 0;
        const now = Date.now();
        const t = performance.now();
        // (never before the previous token: arrival lags differ between events)
        const floor = r.lastTokenMs ?? -Infinity;
        const at = (i: number) => (offs ? Math.max(floor, t - (offs[k - 1]! - offs[i]!)) : t);
        for (let i = 0; i < k; i++) {
          if (r.firstTokenMs === undefined) r.firstTokenMs = now - span;
          else if (r.lastTokenMs !== undefined) {
            const d = at(i) - r.lastTokenMs;
            r.tbtSum += d;
            r.tbtN++;
            r.tbtMax = Math.max(r.tbtMax, d);
            this.#pushSample(this.#tbts, d);
          }
          r.lastTokenMs = at(i);
        }
        completion += k;
        if (r.seq === 0 && TTFT_TRACE) {
          const st = this.#admitState.get(req.id);
          this.#admitState.delete(req.id);
          appendFileSync(TTFT_TRACE, JSON.stringify({
            id: req.id, type, inst: this.id, arrivalMs: req.arrivalMs, admitMs: q.admittedMs, startMs: r.startedMs, firstMs: r.firstTokenMs,
            running: st?.[0], queued: st?.[1], clock: this.#clockMhz, moves: req.moves ?? 0,
          }) + '\n');
        }
        if (r.seq === 0 && !pend) {
          // the first token goes at once: coalescing never delays TTFT
          const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ttftMs: Math.max(0, r.firstTokenMs! - req.arrivalMs), ...extra };
          if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
          this.#pushSample(this.#ttfts, chunk.ttftMs!);
          this.#bus.publish(req.streamSubject, TokenChunk, chunk);
        } else if (coalesceMs <= 0 || extra) {
          flush();
          const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ...extra };
          if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
          this.#bus.publish(req.streamSubject, TokenChunk, chunk);
        } else {
          if (!pend) {
            pend = { text: '', n: 0, t0: at(0), offsets: [] };
            pend.timer = setTimeout(flush, Math.max(0, coalesceMs - (t - pend.t0)));
          }
          pend.text += ch.text;
          pend.n += k;
          for (let i = 0; i < k; i++) pend.offsets.push(Math.round((at(i) - pend.t0) * 1000) / 1000);
          if (t - pend.t0 >= coalesceMs) flush();
        }
      }
      flush();
      if (r.ac.signal.aborted) throw r.ac.signal.reason;
      const energyJ = usage?.energyJoules ?? r.energyJ;
      const energySource = usage?.energyJoules !== undefined || this.#gpu?.kind === 'emulated' ? 'modelled' : 'measured';
      this.#bus.publish(req.streamSubject, TokenChunk, {
        ...base,
        seq: r.seq++,
        text: '',
        tokens: 0,
        done: true,
        finishReason: finishReason === 'length' || finishReason === 'tool_calls' ? finishReason : 'stop',
        stopReason: stopReason ?? null,
        usage: { promptTokens: usage?.promptTokens ?? req.inputTokens, completionTokens: usage?.completionTokens ?? completion, energyJ, energySource },
      });
      this.#record(req, type, 'ok', r, usage?.completionTokens ?? completion, energyJ, energySource);
      this.#serviceMs = 0.8 * this.#serviceMs + 0.2 * (Date.now() - r.startedMs);
    } catch (err) {
      flush(); // tokens already produced reach the client before the error chunk, in order
      const aborted = r.ac.signal.aborted;
      // the wire message reaches the client: the engine's own words for a refused request, nothing internal
      // (instance ids, URLs) otherwise; the details go to this log
      if (!aborted) this.#log.warn({ id: req.id, err: (err as Error)?.message ?? String(err) }, 'engine call failed');
      const w: WireError = aborted
        ? toWireError(r.ac.signal.reason)
        : (err as { retryable?: boolean })?.retryable === false
          ? { code: 'invalid_request', message: err instanceof EngineHttpError ? err.engineMessage : 'the engine refused the request', retryable: false }
          : { code: 'engine_crashed', message: 'the engine serving this request failed; retry', retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS };
      this.#running.delete(req.id);
      this.#finishWithError(req, r.seq, w, w.code === 'cancelled' ? 'cancelled' : 'failed', r);
      return;
    } finally {
      if (pend) clearTimeout((pend as { timer?: NodeJS.Timeout }).timer);
      this.#running.delete(req.id);
      this.#admitState.delete(req.id);
      this.#unwatchCancel(req.id);
      this.#pump();
    }
  }

  /** vLLM's /tokenize on this instance's engine; a refused prompt is an invalid_request reply with the engine's words. */
  async #tokenize(req: TokenizeRequestT): Promise<TokenizeReplyT> {
    try {
      const r = await this.#o.engine.tokenize({ model: req.model, prompt: req.prompt, chat: req.messages, params: req.params, returnTokenStrs: req.returnTokenStrs });
      const out: TokenizeReplyT = { v: 1, ok: true, count: r.count, maxModelLen: r.maxModelLen };
      if (req.returnTokens) out.tokens = r.tokens;
      if (req.returnTokenStrs && r.tokenStrs) out.tokenStrs = r.tokenStrs;
      return out;
    } catch (err) {
      return { v: 1, ok: false, error: engineWireError(err) };
    }
  }

  async #detokenize(req: DetokenizeRequestT): Promise<DetokenizeReplyT> {
    try {
      return { v: 1, ok: true, prompt: await this.#o.engine.detokenize(req.tokens) };
    } catch (err) {
      return { v: 1, ok: false, error: engineWireError(err) };
    }
  }

  #pushSample(arr: number[], v: number): void {
    arr.push(v);
    if (arr.length > 2000) arr.splice(0, arr.length - 2000);
  }

  #finishWithError(req: ClassifiedRequest, seq: number, error: WireError, outcome: 'rejected' | 'failed' | 'cancelled', r?: Running): void {
    this.#unwatchCancel(req.id);
    const type = req.type;
    try {
      this.#bus.publish(req.streamSubject, TokenChunk, {
        v: 1, id: req.id, seq, text: '', tokens: 0, done: true, finishReason: outcome === 'cancelled' ? 'cancelled' : 'error', error,
        instance: this.id, pool: this.pool, type: req.type,
      });
    } catch (err) {
      this.#log.warn({ id: req.id, err: (err as Error).message }, 'could not publish the error chunk');
    }
    this.#record(req, type, outcome, r, r?.seq ?? 0, r?.energyJ ?? 0, this.#gpu?.kind === 'emulated' ? 'modelled' : 'measured');
  }

  #record(req: ClassifiedRequest, type: RequestType, outcome: RequestRecord['outcome'], r: Running | undefined, completionTokens: number, energyJ: number, energySource: 'measured' | 'modelled'): void {
    const slo = req.slo;
    const ttftMs = r?.firstTokenMs !== undefined ? Math.max(0, r.firstTokenMs - req.arrivalMs) : undefined;
    const tbtMeanMs = r && r.tbtN > 0 ? r.tbtSum / r.tbtN : undefined;
    const rec: RequestRecord = {
      v: 1, id: req.id, type, pool: this.pool, instance: this.id, outcome, promptTokens: req.inputTokens, completionTokens,
      energyJ, energySource, finishedMs: Date.now(),
      sloMet: outcome === 'ok' && (ttftMs ?? 0) <= slo.ttftMs && (tbtMeanMs ?? 0) <= slo.tbtMs,
    };
    if (ttftMs !== undefined) rec.ttftMs = ttftMs;
    if (tbtMeanMs !== undefined) rec.tbtMeanMs = tbtMeanMs;
    if (r && r.tbtN > 0) rec.tbtMaxMs = r.tbtMax;
    if (req.type) rec.predictedType = req.type;
    rec.model = req.model;
    if (req.apiKeyId !== undefined) rec.apiKeyId = req.apiKeyId;
    if (req.tenant !== undefined) rec.tenant = req.tenant;
    try {
      this.#bus.publish(subjects.telRequest(this.pool), RequestRecord, rec);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'request record not published');
    }
  }

  // ---------------------------------------------------------------- commands

  async #command(cmd: InstanceCommandT): Promise<Ack> {
    switch (cmd.op) {
      case 'set_clock': {
        if (cmd.clockMhz === undefined) throw new DynError('invalid_request', 'set_clock needs clockMhz', { retryable: false });
        this.#forcedUntil = Date.now() + this.#o.config.epochs.instanceS * 1000;
        await this.#applyClock(cmd.clockMhz, `pool command: ${cmd.reason}`);
        return { v: 1, ok: true, detail: { clockMhz: this.#clockMhz } };
      }
      case 'drain':
        if (this.state === 'ready') this.#setState('draining', cmd.reason);
        return { v: 1, ok: true, detail: { queued: this.#queue.size, running: this.#running.size } };
      case 'resume':
        if (this.state === 'draining') this.#setState('ready', cmd.reason);
        return { v: 1, ok: true };
    }
  }

  // ---------------------------------------------------------------- clock epoch

  async #applyClock(mhz: number, why: string, inputs: Record<string, unknown> = {}): Promise<void> {
    if (!this.#gpu) return;
    const before = this.#clockMhz;
    try {
      const applied = await this.#gpu.lockClocks(mhz, mhz);
      this.#clockMhz = applied.maxMhz;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, mhz }, 'clock change failed');
      return;
    }
    if (before !== this.#clockMhz) {
      this.#evt('clock', `${this.id}: clock ${before} -> ${this.#clockMhz} MHz (${why})`, { clockMhz: this.#clockMhz, from: before }, { ...inputs, pool: this.pool, tp: this.#o.tp });
    }
  }

  /**
   * Closes the epoch's arrival window: the EWMA (half weight per epoch) becomes the dispatcher's load; the
   * clock gets max(EWMA, this window's rate), req/s by type.
   */
  #measureLoad(): Partial<Record<RequestType, number>> {
    const now = Date.now();
    const dt = Math.max(0.001, (now - this.#arrivalWindowStart) / 1000);
    const next: Partial<Record<RequestType, number>> = {};
    const forClock: Partial<Record<RequestType, number>> = {};
    const types = new Set([...Object.keys(this.#arrivals), ...Object.keys(this.#load)] as RequestType[]);
    for (const t of types) {
      const rate = (this.#arrivals[t] ?? 0) / dt / this.#timeScale();
      const v = 0.5 * rate + 0.5 * (this.#load[t] ?? rate);
      if (v > 1e-3) next[t] = v;
      // the clock follows a rise at once (the SLO is at stake) and a fall through the EWMA (no flapping)
      const c = Math.max(v, rate);
      if (c > 1e-3) forClock[t] = c;
    }
    this.#arrivals = {};
    this.#arrivalWindowStart = now;
    this.#load = next;
    return forClock;
  }

  #arrivedSinceRiseCheck = false;
  #rising = false;

  /**
   * Raises the clock to `mhz` between epochs (one raise at a time; never while the emergency holds the max clock,
   * a pool's set_clock holds for its epoch, or the clock is already at or above it).
   */
  async #raise(mhz: number, why: string, inputs: Record<string, unknown>): Promise<void> {
    if (this.#rising || this.#emergency.maxClock || Date.now() < this.#forcedUntil || mhz <= this.#clockMhz) return;
    this.#rising = true;
    try {
      await this.#applyClock(mhz, why, inputs);
    } finally {
      this.#rising = false;
    }
  }

  /**
   * Between epochs (every emergency tick, 100 ms, when requests arrived since the last check): the clock
   * follows a load rise within the epoch instead of at its end. The epoch's arrivals so far (over at least
   * 1 s, so a few back-to-back requests do not read as a high rate) against the EWMA, the larger per type;
   * only ever raises the clock (a fall waits for the epoch, through the EWMA). Without this an instance that
   * chose a low clock after an idle spell (the EWMA near 0) prefills a burst at that clock for up to a whole
   * epoch: measured on the 16-core replay, most TTFTs over 500 ms were prefill waits at 795 MHz.
   */
  async #clockRise(now: number): Promise<void> {
    if (!this.#arrivedSinceRiseCheck || this.#rising) return;
    this.#arrivedSinceRiseCheck = false;
    if (this.#emergency.maxClock || now < this.#forcedUntil || this.#clockMhz >= this.#maxClockMhz) return;
    const dt = Math.max(1, (now - this.#arrivalWindowStart) / 1000);
    const load: Partial<Record<RequestType, number>> = { ...this.#load };
    for (const [t, n] of Object.entries(this.#arrivals) as [RequestType, number][]) load[t] = Math.max(load[t] ?? 0, n / dt / this.#timeScale());
    const d = decideClock(this.#o.profile, this.#o.tp, load, this.#supported, this.#o.config.policy.headroom);
    if (d) await this.#raise(d.clockMhz, `load rose within the epoch: ${d.reason}`, { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW });
  }

  /** The requests whose prompt is not prefilled yet: in the engine without a first token, then queued here. */
  *#awaitingPrefill(): Generator<ClassifiedRequest> {
    for (const r of this.#running.values()) if (r.firstTokenMs === undefined) yield r.req;
    for (const q of this.#queue.items()) yield q.req;
  }

  /**
   * The clock the prefill backlog needs (policy prefillClockFloor): the prompts awaiting prefill, each with the
   * time left to its TTFT deadline. A prompt's length is known on arrival, so one far longer than its type's
   * profile cell raises the clock before its prefill, not after a miss.
   */
  #prefillFloor(now: number): number | undefined {
    const backlog: { tokens: number; slackMs: number }[] = [];
    for (const req of this.#awaitingPrefill()) backlog.push({ tokens: req.inputTokens, slackMs: req.ttftDeadlineMs - now });
    return decidePrefillFloor(this.#o.profile, this.#o.tp, backlog, this.#supported);
  }

  /** On admission: raise the clock at once when the prefill backlog needs it (never lowers it). */
  async #prefillRise(): Promise<void> {
    if (this.#rising || this.#emergency.maxClock || this.#clockMhz >= this.#maxClockMhz) return;
    const f = this.#prefillFloor(Date.now());
    if (f !== undefined) await this.#raise(f, 'prefill backlog needs it', { pendingPrefillTokens: this.#pendingPrefillTokens() });
  }

  async #clockEpoch(): Promise<void> {
    if (this.state !== 'ready' && this.state !== 'draining') return;
    const load = this.#measureLoad();
    if (this.#emergency.maxClock || Date.now() < this.#forcedUntil) return;
    const d = decideClock(this.#o.profile, this.#o.tp, load, this.#supported, this.#o.config.policy.headroom);
    if (!d) return;
    // not below what the prompts still to prefill need
    const floor = this.#prefillFloor(Date.now());
    if (floor !== undefined && floor > d.clockMhz) {
      await this.#applyClock(floor, `${d.reason}; raised to ${floor} MHz for the prefill backlog`, { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW });
      return;
    }
    await this.#applyClock(d.clockMhz, d.reason, { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW });
  }

  // ---------------------------------------------------------------- emergency ladder

  /**
   * Predicted SLO misses among the queued requests: a request at queue position k starts after about
   * k / maxInEngine mean service times; it misses when that start is past its TTFT SLO.
   */
  #predictedMisses(now: number): number {
    const c = this.#o.config;
    let k = 0, misses = 0;
    for (const q of this.#queue.items()) {
      const start = now + (Math.floor(k / c.engine.maxInEngine) + (this.#running.size >= c.engine.maxInEngine ? 1 : 0)) * this.#serviceMs;
      if (start > q.req.ttftDeadlineMs) misses++;
      k++;
    }
    return misses;
  }

  #peers = new Map<string, { queued: number; running: number; state: string; seenMs: number }>();

  /** a live ready peer (last status) with a free engine slot and nothing queued. */
  #peerWithRoom(): boolean {
    const now = Date.now();
    for (const p of this.#peers.values()) {
      if (p.state === 'ready' && now - p.seenMs <= this.#o.config.liveness.deadAfterMs && p.queued === 0 && p.running < this.#o.config.engine.maxInEngine) return true;
    }
    return false;
  }
  /** EWMA of a request's time in the engine, ms (for the miss prediction). */
  #serviceMs = 1000;
  #emState: EmergencyState = initialEmergencyState(Date.now());

  async #emergencyTick(): Promise<void> {
    if (this.state !== 'ready' && this.state !== 'draining') return;
    const now = Date.now();
    void this.#clockRise(now);
    const c = this.#o.config;
    let peersWithCapacity = 0;
    for (const [id, p] of this.#peers) {
      if (now - p.seenMs > c.liveness.deadAfterMs) this.#peers.delete(id);
      else if (p.state === 'ready' && p.queued < c.emergency.moveQueueAbove) peersWithCapacity++;
    }
    const obs: EmergencyObservation = {
      nowMs: now,
      queue: this.#queue.items().map((q) => ({ id: q.req.id, arrivalMs: q.admittedMs, ttftDeadlineMs: q.req.ttftDeadlineMs, type: q.req.type })),
      clockMhz: this.#clockMhz,
      maxClockMhz: this.#maxClockMhz,
      predictedMissCount: this.#predictedMisses(now),
      peersWithCapacity,
    };
    const before = this.#emState.level;
    const { state, actions } = decideEmergency(this.#emState, obs, c);
    this.#emState = state;
    const inputs = { queueLength: obs.queue.length, predictedMissCount: obs.predictedMissCount, peersWithCapacity, clockMhz: this.#clockMhz, level: state.level };
    if (state.level === 0 && before > 0) {
      this.#evt('emergency', `${this.id}: emergency over`, { step: 'clear', from: before }, inputs);
      this.#emergency = { maxClock: false };
      this.#queue.fifo();
    }
    if (state.level >= 2 && !this.#emergency.maxClock && !actions.some((a) => a.kind === 'max_clock')) {
      // step 2 reached with the clock already at max: hold it there (the clock epoch must not lower it)
      this.#emergency.maxClock = true;
      this.#step('max_clock', now, { clockMhz: this.#clockMhz, alreadyAtMax: true }, inputs);
    }
    for (const a of actions) {
      switch (a.kind) {
        case 'reorder':
          if (!this.#queue.edf) {
            this.#queue.reorder();
            this.#step('reorder', now, { queued: this.#queue.size }, { ...inputs, why: a.why });
          }
          break;
        case 'max_clock':
          if (!this.#emergency.maxClock) {
            this.#emergency.maxClock = true;
            this.#step('max_clock', now, { clockMhz: a.clockMhz }, { ...inputs, why: a.why });
            await this.#applyClock(a.clockMhz, 'emergency: max clock', inputs);
          }
          break;
        case 'release_max_clock':
          this.#emergency.maxClock = false;
          void this.#clockEpoch();
          break;
        case 'move': {
          const ids = new Set(a.ids);
          await this.#moveToPeers(ids, 'emergency: backlog', inputs, a.why);
          break;
        }
        case 'reject': {
          const rejected: string[] = [];
          for (const id of a.ids) {
            const q = this.#queue.remove(id);
            if (!q) continue;
            rejected.push(id);
            this.#finishWithError(q.req, 0, {
              code: 'rejected', retryable: true, retryAfterS: a.retryAfterS,
              message: `rejected by ${this.id}: waited ${now - q.admittedMs} ms (> ${c.emergency.rejectAfterMs} ms) in an overloaded instance`,
            }, 'rejected');
          }
          if (rejected.length) this.#step('reject', now, { rejected, retryAfterS: a.retryAfterS }, { ...inputs, why: a.why });
          break;
        }
      }
    }
  }

  #step(step: string, now: number, decision: Record<string, unknown>, inputs: Record<string, unknown>): void {
    this.#emergency.step = step;
    this.#emergency.since ??= now;
    this.#evt('emergency', `${this.id}: emergency step ${step}`, { step, ...decision }, inputs);
  }

  /** Emergency step 3 (and engine crash): hand the last `n` queued requests to the pool leader for peers. */
  async #moveToPeers(which: number | Set<string>, why: string, inputs?: Record<string, unknown>, justification?: unknown): Promise<number> {
    if (this.#moving) return 0;
    const batch = typeof which === 'number'
      ? this.#queue.takeTail(Math.min(which, 256))
      : [...which].slice(0, 256).map((id) => this.#queue.remove(id)).filter((q): q is Queued => q !== undefined);
    if (!batch.length) return 0;
    this.#moving = true;
    let placed = 0;
    try {
      const reply = await this.#bus.request(
        subjects.poolMove(this.pool),
        MoveRequest,
        { v: 1, from: this.id, pool: this.pool, requests: batch.map((q) => ({ ...q.req, moves: (q.req.moves ?? 0) + 1 })), reason: why },
        MoveReply,
        { timeoutMs: this.#o.config.timeouts.dispatchMs * 2 },
      );
      const placedIds = new Set(reply.placed.map((p) => p.id));
      placed = placedIds.size;
      for (const q of batch) {
        if (placedIds.has(q.req.id)) this.#unwatchCancel(q.req.id);
      }
      const back = batch.filter((q) => !placedIds.has(q.req.id));
      for (const q of back.reverse()) this.#requeue(q);
      if (inputs) this.#step('move_to_peers', Date.now(), { asked: batch.length, placed: reply.placed, refused: reply.refused.length }, { ...inputs, why: justification });
    } catch (err) {
      for (const q of batch.reverse()) this.#requeue(q);
      if (inputs) this.#step('move_to_peers', Date.now(), { asked: batch.length, placed: [], error: (err as Error).message }, { ...inputs, why: justification });
    } finally {
      this.#moving = false;
    }
    this.#pump();
    return placed;
  }

  #requeue(q: Queued): void {
    try {
      this.#queue.push(q, true);
    } catch (err) {
      this.#finishWithError(q.req, 0, toWireError(err), 'rejected');
    }
  }

  // ---------------------------------------------------------------- engine failure

  #onEngineCrash(info: { code: number | null; signal: string | null }): void {
    if (this.state === 'stopped' || this.state === 'draining' && this.#stopping) return;
    this.#setState('restarting', `engine exited (code ${info.code}, signal ${info.signal})`);
    this.#evt('failure', `${this.id}: engine crashed; moving ${this.#queue.size} queued requests to peers`, { action: 'move_queued', queued: this.#queue.size, running: this.#running.size }, { code: info.code, signal: info.signal });
    // running streams end with a retryable error by themselves (their completion throws EngineCrashedError)
    void this.#moveToPeers(this.#queue.size, 'engine crashed');
  }

  /** Engine gone for good: move what can be moved, end everything else with a retryable error. */
  async #evacuate(err: DynError): Promise<void> {
    await this.#moveToPeers(this.#queue.size, err.message);
    for (const q of this.#queue.drainAll()) this.#finishWithError(q.req, 0, toWireError(err), 'failed');
    for (const r of this.#running.values()) r.ac.abort(err);
  }

  // ---------------------------------------------------------------- status and telemetry

  /** Prompt tokens admitted but not prefilled yet (queued, or running without a first token). */
  #pendingPrefillTokens(): number {
    let n = 0;
    for (const req of this.#awaitingPrefill()) n += req.inputTokens;
    return n;
  }

  #publishStatus(): void {
    if (this.#bus.closed) return;
    const running = [...this.#running.values()];
    const st: InstanceStatus = {
      v: 1, id: this.id, pool: this.pool, tp: this.#o.tp, gpuIds: this.#o.gpuIds, state: this.state,
      startedMs: this.startedMs, seq: this.#seq++, sentMs: Date.now(), clockMhz: this.#clockMhz, maxClockMhz: this.#maxClockMhz,
      queued: this.#queue.size, running: running.length, queuedIds: this.#queue.ids().slice(0, 1024),
      runningIds: running.slice(0, 1024).map((r) => r.req.id), runningSeqs: running.slice(0, 1024).map((r) => r.seq),
      loadByType: this.#currentLoad(),
      pendingPrefillTokens: this.#pendingPrefillTokens(),
    };
    if (this.#o.node) st.node = this.#o.node;
    if (this.#emergency.step) st.emergency = this.#emergency.step;
    try {
      this.#bus.publish(controlSubjects.instanceStatus(this.pool), InstanceStatus, st);
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'status not published');
    }
  }

  /**
   * Wall seconds -> modelled seconds: an emulator with timeScale k runs k times faster than the model, so
   * n requests in a wall second are n/k requests per modelled second, the unit of the profile the clock,
   * dispatch and planners read (a real engine runs in model time: 1).
   */
  #timeScale(): number {
    const e = this.#o.config.engine;
    return e.kind === 'emulator' ? e.timeScale : 1;
  }

  /** Load for the dispatcher: the last epoch's EWMA blended with arrivals since (so a step shows at once). */
  #currentLoad(): Partial<Record<RequestType, number>> {
    const dt = (Date.now() - this.#arrivalWindowStart) / 1000;
    const out: Partial<Record<RequestType, number>> = { ...this.#load };
    if (dt > 0.5) {
      for (const [t, n] of Object.entries(this.#arrivals) as [RequestType, number][]) out[t] = Math.max(out[t] ?? 0, n / dt / this.#timeScale());
    }
    return out;
  }

  async #telemetry(): Promise<void> {
    const gpu = this.#gpu;
    if (!gpu || this.#bus.closed) return;
    try {
      const [p, e] = await Promise.all([gpu.readPowerMw(), gpu.readEnergyMj()]);
      this.#powerW = p.reduce((a, b) => a + b, 0) / 1000;
      const total = e.reduce((a, b) => a + b, 0);
      const energyJ = (total - (this.#energy0 ?? total)) / 1000;
      const delta = Math.max(0, energyJ - this.#energyLast);
      this.#energyLast = energyJ;
      if (this.#running.size > 0) for (const r of this.#running.values()) r.energyJ += delta / this.#running.size;
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'gpu read failed');
    }
    const tel: InstanceTelemetry = {
      v: 1, id: this.id, pool: this.pool, tp: this.#o.tp, gpus: this.#o.gpuIds, clockMhz: this.#clockMhz, maxClockMhz: this.#maxClockMhz,
      powerW: this.#powerW, energyJ: this.#energyLast, energySource: gpu.kind === 'emulated' ? 'modelled' : 'measured',
      queued: this.#queue.size, running: this.#running.size, loadByType: this.#currentLoad(), state: this.state, sentMs: Date.now(),
    };
    if (this.#o.node) tel.node = this.#o.node;
    const p99 = (a: number[]) => (a.length ? [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * 0.99))]! : undefined);
    const t1 = p99(this.#ttfts), t2 = p99(this.#tbts);
    if (t1 !== undefined) tel.ttftP99Ms = t1;
    if (t2 !== undefined) tel.tbtP99Ms = t2;
    this.#ttfts = this.#ttfts.slice(-500);
    this.#tbts = this.#tbts.slice(-500);
    if (this.#emergency.step) tel.emergency = this.#emergency.step;
    try {
      this.#bus.publish(subjects.telInstance(this.id), InstanceTelemetry, tel);
    } catch {
      /* closed */
    }
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Drain: refuse new requests, move queued ones to peers, let running ones finish within graceMs, then
   * end the rest with a retryable error, reset the GPU clocks and stop the engine.
   */
  stop(graceMs = 10_000): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.state === 'ready' || this.state === 'restarting') this.#setState('draining', 'stopping');
      for (const s of this.#serves) s.unsubscribe();
      await this.#moveToPeers(this.#queue.size, 'instance stopping').catch(() => 0);
      const until = Date.now() + graceMs;
      while ((this.#running.size > 0 || this.#queue.size > 0) && Date.now() < until) {
        this.#pump();
        await new Promise((r) => setTimeout(r, 50));
      }
      const gone = new DynError('unavailable', `instance ${this.id} stopped`, { retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS });
      for (const q of this.#queue.drainAll()) this.#finishWithError(q.req, 0, toWireError(gone), 'failed');
      for (const r of this.#running.values()) r.ac.abort(gone);
      await new Promise((r) => setTimeout(r, 50));
      for (const t of this.#timers) clearInterval(t);
      this.state = 'stopped';
      this.#publishStatus();
      try {
        await this.#gpu?.resetClocks();
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'clock reset at stop failed');
      }
      await this.#gpu?.close().catch(() => {});
      await this.#o.engine.stop(Math.min(5000, graceMs)).catch(() => {});
      for (const id of [...this.#cancelSubs.keys()]) this.#unwatchCancel(id);
    })();
    return this.#stopping;
  }
}

/** The parts of an engine event besides text that the client must get (logprobs, tool calls, reasoning), or null. */
function chunkExtras(ch: EngineChunk): Pick<TokenChunk, 'logprobs' | 'toolCalls' | 'reasoning'> | null {
  if (!ch.logprobs && !ch.toolCalls && ch.reasoning === undefined) return null;
  const x: Pick<TokenChunk, 'logprobs' | 'toolCalls' | 'reasoning'> = {};
  if (ch.logprobs) x.logprobs = ch.logprobs;
  if (ch.toolCalls) x.toolCalls = ch.toolCalls;
  if (ch.reasoning !== undefined) x.reasoning = ch.reasoning;
  return x;
}

/** An engine call's failure as the client may see it: the engine's own message for a refusal, nothing internal. */
function engineWireError(err: unknown): WireError {
  if (err instanceof EngineHttpError && !err.retryable) return { code: 'invalid_request', message: err.engineMessage, retryable: false };
  return { code: 'unavailable', message: 'the engine did not answer; retry', retryable: true, retryAfterS: 1 };
}
