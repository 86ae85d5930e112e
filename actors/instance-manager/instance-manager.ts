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
  TokenizeRequest, TokenizeReply, DetokenizeRequest, DetokenizeReply, TOKENIZER_QUEUE, LegReport, LegReply,
  type LegReport as LegReportT, type LegReply as LegReplyT, type Grant as GrantT,
  type InstanceCommand as InstanceCommandT, type RequestType, type WireError,
} from '../../protocols/index.ts';
import type { Bus, ServeHandle, SubscribeHandle } from '../../src/runtime/bus.ts';
import { connectionIdOf } from '../../src/runtime/nats-dial.ts';
import { chunkExtras, type Engine } from '../../src/engine/engine.ts';
import { LifecycleCommands } from './sleep-mode.ts';
import { EngineHttpError } from '../../src/engine/errors.ts';
import type { GpuControl } from '../../src/gpu/index.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { classified, type ClassifiedRequest } from '../common/policy.ts';
import { systemClock, within, type Clock } from '../../src/runtime/clock.ts';
import {
  currentLoad, initialInstanceState, instanceStep, pendingPrefillTokens, projectedLoad,
  type InstanceEffect, type InstanceEvent, type InstanceLifecycle, type InstanceMachineConfig, type InstanceMachineState
} from '../../src/policy/machines/instance.ts';
import { creditsOutstanding } from '../../src/policy/machines/credits.ts';
import { admissionLog, engineDetokenize, engineTokenize, instanceMachineConfig, machineRequest, maxClockOf } from './machine-io.ts';
import { PrefixCacheScrape } from './prefix-scrape.ts';
import { GatewayWatch, watchLeg } from './gateway-watch.ts';
import { endForPeers } from './drain-migrate.ts';
import { GpuReads } from './gpu-reads.ts';

/** diagnosis: a file to append one line per request's TTFT breakdown to (arrival, admission, start, first token). */
const TTFT_TRACE = process.env.DYNAMOLLM_TTFT_TRACE;

export type InstanceState = InstanceLifecycle;

/** The instance's state at a /metrics scrape. */
export interface InstanceMetricsSnapshot {
  clockMhz: number;
  maxClockMhz: number;
  powerW: number;
  /** GPU reads that failed (their telemetry marked stale). */
  gpuReadFailures: number;
  /** GPU energy since the instance started, J (the NVML counter's delta; modelled on emulated GPUs). */
  energyJ: number;
  energySource: 'measured' | 'modelled';
  queued: number;
  running: number;
  outcomes: Partial<Record<RequestRecord['outcome'], number>>;
  promptTokens: number;
  completionTokens: number;
}

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
  /**
   * the engine's API key (EngineConfig.apiKey, which the engine was created with): handed to the gateway in
   * the grant of a direct request. Without it the instance refuses nothing but streams every request itself.
   */
  engineApiKey?: string;
  /** profile for the clock epoch; without one the instance stays at max clock. */
  profile?: Profile;
  /** ms between emergency checks; default 100. */
  emergencyTickMs?: number;
  /** time and timers; default the system clock. */
  clock?: Clock;
  /**
   * The engine failed for good (its restart budget is spent), after the instance ended or moved what it
   * held: the process shell exits so that the GPUs are freed and its supervisor starts a fresh one.
   */
  onFailed?: (err: Error) => void;
}

interface Running {
  req: ClassifiedRequest;
  ac: AbortController;
  seq: number;
  startedMs: number;
  /** first token's arrival, ms since epoch on the injected clock (TTFT). */
  firstTokenMs?: number;
  /** last token's arrival (engine time when the engine says), performance.now() ms (TBT). */
  lastTokenMs?: number;
  tbtSum: number;
  tbtMax: number;
  tbtN: number;
  /** energy attributed from the GPU counter while it ran, J. */
  energyJ: number;
  /** a direct request (the gateway reads the engine): resolves with the gateway's report of the leg's end and the energy replied. */
  legEnd?: (end: { rep: LegReportT; energyJ: number; energySource: 'measured' | 'modelled' }) => void;
  /** a direct request: the gateway said it took the grant (LegReport 'started', or any later report). */
  gatewayStarted?: boolean;
  /** a direct request: stops watching its gateway process (gateway-watch.ts). */
  unwatchGateway?: () => void;
}

const newRunning = (req: ClassifiedRequest, now: number): Running => ({ req, ac: new AbortController(), seq: 0, startedMs: now, tbtSum: 0, tbtMax: 0, tbtN: 0, energyJ: 0 });

/** A request the instance holds (queued, running or being moved): its body and when it came in. */
interface Held {
  req: ClassifiedRequest;
  admittedMs: number;
}

/**
 * The shell of the instance machine (src/policy/machines/instance.ts): it feeds the machine the events of
 * the world (admissions, tokens, completions, peers' status, commands, timer ticks, the outcomes of its
 * own effects) and performs the effects (engine, GPU clock, NATS), on the injected clock.
 */
export class InstanceManager {
  readonly id: string;
  readonly pool: string;
  readonly startedMs: number;
  #o: InstanceManagerOptions;
  #log: Logger;
  #bus: Bus;
  #clock: Clock;
  #evt: EventPublisher;
  #cfg: InstanceMachineConfig;
  #m: InstanceMachineState;
  /** bodies of the requests the machine holds (queued or running), by id. */
  #held = new Map<string, Held>();
  /** bodies of the requests of the move in flight (a peer may hand one back before the pool answers). */
  #inMove = new Map<string, Held>();
  #running = new Map<string, Running>();
  /** DYNAMOLLM_TTFT_TRACE: running and queued when each request was admitted. */
  #admitState = new Map<string, [number, number]>();
  /**
   * ids of the requests a Cancel ends here (admitted, not finished). One subscription to every Cancel
   * (subjects.cancelAll) serves them all: no SUB and UNSUB at nats-server per request.
   */
  #cancelable = new Set<string>();
  /**
   * the admissions in progress of requests that asked for their grant in the reply (InferenceRequest.replyGrant), by
   * id: a direct request the admission starts leaves its grant here (#runDirect) for #admit's reply, also one whose
   * start waits for the clock its prefill needs.
   */
  #replyGrants = new Map<string, { grant?: GrantT }>();
  #cancelSub?: SubscribeHandle;
  #serves: (ServeHandle | SubscribeHandle)[] = [];
  #timers: unknown[] = [];
  #statusTimer?: unknown; // the status period, until the engine has exited (the pool reads 'stopped' as its GPUs free)
  #gpu?: GpuControl;
  /** the GPU clock changes, one after the other in the order the machine asked for them. */
  #clockChain: Promise<void> = Promise.resolve();
  /** the move to peers in flight (the machine allows one). */
  #moveDone: Promise<void> = Promise.resolve();
  #reads: GpuReads;
  #outcomes: Partial<Record<RequestRecord['outcome'], number>> = {};
  #promptTokens = 0;
  #completionTokens = 0;
  #seq = 0;
  #ttfts: number[] = [];
  #tbts: number[] = [];
  #stopping?: Promise<void>;
  /** the engine's prefix-cache counters (actors/instance-manager/prefix-scrape.ts). */
  #prefix = new PrefixCacheScrape();
  #gateways: GatewayWatch; // the gateway processes streaming its direct requests (a leg whose gateway is gone ends)
  #lifecycleCommands: LifecycleCommands;

  constructor(o: InstanceManagerOptions) {
    this.#o = o;
    this.id = o.id;
    this.pool = o.pool;
    this.#bus = o.bus;
    this.#log = o.log;
    this.#clock = o.clock ?? systemClock;
    this.startedMs = this.#clock.now();
    this.#reads = new GpuReads(this.#log, () => this.#clock.now());
    this.#evt = eventPublisher(o.bus, o.id, o.log, this.#clock);
    this.#cfg = instanceMachineConfig(o);
    this.#m = initialInstanceState(this.#clock.now());
    this.#gateways = new GatewayWatch(this.#clock, o.config.timeouts.resumeGraceMs);
    const evacuate = (): void => { if (this.queued > 0) this.#step({ type: 'evacuate', why: 'draining: queued requests to peers' }); };
    const lifecycle = (state: 'sleeping' | 'ready' | 'draining', why: string): void => { this.#step({ type: 'lifecycle', state, why }); if (state === 'draining') endForPeers(o.config.scaling.drainMigrateS, this.id, this.#running, this.#clock.now(), this.#tbts, evacuate); };
    this.#lifecycleCommands = new LifecycleCommands({ engine: o.engine, clock: this.#clock, log: o.log, state: () => this.state, queued: () => this.queued, running: () => this.running, lifecycle });
  }

  get state(): InstanceLifecycle {
    return this.#m.lifecycle;
  }
  get queued(): number {
    return this.#m.queue.length;
  }
  get running(): number {
    return this.#running.size;
  }
  /** What /metrics reports (actors/instance-manager/metrics.ts): read at scrape time. */
  metricsSnapshot(): InstanceMetricsSnapshot {
    return {
      clockMhz: this.#m.clockMhz, maxClockMhz: maxClockOf(this.#m), powerW: this.#reads.powerW, energyJ: this.#reads.energyJ, gpuReadFailures: this.#reads.failures,
      energySource: !this.#gpu || this.#gpu.kind === 'emulated' ? 'modelled' : 'measured', queued: this.queued, running: this.#running.size,
      outcomes: { ...this.#outcomes }, promptTokens: this.#promptTokens, completionTokens: this.#completionTokens,
    };
  }

  get clockMhz(): number {
    return this.#m.clockMhz;
  }

  /** One machine transition; performs its effects. Resolves once the clock changes it asked for are applied. */
  #step(ev: InstanceEvent): { effects: InstanceEffect[]; applied: Promise<void> } {
    const now = this.#clock.now();
    const { state, effects } = instanceStep(this.#m, ev, now, this.#cfg);
    if (ev.type === 'admit' || ev.type === 'credited_start') this.#log.debug(admissionLog(ev, this.#m, effects, now), 'admission');
    this.#m = state;
    let applied: Promise<void> | undefined;
    for (const e of effects) {
      const p = this.#perform(e, applied);
      if (p) applied = p;
    }
    return { effects, applied: applied ?? Promise.resolve() };
  }

  /** `clockFirst`: a clock change this step asked for before the effect (a request starts once it is applied). */
  #perform(e: InstanceEffect, clockFirst?: Promise<void>): Promise<void> | undefined {
    switch (e.kind) {
      case 'arm_timer':
        this.#timers.push(this.#clock.setInterval(() => void this.#step({ type: e.timer }), e.everyMs));
        return undefined;
      case 'admitted':
      case 'refused':
      case 'lent': // the admission reply, or the credited report's (#admit, #leg read them)
        return undefined;
      case 'start': {
        const h = this.#held.get(e.id);
        // a credited start is in the engine already: the instance counts it now (its end report may follow at once)
        if (h && e.credited) return void this.#runDirect(h, true);
        // the clock the prefill backlog needs is set before the prompt goes to the engine; the request counts as
        // running from the machine's start meanwhile (status, a sleep, a stop, a cancel: an abort ends it unstarted)
        if (h && clockFirst) {
          const r = newRunning(h.req, this.#clock.now());
          this.#running.set(h.req.id, r);
          void clockFirst.then(() => this.#run(h, r));
        } else if (h) void this.#run(h);
        return undefined;
      }
      case 'fail': {
        const h = this.#held.get(e.id);
        this.#held.delete(e.id);
        if (h) this.#finishWithError(h.req, 0, e.error, e.outcome);
        return undefined;
      }
      case 'abort':
        this.#running.get(e.id)?.ac.abort(new DynError('cancelled', e.reason, { retryable: false }));
        return undefined;
      case 'set_clock':
        return (this.#clockChain = this.#clockChain.then(() => this.#applyClock(e.clockMhz, e.why, e.inputs)));
      case 'move':
        this.#moveDone = this.#moveToPeers(e.ids, e.why);
        return undefined;
      case 'event':
        this.#evt(e.event, `${this.id}: ${e.summary}`, e.decision, e.event === 'instance' ? { pool: this.pool, tp: this.#o.tp, gpuIds: this.#o.gpuIds } : e.inputs);
        return undefined;
      case 'status':
        this.#publishStatus();
        return undefined;
    }
  }

  async start(): Promise<void> {
    const { bus, engine } = this.#o;
    // announce ourselves as starting so the pool sees the instance coming (it will not dispatch to it yet)
    this.#statusTimer = this.#clock.setInterval(() => this.#publishStatus(), this.#o.config.liveness.statusIntervalMs);
    this.#publishStatus();
    this.#gateways.start(bus);
    engine.on('crash', (info) => this.#onEngineCrash(info));
    engine.on('restarted', () => {
      this.#prefix.moved(); // its counters start again from 0: read once more
      void this.#step({ type: 'engine_restarted' });
    });
    engine.on('failed', (err) => {
      this.#step({ type: 'lifecycle', state: 'failed', why: `engine failed: ${err.message}` });
      void this.#evacuate(new DynError('engine_crashed', `engine of ${this.id} failed: ${err.message}`, { retryable: true })).finally(() => this.#o.onFailed?.(err));
    });
    await engine.start();
    this.#gpu = await this.#o.openGpu(engine.baseUrl);
    await this.#step({ type: 'gpu_ready', supportedMhz: await this.#gpu.supportedClocksMhz() }).applied;
    this.#reads.origin(await this.#gpu.readEnergyMj());

    this.#serves.push(
      bus.serve(subjects.instanceAdmit(this.id), InferenceRequest, Admission, (req) => this.#admit(req), {
        capacity: this.#o.config.engine.maxQueued,
        concurrency: 16,
      }),
      bus.serve(subjects.instanceControl(this.id), InstanceCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64 }),
      // the gateway's reports on the direct requests this instance granted (first token, end)
      bus.serve(subjects.instanceLeg(this.id), LegReport, LegReply, async (rep) => this.#leg(rep), { capacity: this.#o.config.engine.maxQueued + this.#o.config.engine.maxInEngine, concurrency: 64 }),
      // the gateway counts prompts with the engine's tokenizer (any instance of the model answers)
      bus.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => engineTokenize(this.#o.engine, req), { queue: TOKENIZER_QUEUE, capacity: 256, concurrency: 8 }),
      bus.serve(subjects.detokenize(), DetokenizeRequest, DetokenizeReply, (req) => engineDetokenize(this.#o.engine, req), { queue: TOKENIZER_QUEUE, capacity: 64, concurrency: 4 }),
      // peers of the pool: whether anyone has room (backpressure, emergency step 3 needs somebody to move to)
      bus.subscribe(controlSubjects.instanceStatusPool(this.pool), InstanceStatus, (s) => {
        if (s.id !== this.id) void this.#step({ type: 'peer_status', id: s.id, queued: s.queued, running: s.running, state: s.state });
      }, { capacity: 1024, expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id) }),
    );
    // apart from #serves: a Cancel still ends a request while the instance drains at stop
    this.#cancelSub = bus.subscribe(subjects.cancelAll(), Cancel, (c) => {
      if (this.#cancelable.has(c.id)) void this.#step({ type: 'cancel', id: c.id, reason: c.reason });
    }, { capacity: 1024, expectSubject: (c) => subjects.cancel(c.id) });
    this.#step({ type: 'start' });
    this.#timers.push(this.#clock.setInterval(() => void this.#telemetry(), 1000));
    this.#step({ type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  }

  // ---------------------------------------------------------------- admission and streaming

  async #admit(asked: InferenceRequest): Promise<Admission> {
    // the reply-grant wish is this admission's, never the held request's (a request moved on is granted on its stream)
    const { replyGrant, creditTo, ...wire } = asked;
    // from here on the request carries its type, SLO and TTFT deadline (classified here when admitted directly)
    const req = classified(wire, this.#o.config);
    // tokens go only to the request's own stream subject (never into events, commands or another request)
    if (req.streamSubject !== subjects.stream(req.id)) {
      return { v: 1, id: req.id, ok: false, instance: this.id, pool: this.pool, error: { code: 'invalid_request', message: `streamSubject must be ${subjects.stream(req.id)}`, retryable: false } };
    }
    const known = this.#held.has(req.id);
    if (!known) this.#held.set(req.id, { req, admittedMs: this.#clock.now() });
    const inReply: { grant?: GrantT } | undefined = replyGrant === true && req.direct === true && !known ? {} : undefined;
    if (inReply) this.#replyGrants.set(req.id, inReply);
    // the gateway that asked is lent admission credits when the request starts at once (docs/DATAPATH.md)
    const lendTo = inReply && this.#o.engineApiKey ? creditTo : undefined;
    const { effects, applied } = this.#step({ type: 'admit', req: machineRequest(req), ...(lendTo !== undefined ? { lendTo } : {}) });
    const verdict = effects.find((e): e is Extract<InstanceEffect, { kind: 'admitted' | 'refused' }> => (e.kind === 'admitted' || e.kind === 'refused') && e.id === req.id);
    if (verdict?.kind === 'refused' || !verdict) {
      this.#replyGrants.delete(req.id);
      if (!known) this.#held.delete(req.id);
      const error: WireError = verdict
        ? { code: verdict.code, message: `instance ${this.id}: ${verdict.message}`, retryable: true, retryAfterS: verdict.retryAfterS }
        : { code: 'internal', message: `instance ${this.id}: no admission verdict`, retryable: true };
      return { v: 1, id: req.id, ok: false, instance: this.id, pool: this.pool, startedMs: this.startedMs, error };
    }
    if (!known) {
      if (TTFT_TRACE) this.#admitState.set(req.id, [this.#running.size, this.#m.queue.length - 1]);
      this.#watchCancel(req.id);
    }
    // a start that waits for the clock its prefill needs leaves its grant once the clock is applied: the reply waits
    // for it, within half the gateway's admission deadline (past it the grant goes on the stream subject, no loan)
    if (inReply && this.#o.engineApiKey && !inReply.grant && effects.some((e) => e.kind === 'start' && e.id === req.id)) await within(applied, this.#o.config.timeouts.dispatchMs / 2, 'the clock of a start', this.#clock).catch(() => {});
    this.#replyGrants.delete(req.id);
    // startedMs: the gateway that routed it watches this process's statuses, and admits it again elsewhere if it dies holding it
    const a: Admission = { v: 1, id: req.id, ok: true, instance: this.id, pool: this.pool, type: wire.type, startedMs: this.startedMs };
    if (inReply?.grant) {
      a.grant = inReply.grant;
      const lent = effects.find((e): e is Extract<InstanceEffect, { kind: 'lent' }> => e.kind === 'lent' && e.id === req.id);
      if (lent) a.credit = lent.loan;
    }
    return a;
  }

  #watchCancel(id: string): void {
    this.#cancelable.add(id);
  }
  #unwatchCancel(id: string): void {
    this.#cancelable.delete(id);
  }

  /** `pre`: its running record, made at the machine's start while the clock was set. */
  async #run(q: Held, pre?: Running): Promise<void> {
    if (q.req.direct && this.#o.engineApiKey) return this.#runDirect(q, false, pre);
    const req = q.req;
    const clock = this.#clock;
    const r = pre ?? newRunning(req, clock.now());
    let ok = false;
    this.#running.set(req.id, r);
    this.#prefix.moved();
    const type = req.type;
    const base = { v: 1 as const, id: req.id, instance: this.id, pool: this.pool, type: req.type };
    let finishReason: string | undefined;
    let stopReason: string | number | null | undefined;
    let usage: { promptTokens: number; completionTokens: number; energyJoules?: number } | undefined;
    let completion = 0;
    /** the engine's last text event (it carries finish_reason): sent as the done chunk itself */
    let tail: TokenChunk | undefined;
    const remainingMs = Math.max(1000, req.giveUpAtMs - clock.now());
    // token coalescing (engine.streamCoalesceMs): tokens after the first gather in `pend` for at most the
    // window, then travel as one chunk with each token's arrival offset (see docs/REPLAY.md)
    const coalesceMs = this.#o.config.engine.streamCoalesceMs;
    let pend: { text: string; n: number; t0: number; offsets: number[]; timer?: unknown } | null = null;
    const flush = () => {
      const p = pend;
      if (!p) return;
      pend = null;
      if (p.timer !== undefined) clock.clearTimeout(p.timer);
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
        const now = clock.now();
        // token intervals (TBT) on the monotonic high-resolution timer: sub-ms gaps of a time-scaled engine
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
            running: st?.[0], queued: st?.[1], clock: this.#m.clockMhz, moves: req.moves ?? 0,
          }) + '\n');
        }
        if (r.seq === 0 && !pend) {
          this.#step({ type: 'first_token', id: req.id });
          // the first token goes at once: coalescing never delays TTFT
          const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ttftMs: Math.max(0, r.firstTokenMs! - req.arrivalMs), ...extra };
          if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
          this.#pushSample(this.#ttfts, chunk.ttftMs!);
          // the engine's last text goes out with the end (finish_reason on the last text chunk, as vLLM's)
          if (ch.finishReason) tail = chunk;
          else this.#bus.publish(req.streamSubject, TokenChunk, chunk);
        } else if (coalesceMs <= 0 || extra || ch.finishReason) {
          flush();
          const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ...extra };
          if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
          if (ch.finishReason) tail = chunk;
          else this.#bus.publish(req.streamSubject, TokenChunk, chunk);
        } else {
          if (!pend) {
            pend = { text: '', n: 0, t0: at(0), offsets: [] };
            pend.timer = clock.setTimeout(flush, Math.max(0, coalesceMs - (t - pend.t0)));
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
        ...(tail ?? { seq: r.seq++, text: '', tokens: 0 }),
        done: true,
        finishReason: finishReason === 'length' || finishReason === 'tool_calls' ? finishReason : 'stop',
        stopReason: stopReason ?? null,
        usage: { promptTokens: usage?.promptTokens ?? req.inputTokens, completionTokens: usage?.completionTokens ?? completion, energyJ, energySource },
      });
      this.#record(req, type, 'ok', r, usage?.completionTokens ?? completion, energyJ, energySource);
      ok = true;
    } catch (err) {
      flush(); // tokens already produced reach the client before the error chunk, in order
      if (tail) this.#bus.publish(req.streamSubject, TokenChunk, tail);
      const aborted = r.ac.signal.aborted;
      // the wire message reaches the client: the engine's own words for a refused request, nothing internal
      // (instance ids, URLs) otherwise; the details go to this log
      if (!aborted) this.#log.warn({ id: req.id, err: (err as Error)?.message ?? String(err) }, 'engine call failed');
      const w: WireError = aborted
        ? toWireError(r.ac.signal.reason)
        : err instanceof EngineHttpError && !err.retryable
          ? { code: 'invalid_request', message: err.engineMessage, retryable: false }
          : { code: 'engine_crashed', message: 'the engine serving this request failed; retry', retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS };
      this.#running.delete(req.id);
      this.#finishWithError(req, r.seq, w, w.code === 'cancelled' ? 'cancelled' : 'failed', r);
      return;
    } finally {
      const timer = (pend as { timer?: unknown } | null)?.timer;
      if (timer !== undefined) clock.clearTimeout(timer);
      this.#running.delete(req.id);
      this.#prefix.moved();
      this.#held.delete(req.id);
      this.#admitState.delete(req.id);
      this.#unwatchCancel(req.id);
      this.#step({ type: 'finished', id: req.id, ok });
    }
  }

  /**
   * A direct request: the gateway streams it from the engine itself (docs/DATAPATH.md). The instance grants
   * it (the engine's URL and key, on the request's own stream subject), counts it as running in the engine
   * until the gateway reports the leg's end (or its deadline passes), and keeps its admission, cancel,
   * energy and SLO accounting: the report carries the first token's time, the token gaps and the counts.
   * An abort (cancel, evacuation, stop) ends it with an error chunk on the stream subject, which the gateway
   * obeys by dropping its engine call.
   */
  async #runDirect(q: Held, credited = false, pre?: Running): Promise<void> {
    const req = q.req;
    const clock = this.#clock;
    const r = pre ?? newRunning(req, clock.now());
    // a gateway that started it on a credit has the grant and took it
    if (credited) r.gatewayStarted = true;
    this.#running.set(req.id, r);
    this.#prefix.moved();
    let ok = false;
    let timer: unknown;
    let startTimer: unknown;
    try {
      const end = new Promise<{ rep: LegReportT; energyJ: number; energySource: 'measured' | 'modelled' }>((resolve, reject) => {
        r.legEnd = resolve;
        const abort = () => reject(r.ac.signal.reason instanceof Error ? r.ac.signal.reason : new DynError('cancelled', 'aborted', { retryable: false }));
        if (r.ac.signal.aborted) abort();
        else r.ac.signal.addEventListener('abort', abort, { once: true });
        // a gateway that died mid-stream never reports: the slot is freed at the client's give-up time
        timer = clock.setTimeout(
          () => r.ac.abort(new DynError('timeout', 'no report from the gateway streaming this request', { retryable: true })),
          Math.max(1000, req.giveUpAtMs - clock.now()) + 5000,
        );
        // nor does one that had gone (or given up) before the grant came: its seat is freed within directStartMs
        startTimer = clock.setTimeout(() => {
          if (!r.gatewayStarted) r.ac.abort(new DynError('timeout', 'no gateway took the grant of this request', { retryable: true }));
        }, this.#o.config.timeouts.directStartMs);
      });
      // the gateway says it took the grant with its first-token report, or with 'started' after half of directStartMs
      const grant: GrantT = { url: this.#o.engine.baseUrl, apiKey: this.#o.engineApiKey!, reportWithinMs: Math.floor(this.#o.config.timeouts.directStartMs / 2) };
      // started by its own admission, for a gateway that asked for the grant in the reply: no message of its own
      const inReply = this.#replyGrants.get(req.id);
      if (credited || r.ac.signal.aborted) { /* the gateway has the grant of its loan; an aborted one gets its error */ } else if (inReply) inReply.grant = grant;
      else this.#bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, instance: this.id, pool: this.pool, type: req.type, grant });
      // the energy the gateway was told (and put in the client's usage), not a later reading
      const { rep, energyJ, energySource } = await end;
      const outcome = rep.outcome === 'ok' ? 'ok' : rep.outcome === 'cancelled' ? 'cancelled' : 'failed';
      // the engine's own count of the prompt when the gateway had it (usage.prompt_tokens)
      this.#record(rep.promptTokens !== undefined ? { ...req, inputTokens: rep.promptTokens } : req, req.type, outcome, r, rep.completionTokens ?? 0, energyJ, energySource);
      ok = outcome === 'ok';
    } catch (err) {
      const w = toWireError(err);
      this.#finishWithError(req, 1, w, w.code === 'cancelled' ? 'cancelled' : 'failed', r);
    } finally {
      if (timer !== undefined) clock.clearTimeout(timer);
      if (startTimer !== undefined) clock.clearTimeout(startTimer);
      r.unwatchGateway?.();
      this.#running.delete(req.id);
      this.#prefix.moved();
      this.#held.delete(req.id);
      this.#admitState.delete(req.id);
      this.#unwatchCancel(req.id);
      this.#step({ type: 'finished', id: req.id, ok });
    }
  }

  /** The gateway's report on a direct request this instance granted: its first token, or its end (-> energy). */
  #leg(rep: LegReportT): LegReplyT {
    if (rep.phase === 'credited') return this.#credited(rep);
    const r = this.#running.get(rep.id);
    if (!r?.req.direct) return { v: 1, ok: false, error: { code: 'not_found', message: `instance ${this.id} holds no direct request ${rep.id}`, retryable: false } };
    r.gatewayStarted = true;
    if (rep.phase !== 'end') watchLeg(this.#gateways, r, rep.gateway);
    if (rep.phase === 'started') return { v: 1, ok: true };
    if (rep.firstTokenMs !== undefined && r.firstTokenMs === undefined) {
      r.firstTokenMs = rep.firstTokenMs;
      this.#pushSample(this.#ttfts, Math.max(0, rep.firstTokenMs - r.req.arrivalMs));
      this.#step({ type: 'first_token', id: rep.id });
    }
    if (rep.phase === 'first_token') return { v: 1, ok: true };
    r.tbtSum = rep.tbtSumMs ?? 0;
    r.tbtMax = rep.tbtMaxMs ?? 0;
    r.tbtN = rep.tbtN ?? 0;
    r.seq = rep.completionTokens ?? 0;
    if (r.tbtN > 0) this.#pushSample(this.#tbts, r.tbtSum / r.tbtN);
    const energyJ = rep.engineEnergyJ ?? r.energyJ;
    const energySource = rep.engineEnergyJ !== undefined || this.#gpu?.kind === 'emulated' ? 'modelled' : 'measured';
    r.legEnd?.({ rep, energyJ, energySource });
    return { v: 1, ok: true, energyJ, energySource };
  }

  /**
   * A request a gateway started on a credit this instance lent it (docs/DATAPATH.md "Admission credits"): it
   * is checked as an admission is (its own stream subject, a direct request), then held and counted as running
   * in the engine, with its cancel watch, energy and SLO accounting as any granted request. A report that asks
   * for a top-up gets the gateway's new loan.
   */
  #credited(rep: LegReportT): LegReplyT {
    const asked = rep.request;
    const credit = rep.credit;
    if (!asked || !credit || asked.id !== rep.id || asked.streamSubject !== subjects.stream(asked.id) || asked.direct !== true || !this.#o.engineApiKey) {
      return { v: 1, ok: false, error: { code: 'invalid_request', message: `instance ${this.id}: a credited report carries its direct request (its own stream subject) and credit`, retryable: false } };
    }
    if (this.#held.has(asked.id)) return { v: 1, ok: true };
    const { replyGrant: _g, creditTo: _c, ...wire } = asked;
    const req = classified(wire, this.#o.config);
    this.#held.set(req.id, { req, admittedMs: this.#clock.now() });
    this.#watchCancel(req.id);
    const { effects } = this.#step({ type: 'credited_start', req: machineRequest(req), gateway: credit.gateway, epoch: credit.epoch, ...(credit.topUp ? { topUp: true } : {}) });
    watchLeg(this.#gateways, this.#running.get(req.id), rep.gateway);
    const lent = effects.find((e): e is Extract<InstanceEffect, { kind: 'lent' }> => e.kind === 'lent' && e.id === req.id);
    return lent ? { v: 1, ok: true, credit: lent.loan } : { v: 1, ok: true };
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
    this.#outcomes[outcome] = (this.#outcomes[outcome] ?? 0) + 1;
    this.#promptTokens += req.inputTokens;
    this.#completionTokens += completionTokens;
    const slo = req.slo;
    const ttftMs = r?.firstTokenMs !== undefined ? Math.max(0, r.firstTokenMs - req.arrivalMs) : undefined;
    const tbtMeanMs = r && r.tbtN > 0 ? r.tbtSum / r.tbtN : undefined;
    const rec: RequestRecord = {
      v: 1, id: req.id, type, pool: this.pool, instance: this.id, outcome, promptTokens: req.inputTokens, completionTokens,
      energyJ, energySource, finishedMs: this.#clock.now(),
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
        await this.#step({ type: 'pool_set_clock', clockMhz: cmd.clockMhz, reason: cmd.reason }).applied;
        return { v: 1, ok: true, detail: { clockMhz: this.#m.clockMhz } };
      }
      default: // drain, resume, sleep, wake: the lifecycle commands (./sleep-mode.ts)
        return this.#lifecycleCommands.command(cmd, this.#stopping !== undefined);
    }
  }

  // ---------------------------------------------------------------- effects on the GPU and the pool

  /** Sets the GPU clock; the machine learns the clock the GPU took (or that the change failed). */
  async #applyClock(mhz: number, why: string, inputs: Record<string, unknown>): Promise<void> {
    let appliedMhz: number | undefined;
    if (this.#gpu) {
      try {
        appliedMhz = (await this.#gpu.lockClocks(mhz, mhz)).maxMhz;
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, mhz }, 'clock change failed');
      }
    }
    this.#step({ type: 'clock_applied', requestedMhz: mhz, appliedMhz, why, inputs: { ...inputs, pool: this.pool } });
  }

  /** Hands the queued requests the machine took to the pool leader for peers; the machine learns which were placed. */
  async #moveToPeers(ids: string[], why: string): Promise<void> {
    const batch: Held[] = [];
    for (const id of ids) {
      const h = this.#held.get(id);
      if (!h) continue;
      this.#held.delete(id);
      this.#inMove.set(id, h);
      batch.push(h);
    }
    let placed: string[] = [];
    let error: string | undefined;
    try {
      const reply = await this.#bus.request(
        subjects.poolMove(this.pool),
        MoveRequest,
        { v: 1, from: this.id, pool: this.pool, requests: batch.map((h) => ({ ...h.req, moves: (h.req.moves ?? 0) + 1 })), reason: why },
        MoveReply,
        { timeoutMs: this.#o.config.timeouts.dispatchMs * 2 },
      );
      placed = reply.placed.map((p) => p.id);
    } catch (err) {
      error = (err as Error).message;
    }
    const taken = new Set(placed);
    for (const h of batch) {
      this.#inMove.delete(h.req.id);
      // a request a peer handed back meanwhile was admitted again: its body and cancel watch stay
      if (this.#held.has(h.req.id)) continue;
      if (taken.has(h.req.id)) this.#unwatchCancel(h.req.id);
      else this.#held.set(h.req.id, h);
    }
    this.#step({ type: 'moved', ids, placed, ...(error !== undefined ? { error } : {}) });
  }

  // ---------------------------------------------------------------- engine failure

  #onEngineCrash(info: { code: number | null; signal: string | null }): void {
    if (this.state === 'stopped' || this.state === 'draining' && this.#stopping) return;
    this.#step({ type: 'lifecycle', state: 'restarting', why: `engine exited (code ${info.code}, signal ${info.signal})` });
    this.#evt('failure', `${this.id}: engine crashed; moving ${this.queued} queued requests to peers`, { action: 'move_queued', queued: this.queued, running: this.#running.size }, { code: info.code, signal: info.signal });
    // running streams end with a retryable error by themselves (their completion throws EngineCrashedError)
    this.#step({ type: 'engine_crashed' });
  }

  /** Engine gone for good, or the instance stopping: move what can be moved, end everything else with `err`. */
  async #evacuate(err: DynError): Promise<void> {
    await this.#moveDone;
    this.#step({ type: 'evacuate', why: err.message });
    await this.#moveDone;
    const w = toWireError(err);
    this.#step({ type: 'fail_queued', error: { code: w.code === 'engine_crashed' ? 'engine_crashed' : 'unavailable', message: w.message, retryable: w.retryable, ...(w.retryAfterS !== undefined ? { retryAfterS: w.retryAfterS } : {}) } });
    for (const r of this.#running.values()) r.ac.abort(err);
  }

  // ---------------------------------------------------------------- status and telemetry

  #publishStatus(): void {
    if (this.#bus.closed) return;
    const running = [...this.#running.values()];
    const now = this.#clock.now();
    const st: InstanceStatus = {
      v: 1, id: this.id, pool: this.pool, tp: this.#o.tp, gpuIds: this.#o.gpuIds, state: this.state,
      startedMs: this.startedMs, seq: this.#seq++, sentMs: now, clockMhz: this.#m.clockMhz, maxClockMhz: maxClockOf(this.#m),
      queued: this.queued, running: running.length, queuedIds: this.#m.queue.slice(0, 1024).map((q) => q.id),
      runningIds: running.slice(0, 1024).map((r) => r.req.id), runningSeqs: running.slice(0, 1024).map((r) => r.seq),
      loadByType: currentLoad(this.#m, now, this.#cfg), epochLoadByType: projectedLoad(this.#m, now, this.#cfg),
      admittedByType: { ...this.#m.admitted },
      pendingPrefillTokens: pendingPrefillTokens(this.#m),
    };
    if (this.#prefix.counts) st.prefixCacheTokens = { ...this.#prefix.counts };
    if (this.#o.node) st.node = this.#o.node;
    // the connection it goes out on: the server's word that it ended takes this instance out of dispatch at once
    const conn = connectionIdOf(this.#bus.nc);
    if (conn) st.conn = conn;
    if (this.#m.emergencyStepName) st.emergency = this.#m.emergencyStepName;
    if (this.#m.credits.epoch > 0) st.creditEpoch = this.#m.credits.epoch;
    const lent = creditsOutstanding(this.#m.credits, now);
    if (lent > 0) st.creditsOutstanding = lent;
    // the status schedule each instance keeps (its own interval from its start): the twin check reads it (debug level)
    this.#log.debug({ status: { seq: st.seq, state: st.state, queued: st.queued, running: st.running, clockMhz: st.clockMhz } }, 'status');
    try {
      this.#bus.publish(controlSubjects.instanceStatus(this.pool, this.id), InstanceStatus, st);
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'status not published');
    }
  }

  /** The engine's prefix-cache counters, when they may have moved (PrefixCacheScrape), within the engine's probe deadline. */
  async #scrapeEngine(): Promise<void> {
    if (this.#o.engine.state !== 'ready') return;
    try {
      const c = await this.#prefix.scrape(() => this.#o.engine.prefixCache(), this.#running.size);
      if (c) this.#step({ type: 'prefix_cache', lookup: c.lookup, hit: c.hit });
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'engine metrics not read');
    }
  }

  async #telemetry(): Promise<void> {
    const gpu = this.#gpu;
    if (!gpu || this.#bus.closed) return;
    void this.#scrapeEngine();
    const { deltaJ, staleMs } = await this.#reads.read(gpu);
    if (this.#running.size > 0) for (const r of this.#running.values()) r.energyJ += deltaJ / this.#running.size;
    const now = this.#clock.now();
    const tel: InstanceTelemetry = {
      v: 1, id: this.id, pool: this.pool, tp: this.#o.tp, gpus: this.#o.gpuIds, clockMhz: this.#m.clockMhz, maxClockMhz: maxClockOf(this.#m),
      powerW: this.#reads.powerW, energyJ: this.#reads.energyJ, energySource: gpu.kind === 'emulated' ? 'modelled' : 'measured',
      queued: this.queued, running: this.#running.size, loadByType: currentLoad(this.#m, now, this.#cfg), state: this.state, sentMs: now,
    };
    if (this.#o.node) tel.node = this.#o.node;
    if (staleMs !== undefined) tel.gpuStaleMs = staleMs;
    const p99 = (a: number[]) => (a.length ? [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * 0.99))]! : undefined);
    const t1 = p99(this.#ttfts), t2 = p99(this.#tbts);
    if (t1 !== undefined) tel.ttftP99Ms = t1;
    if (t2 !== undefined) tel.tbtP99Ms = t2;
    this.#ttfts = this.#ttfts.slice(-500);
    this.#tbts = this.#tbts.slice(-500);
    if (this.#m.emergencyStepName) tel.emergency = this.#m.emergencyStepName;
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
      if (this.state === 'ready' || this.state === 'restarting') this.#step({ type: 'lifecycle', state: 'draining', why: 'stopping' });
      for (const s of this.#serves) s.unsubscribe();
      await this.#moveDone;
      this.#step({ type: 'evacuate', why: 'instance stopping' });
      await this.#moveDone;
      const until = this.#clock.now() + graceMs;
      while ((this.#running.size > 0 || this.queued > 0) && this.#clock.now() < until) await this.#clock.sleep(50);
      const gone = new DynError('unavailable', `instance ${this.id} stopped`, { retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS });
      this.#step({ type: 'fail_queued', error: { code: 'unavailable', message: gone.message, retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS } });
      for (const r of this.#running.values()) r.ac.abort(gone);
      await this.#clock.sleep(50);
      for (const t of this.#timers) this.#clock.clearInterval(t);
      try {
        await this.#gpu?.resetClocks();
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'clock reset at stop failed');
      }
      await this.#gpu?.close().catch(() => {});
      await this.#o.engine.stop(Math.min(5000, graceMs)).catch(() => {});
      if (this.#statusTimer !== undefined) this.#clock.clearInterval(this.#statusTimer); // 'stopped' once the engine has exited, its GPUs free
      this.#m = { ...this.#m, lifecycle: 'stopped' };
      this.#publishStatus();
      this.#cancelSub?.unsubscribe();
      this.#gateways.stop();
      this.#cancelable.clear();
    })();
    return this.#stopping;
  }
}
