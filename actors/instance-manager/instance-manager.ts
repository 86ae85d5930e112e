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
 *
 * Its parts: running.ts (what it holds of a request; LegHost, what the parts below reach of it), engine-stream.ts
 * (a request it streams from the engine), direct-legs.ts (a request the gateway streams: grant and reports),
 * status.ts (its status, telemetry and request records), machine-io.ts, sleep-mode.ts, drain-migrate.ts,
 * gateway-watch.ts, gpu-reads.ts, prefix-scrape.ts, metrics.ts.
 */
import { instanceStatusMs } from '../../src/policy/suspect.ts';
import type { Logger } from 'pino';
import {
  Admission, Cancel, InferenceRequest, InstanceCommand, InstanceStatus, InstanceTelemetry, MoveReply, MoveRequest,
  RequestRecord, TokenChunk, Ack, controlSubjects, subjects, DynError, toWireError,
  TokenizeRequest, TokenizeReply, DetokenizeRequest, DetokenizeReply, TOKENIZER_QUEUE, LegMessage, LegReply,
  type Grant as GrantT,
  type InstanceCommand as InstanceCommandT, type RequestType, type WireError,
} from '../../protocols/index.ts';
import type { Bus, ServeHandle, SubscribeHandle } from '../../src/runtime/bus.ts';
import { connectionIdOf } from '../../src/runtime/nats-dial.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { LifecycleCommands } from './sleep-mode.ts';
import type { GpuControl } from '../../src/gpu/index.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';
import { maxLogprobsOf } from '../common/engine-limits.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { classified } from '../../src/policy/classify.ts';
import type { ClassifiedRequest } from '../../src/policy/slo.ts';
import { systemClock, within, type Clock } from '../../src/runtime/clock.ts';
import { NamedTimers } from '../../src/runtime/named-timers.ts';
import {
  initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceLifecycle, type InstanceMachineConfig, type InstanceMachineState,
} from '../../src/policy/machines/instance.ts';
import { APPLIED, admissionLog, engineDetokenize, engineTokenize, instanceMachineConfig, machineRequest, maxClockOf } from './machine-io.ts';
import { PrefixCacheScrape } from './prefix-scrape.ts';
import { GatewayWatch } from './gateway-watch.ts';
import { EngineHealth } from './engine-health.ts';
import { endForPeers } from './drain-migrate.ts';
import { GpuReads } from './gpu-reads.ts';
import { requestShareJ } from '../../src/policy/energy.ts';
import { newRunning, TTFT_TRACE, type Held, type LegHost, type Running } from './running.ts';
import { streamFromEngine } from './engine-stream.ts';
import { legMessage, runDirectLeg } from './direct-legs.ts';
import { RecordCodec, instanceStatus, instanceTelemetry, requestRecord } from './status.ts';
import type { InstanceMetricsSnapshot } from './metrics.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';
export type { InstanceMetricsSnapshot } from './metrics.ts';

export type InstanceState = InstanceLifecycle;

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
  #timers: NamedTimers; // its telemetry's, its engine probe's, the machine's arm_timer, pause_timer (its ladder tick runs only while it may act)
  #statusTimer?: unknown; // the status period, until the engine has exited (the pool reads 'stopped' as its GPUs free)
  #gpu?: GpuControl;
  /** the GPU clock changes, one after the other in the order the machine asked for them. */
  #clockChain: Promise<void> = Promise.resolve();
  /** the move to peers in flight (the machine allows one). */
  #moveDone: Promise<void> = Promise.resolve();
  #reads: GpuReads;
  /** the sums of the records it published: its telemetry's request counts, its /metrics' outcomes and tokens. */
  readonly #tally = new RequestTally();
  #seq = 0;
  #ttfts: number[] = [];
  #tbts: number[] = [];
  #stopping?: Promise<void>;
  /** the engine's prefix-cache counters (actors/instance-manager/prefix-scrape.ts). */
  #prefix = new PrefixCacheScrape();
  #gateways: GatewayWatch; // the gateway processes streaming its direct requests (a leg whose gateway is gone ends)
  #lifecycleCommands: LifecycleCommands;
  /** what engine-stream.ts and direct-legs.ts reach of this manager. */
  #host: LegHost;
  #health: EngineHealth; // the running engine's /health probe: a hung one is killed, restarted as a crashed one

  constructor(o: InstanceManagerOptions) {
    this.#o = o;
    this.id = o.id;
    this.pool = o.pool;
    this.#bus = o.bus;
    this.#log = o.log;
    this.#clock = o.clock ?? systemClock;
    this.#timers = new NamedTimers(this.#clock);
    this.startedMs = this.#clock.now();
    this.#reads = new GpuReads(this.#log, () => this.#clock.now());
    this.#evt = eventPublisher(o.bus, o.id, o.log, this.#clock);
    this.#cfg = instanceMachineConfig(o);
    this.#m = initialInstanceState(this.#clock.now());
    this.#gateways = new GatewayWatch(this.#clock, o.config.timeouts.resumeGraceMs);
    const evacuate = (): void => { if (this.queued > 0) this.#step({ type: 'evacuate', why: 'draining: queued requests to peers' }); };
    const lifecycle = (state: 'ready' | 'draining', why: string): void => { this.#step({ type: 'lifecycle', state, why }); if (state === 'draining') endForPeers(o.config.scaling.drainMigrateS, this.id, this.#running, this.#clock.now(), this.#tbts, evacuate); };
    this.#lifecycleCommands = new LifecycleCommands({ engine: o.engine, log: o.log, state: () => this.state, queued: () => this.queued, running: () => this.running, lifecycle, step: (ev) => void this.#step(ev) });
    this.#host = {
      id: this.id, pool: this.pool, bus: this.#bus, log: this.#log, clock: this.#clock, config: o.config, engine: o.engine, engineApiKey: o.engineApiKey,
      running: this.#running, held: this.#held, replyGrants: this.#replyGrants, admitState: this.#admitState, gateways: this.#gateways,
      step: (ev) => this.#step(ev),
      clockMhz: () => this.#m.clockMhz,
      gpuKind: () => this.#gpu?.kind,
      sampleTtft: (ms) => (this.#health.tokens(), this.#pushSample(this.#ttfts, ms)),
      sampleTbt: (ms) => (this.#health.tokens(), this.#pushSample(this.#tbts, ms)),
      watchCancel: (id) => this.#watchCancel(id),
      ended: (id, ok) => this.#ended(id, ok),
      record: (...a) => this.#record(...a),
      finishWithError: (...a) => this.#finishWithError(...a),
    };
    this.#health = new EngineHealth({ clock: this.#clock, engine: o.engine, settings: o.config.timeouts.engineHealth, hung: (misses) => this.#onEngineDown({ misses }) });
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
      outcomes: { ...this.#tally.outcomes }, promptTokens: this.#tally.promptTokens, completionTokens: this.#tally.completionTokens,
    };
  }

  get clockMhz(): number {
    return this.#m.clockMhz;
  }

  /** One machine transition; performs its effects. Resolves once the clock changes it asked for are applied. */
  #step(ev: InstanceEvent): { effects: InstanceEffect[]; applied: Promise<void> } {
    const now = this.#clock.now();
    const m = this.#m, admission = ev.type === 'admit' || ev.type === 'credited_start';
    // the state the admission met, for the debug log; the step edits it in place (the manager keeps no earlier state)
    const met = admission && this.#log.isLevelEnabled('debug') ? { clockMhz: m.clockMhz, queued: m.queue.length, running: m.running.size } : undefined;
    const { state, effects } = instanceStep(m, ev, now, this.#cfg, true);
    if (met && admission) this.#log.debug(admissionLog(ev, met, effects, now), 'admission');
    this.#m = state;
    let applied: Promise<void> | undefined;
    for (const e of effects) {
      const p = this.#perform(e, applied);
      if (p) applied = p;
    }
    return { effects, applied: applied ?? APPLIED };
  }

  /** `clockFirst`: a clock change this step asked for before the effect (a request starts once it is applied). */
  #perform(e: InstanceEffect, clockFirst?: Promise<void>): Promise<void> | undefined {
    switch (e.kind) {
      case 'arm_timer':
        return this.#timers.arm(e.timer, e.everyMs, () => void this.#step({ type: e.timer }));
      case 'pause_timer':
        return this.#timers.pause(e.timer);
      case 'admitted':
      case 'refused':
      case 'lent': // the admission reply, or the credited report's (#admit and direct-legs.ts legReport read them)
        return undefined;
      case 'start': {
        const h = this.#held.get(e.id);
        // a credited start is in the engine already: the instance counts it now (its end report may follow at once)
        if (h && e.credited) return this.#runDirect(h, true);
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
      case 'engine_sleep':
      case 'engine_wake': // sleep mode (./sleep-mode.ts)
        this.#lifecycleCommands.engine(e);
        return undefined;
    }
  }

  async start(): Promise<void> {
    const { bus, engine } = this.#o;
    // announce ourselves as starting so the pool sees the instance coming (it will not dispatch to it yet)
    this.#statusTimer = this.#clock.setInterval(() => this.#publishStatus(), instanceStatusMs(this.#o.config.liveness));
    this.#publishStatus();
    this.#gateways.start(bus);
    // the engine's own output at debug level (the emulator's first-token lines: the twin check's hop to the engine)
    if (this.#log.isLevelEnabled('debug')) engine.on('log', (l) => this.#log.debug({ stream: l.stream, line: l.line }, 'engine output'));
    engine.on('crash', (info) => this.#onEngineDown(info));
    engine.on('restarted', () => {
      this.#health.restarted();
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
      bus.serve(subjects.instanceControl(this.id), InstanceCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64, requestsOnly: true }),
      // the gateway's reports on the direct requests this instance granted (first token, end)
      // (one, or a gateway's batch: CreditLoan.batches); a publication (no reply asked) in its message's callback, no mailbox slot
      bus.serve(subjects.instanceLeg(this.id), LegMessage, LegReply, async (m) => legMessage(this.#host, m), { capacity: this.#o.config.engine.maxQueued + this.#o.config.engine.maxInEngine, concurrency: 64, publication: (m) => void legMessage(this.#host, m) }),
      // the gateway counts prompts with the engine's tokenizer (any instance of the model answers)
      bus.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => engineTokenize(this.#o.engine, req, maxLogprobsOf(this.#o.config.engine)), { queue: TOKENIZER_QUEUE, capacity: 256, concurrency: 8 }),
      bus.serve(subjects.detokenize(), DetokenizeRequest, DetokenizeReply, (req) => engineDetokenize(this.#o.engine, req), { queue: TOKENIZER_QUEUE, capacity: 64, concurrency: 4 }),
      // peers of the pool: whether anyone has room (backpressure, emergency step 3 needs somebody to move to)
      bus.subscribe(controlSubjects.instanceStatusPool(this.pool), InstanceStatus, (s) => {
        if (s.id !== this.id) void this.#step({ type: 'peer_status', id: s.id, queued: s.queued, running: s.running, state: s.state });
      }, { capacity: 1024, expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id), unwanted: (subject) => subject === controlSubjects.instanceStatus(this.pool, this.id) }), // its own: undecoded
    );
    // apart from #serves: a Cancel still ends a request while the instance drains at stop
    this.#cancelSub = bus.subscribe(subjects.cancelAll(), Cancel, (c) => {
      if (this.#cancelable.has(c.id)) void this.#step({ type: 'cancel', id: c.id, reason: c.reason });
    }, { capacity: 1024, expectSubject: (c) => subjects.cancel(c.id) });
    this.#step({ type: 'start' });
    this.#timers.arm('telemetry', 1000, () => void this.#telemetry());
    this.#timers.arm('health', this.#health.tickMs, () => this.#health.tick());
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
    // a request sent without its prompt is one the gateway streams itself: an instance that cannot grant it would
    // stream it, prompt and all (its gateway then sends the whole request through intake)
    if (req.promptForm !== undefined && req.prompt === undefined && req.messages === undefined && !(req.direct === true && this.#o.engineApiKey)) {
      return { v: 1, id: req.id, ok: false, instance: this.id, pool: this.pool, error: { code: 'unavailable', message: `instance ${this.id} streams its requests itself: send the prompt`, retryable: true } };
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

  #watchCancel(id: string): void { this.#cancelable.add(id); }
  #unwatchCancel(id: string): void { this.#cancelable.delete(id); }

  /** `pre`: its running record, made at the machine's start while the clock was set. */
  async #run(q: Held, pre?: Running): Promise<void> {
    if (q.req.direct && this.#o.engineApiKey) return this.#runDirect(q, false, pre);
    const req = q.req;
    const r = pre ?? newRunning(req, this.#clock.now());
    this.#running.set(req.id, r);
    this.#prefix.moved();
    return streamFromEngine(this.#host, q, r);
  }

  /** A request the instance held left the engine: its records go, and the machine learns it. */
  #ended(id: string, ok: boolean): void {
    this.#running.delete(id);
    this.#prefix.moved();
    this.#held.delete(id);
    this.#admitState.delete(id);
    this.#unwatchCancel(id);
    this.#step({ type: 'finished', id, ok });
  }

  /** A direct request (direct-legs.ts runDirectLeg): granted to the gateway, running until its report of the end. */
  #runDirect(q: Held, credited = false, pre?: Running): undefined {
    const req = q.req;
    const r = pre ?? newRunning(req, this.#clock.now());
    // a gateway that started it on a credit has the grant and took it
    if (credited) r.gatewayStarted = true;
    this.#running.set(req.id, r);
    this.#prefix.moved();
    return runDirectLeg(this.#host, q, r, credited);
  }

  #pushSample(arr: number[], v: number): void {
    arr.push(v);
    if (arr.length > 2000) arr.splice(0, arr.length - 2000);
  }

  #finishWithError(req: ClassifiedRequest, seq: number, error: WireError, outcome: 'rejected' | 'failed' | 'cancelled' | 'timed_out', r?: Running): void {
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
    const rec = requestRecord(this, req, type, outcome, r, completionTokens, energyJ, energySource, this.#clock.now());
    this.#tally.add(rec);
    try {
      this.#bus.publish(subjects.telRequest(this.pool), RecordCodec, rec);
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

  /**
   * Sets the GPU clock; the machine learns the clock the GPU took (or that the change failed), with the change's
   * time (inputs.applyMs: from the GPU call to its answer, ms; the simulator's costs.clockChangeMs, which the twin
   * check reads from the clock events).
   */
  async #applyClock(mhz: number, why: string, inputs: Record<string, unknown>): Promise<void> {
    let appliedMhz: number | undefined;
    const t0 = this.#clock.now();
    if (this.#gpu) {
      try {
        appliedMhz = (await this.#gpu.lockClocks(mhz, mhz)).maxMhz;
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, mhz }, 'clock change failed');
      }
    }
    this.#step({ type: 'clock_applied', requestedMhz: mhz, appliedMhz, why, inputs: { ...inputs, pool: this.pool, applyMs: this.#clock.now() - t0 } });
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

  /** The engine exited, or is hung (./engine-health.ts kills it then: its exit comes here as a crash's): out of dispatch at once. */
  #onEngineDown(info: { code: number | null; signal: string | null } | { misses: number }): void {
    const hung = 'misses' in info;
    if (this.state === 'stopped' || (hung || this.state === 'draining') && this.#stopping) return;
    this.#step({ type: 'lifecycle', state: 'restarting', why: hung ? `engine hung: ${info.misses} health probes missed` : `engine exited (code ${info.code}, signal ${info.signal})` });
    if (hung) return this.#evt('failure', `${this.id}: engine hung (${info.misses} health probes missed); killing it`, { action: 'kill_engine', running: this.#running.size }, info);
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
    const now = this.#clock.now();
    const st = instanceStatus(this.#o, this.startedMs, this.#m, this.#cfg, [...this.#running.values()], { seq: this.#seq++, now, prefixCounts: this.#prefix.counts, conn: connectionIdOf(this.#bus.nc) });
    // the status schedule each instance keeps (its own interval from its start): the twin check reads it (debug level)
    this.#log.debug({ status: { seq: st.seq, state: st.state, queued: st.queued, running: st.running, clockMhz: st.clockMhz } }, 'status');
    try {
      this.#bus.publish(controlSubjects.instanceStatus(this.pool, this.id), InstanceStatus, st);
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'status not published');
    }
  }

  async #telemetry(): Promise<void> {
    const gpu = this.#gpu;
    if (!gpu || this.#bus.closed) return;
    // the engine's prefix-cache counters, when they may have moved (PrefixCacheScrape)
    void this.#prefix.scrapeEngine(this.#o.engine, this.#running.size, (c) => this.#step({ type: 'prefix_cache', lookup: c.lookup, hit: c.hit }), this.#log);
    const { deltaJ, staleMs } = await this.#reads.read(gpu);
    // each running request's share of the reading's increment (the rule a gateway's estimate of a dead instance's leg applies too)
    for (const r of this.#running.values()) r.energyJ += requestShareJ(deltaJ, this.#running.size);
    const now = this.#clock.now();
    const tel = instanceTelemetry(this.#o, this.#m, this.#cfg, this.#running.size, {
      now, powerW: this.#reads.powerW, energyJ: this.#reads.energyJ, emulatedGpu: gpu.kind === 'emulated', staleMs, ttfts: this.#ttfts, tbts: this.#tbts, requests: this.#tally.counts(this.startedMs),
    });
    this.#ttfts = this.#ttfts.slice(-500);
    this.#tbts = this.#tbts.slice(-500);
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
      await this.#telemetry().catch(() => {}); // its last request counts, the stop's records in them
      this.#timers.clear();
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
