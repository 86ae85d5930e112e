/**
 * The gateway's backend over NATS: subscribe to the request's stream subject FIRST (so nothing can be
 * missed), then ask cluster intake (request-reply with a deadline) to admit it; a refusal becomes a typed
 * DynError (mapped to 429/503 by the HTTP layer). Aborting the signal publishes a Cancel.
 *
 * Direct data path (default, docs/DATAPATH.md): the request says `direct`, and when its instance starts it,
 * the instance publishes a grant (its engine's URL and API key) on the stream subject instead of relaying the
 * tokens. The gateway then streams from the engine itself: no per-token NATS message, msgpack or relay. It
 * reports the first token and the leg's end to the instance (LegReport), which keeps admission, cancel, SLO
 * and energy accounting and may still end the leg with an error chunk on the stream subject.
 *
 * Request migration: when the engine's stream breaks mid-generation (the engine or its instance died), or
 * the control plane ends the leg with a retryable error, the request continues as a new leg on a peer with
 * its prompt and the text already sent (`migration` legs, at most `migrationLimit`; only while its text is kept:
 * `migrationMaxBytes` per stream and `migrationMaxTotalBytes` across this gateway's streams, UTF-8 bytes, legs.ts
 * MigrationText). The client sees one stream: seq, token counts and usage continue across legs, and
 * usage sums the legs' energy.
 *
 * An instance that cannot grant (no engine key) streams the tokens over NATS; the gateway reads
 * them from a bounded queue, and a stream silent for `chunkTimeoutMs` ends with an explicit retryable error.
 *
 * Request plane (docs/DATAPATH.md): with a router (router.ts admitRouted) the gateway picks the pool and
 * instance itself and asks that instance for admission: one request-reply. What its view cannot decide goes
 * to the cluster intake; an admission that timed out is cancelled and sent to intake under a new leg id. No
 * pool leader dispatched a routed leg, so the gateway watches its instance: a leg whose process died is sent again.
 *
 * Admission is retried, not timed out: every hop (cluster intake, pool dispatch, instance admit) is
 * idempotent by request id (a duplicate joins the admission in flight or gets its answer), so an attempt
 * that hit a dead manager (no reply within `admitAttemptMs`, no responders, a dropped connection, the
 * cluster saying `unavailable`) is sent again with the same id until `admitTimeoutMs` has passed. While
 * NATS is reconnecting, new requests wait for the connection inside that same budget. A pool that holds the
 * request for a ready instance (an engine or instance starting, a new leader) says so on the stream subject
 * (TokenChunk.hold, with the time within which it answers): the admission is then waited for until
 * `admitTimeoutMs` past that hold's end (a leader that dies holding it has that long to be replaced), never
 * past the request's give-up time. So is an intake that waits on a leader election (elections.ts). Holds and elections
 * that follow one another extend it up to `holdLimitMs` after the intake began, then the client gets a retryable 503.
 */
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { DynError, RemoteError } from '../../protocols/errors.ts';
import { subjects } from '../../protocols/subjects.ts';
import {
  Admission, Cancel, DetokenizeReply, DetokenizeRequest, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest, type LegReply,
} from '../../protocols/messages.ts';
import { streamCompletionBatches, streamCompletionPush } from '../../src/engine/client.ts';
import { Http1Pool } from '../../src/engine/http1.ts';
import { LeanAbort, type AbortLike } from '../../src/runtime/abort.ts';
import { chunkExtras, type EngineChunk } from '../../src/engine/engine.ts';
import { continuousUsage } from '../../src/engine/sse-event.ts';
import { EngineStreamError } from '../../src/engine/errors.ts';
import type { GatewayBackend, ResumeFrom, StreamHooks } from './server.ts';
import { ChunkQueue } from './chunk-queue.ts';
import { RelayFlow } from './relay-flow.ts';
import { LegOrder, legLost, relayGapChunk, relayedOut } from './relay-order.ts';
import { accountSpan, nativeOf, LegEnded, MigrationText, canRedrive, canContinue, cannotContinue, legFailure, sentEvent, engineRequestOf, chargeLeg, usageOf, countedWithin, continuationEnd, contextFullEnd, endForeignLeg, legOf, resumedState, silentLegEnd, engineAddress, canMigrate, continuation, legStarted, endReport, keptSeat, placedChunk, engineDown, firstOrLocal, fixed, AdmittedBatches, flushLegReports, holderGoneChunk, legReport, retryableAdmission, retrying, timeTokens, type AdmissionCounters, type BatchSink, type LegTiming, type StreamState } from './legs.ts';
import { admitRouted, type RequestRouter, type RoutedAdmission } from './router.ts';
import { codePointLength, shiftTextOffsets } from './openai.ts';
import { StreamListeners } from './stream-listeners.ts';
import { InstanceEnergyMeters, type LegMark } from './leg-energy.ts';
import { estimatedLegRecord, publishLegRecord } from './leg-record.ts';
import { crossStopEvent, crossStopOf, RelayedCrossStop } from './stop-across.ts';
import { reopenLeg } from './reopen.ts';
import { electionDeadline, type Elections } from './elections.ts';
import type { NatsBackendOptions } from './backend-options.ts';
import { DEFAULT_ENGINE_IDLE, engineIdleBounds, type EngineIdleSettings, type IdleSlo } from '../../src/policy/engine-liveness.ts';
export type { NatsBackendOptions } from './backend-options.ts';
export type { AdmissionCounters } from './legs.ts';

/**
 * The token stream of an admitted request, with the admission the cluster granted (pool, instance). Read it
 * chunk by chunk, or (the gateway's HTTP layer) `batches()`: the chunks that arrived together, one await per
 * batch; `batches(sink)`: the batches read from an engine mid-stream go to `sink` as they are read, without an
 * await (docs/DATAPATH.md), and the rest (a relayed or control chunk, a leg's last chunk, an error) are yielded,
 * in stream order. One reader, one way.
 */
export type AdmittedStream = AsyncIterable<TokenChunk> & { readonly admission: Admission; batches(sink?: BatchSink): AsyncIterable<readonly TokenChunk[]> };

/** what ends an engine call pushed to a reader at a stop string that completed across legs. */
const STOPPED = new Error('a stop string completed across legs');

/** One leg of a request: its own id and stream subject (a migrated request gets a new leg on a peer). */
interface Leg {
  req: InferenceRequest;
  q: ChunkQueue;
  sub: { unsubscribe(): void };
  /** while the gateway streams this leg from an engine: takes the control chunks (an error ends the leg). */
  onControl?: (c: TokenChunk) => void;
  /** while streamed from an engine: ends that call (the request's abort, through the stream's one listener). */ onAbort?: () => void;
  cancelSent: { done: boolean };
  /** the cluster's admission (or, when the instance's grant came first, what the grant says). */
  admission: Admission;
  /** admitted by an instance the gateway chose itself: the process that holds the leg (no pool leader knows of it). */
  holder?: { instance: string; startedMs?: number; admittedMs: number };
  /** a pool announced it holds the leg (TokenChunk.hold): its admission is waited for until this time, ms. */
  heldUntilMs?: number;
  /** started on a credit of its instance (no admission asked): the instance learns of it from the credited report. */
  credited?: RoutedAdmission['credited'];
}

/** How a leg is admitted: `exclude` an instance from the gateway's own routing; `intake`: only through the cluster intake. */
interface LegRoute { exclude?: string; intake?: boolean }

export class NatsBackend implements GatewayBackend {
  readonly counters: AdmissionCounters = { retries: 0, heldForReconnect: 0, foreignTerminals: 0, migrated: 0, routed: 0, credited: 0, viaIntake: 0, holderDied: 0, poolHolds: 0, electionHolds: 0, localTokenized: 0, resumed: 0, energyEstimated: 0, estimatedMeasuredJ: 0, estimatedModelledJ: 0, relayGaps: 0, relayWaits: 0, relayOverflows: 0, otherCopies: 0 };
  private readonly admitTimeoutMs: number;
  private readonly admitAttemptMs: number;
  private readonly chunkTimeoutMs: number;
  private readonly capacity: number;
  private readonly tokenizeTimeoutMs: number;
  private readonly tokenizeHoldMs: number;
  private readonly holdLimitMs: number;
  private readonly local: NatsBackendOptions['localTokenizer'];
  private readonly direct: boolean;
  private readonly migrationLimit: number;
  private readonly migrationMaxBytes: number;
  /** the text this gateway's streams keep for migration, bounded per stream and in all. */
  readonly migrationText: MigrationText;
  private readonly legReportTimeoutMs: number;
  private readonly engineIdle: { settings: EngineIdleSettings; fallback: IdleSlo };
  private readonly router: RequestRouter | undefined;
  private readonly directAdmitMs: number;
  private readonly holderCheckMs: number;
  private readonly elections: Elections | undefined;
  private readonly clock: Clock;
  private readonly streams: StreamListeners;
  /** the instances' energy meters: a leg whose instance dies before its end report's answer is charged an estimate (leg-energy.ts). */ private readonly meters: InstanceEnergyMeters;
  /** keep-alive connections to the engines this gateway streams from (one per concurrent stream; the lean HTTP/1.1 client). */
  private readonly pool = new Http1Pool({ maxIdlePerHost: 256, idleTimeoutMs: 4_000 });
  private readonly held = new Set<ChunkQueue>();
  /** bytes of relayed chunks the legs' queues hold for clients that have not taken them (each at most RELAY_HOLD_BYTES). */
  relayHeldBytes = (): number => [...this.held].reduce((n, q) => n + q.bytes, 0);

  constructor(private readonly bus: Bus, opts: NatsBackendOptions = {}) {
    this.admitTimeoutMs = opts.admitTimeoutMs ?? 10_000;
    this.admitAttemptMs = Math.min(opts.admitAttemptMs ?? 3000, this.admitTimeoutMs);
    this.chunkTimeoutMs = opts.chunkTimeoutMs ?? 60_000;
    this.capacity = opts.streamCapacity ?? 8192;
    this.tokenizeTimeoutMs = opts.tokenizeTimeoutMs ?? 5000;
    this.tokenizeHoldMs = opts.tokenizeHoldMs ?? 30_000;
    this.holdLimitMs = opts.holdLimitMs ?? 60_000;
    this.local = opts.localTokenizer;
    this.direct = opts.direct ?? true;
    this.migrationLimit = opts.migrationLimit ?? 3;
    this.migrationMaxBytes = opts.migrationMaxBytes ?? 1 << 20;
    this.migrationText = new MigrationText({ maxBytes: this.migrationMaxBytes, maxTotalBytes: opts.migrationMaxTotalBytes ?? 256 << 20 });
    this.legReportTimeoutMs = opts.legReportTimeoutMs ?? 2000;
    this.engineIdle = opts.engineIdle ?? { settings: DEFAULT_ENGINE_IDLE, fallback: { ttftMs: 2000, tbtMs: 100 } };
    this.router = opts.router;
    this.directAdmitMs = Math.min(opts.directAdmitMs ?? 2000, this.admitAttemptMs);
    this.holderCheckMs = opts.holderCheckMs ?? 250;
    this.elections = opts.elections;
    this.clock = opts.clock ?? systemClock;
    this.streams = new StreamListeners(bus, this.direct, this.capacity);
    this.meters = new InstanceEnergyMeters(this.clock, this.direct ? bus : undefined);
  }

  /**
   * Any instance's engine tokenizer (queue group): vLLM's /tokenize. Held and retried like admission (it is
   * idempotent), also when the instance that answered has its engine down (another instance may answer), and
   * past tokenizeTimeoutMs while the router expects an instance (none ready, one starting or restarting: up to
   * tokenizeHoldMs), as a pool holds a request for it. With a local tokenizer: one attempt, then the local count.
   */
  tokenize(req: TokenizeRequest): Promise<TokenizeReply> {
    if (this.local) return firstOrLocal(this.bus, this.counters, Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), (timeoutMs) => this.bus.request(subjects.tokenize(), TokenizeRequest, req, TokenizeReply, { timeoutMs }), () => this.local!.tokenize(req));
    const start = this.clock.now();
    let coming = start; // until tokenizeTimeoutMs after capacity was last seen coming, bounded by tokenizeHoldMs
    const until = () => Math.min(Math.max(start, this.router?.capacityComing?.(this.tokenizeHoldMs) ? (coming = this.clock.now()) : coming) + this.tokenizeTimeoutMs, start + Math.max(this.tokenizeHoldMs, this.tokenizeTimeoutMs));
    return retrying(this.bus, this.counters, until, Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), undefined, (timeoutMs) =>
      this.bus.request(subjects.tokenize(), TokenizeRequest, req, TokenizeReply, { timeoutMs }), engineDown, this.clock);
  }
  detokenize(req: DetokenizeRequest): Promise<DetokenizeReply> {
    if (this.local) return firstOrLocal(this.bus, this.counters, Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), (timeoutMs) => this.bus.request(subjects.detokenize(), DetokenizeRequest, req, DetokenizeReply, { timeoutMs }), () => this.local!.detokenize(req));
    return retrying(this.bus, this.counters, fixed(this.clock.now() + this.tokenizeTimeoutMs), Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), undefined, (timeoutMs) =>
      this.bus.request(subjects.detokenize(), DetokenizeRequest, req, DetokenizeReply, { timeoutMs }), engineDown, this.clock);
  }

  ready = (): boolean => !this.bus.closed;

  close(): void {
    flushLegReports(this.bus);
    this.streams.close();
    this.meters.stop();
    this.pool.destroy();
  }

  private cancel(id: string, reason: string, sent?: { done: boolean }): void {
    if (sent?.done) return;
    if (sent) sent.done = true;
    flushLegReports(this.bus); // the held leg reports first: a Cancel never overtakes its leg's end
    try {
      this.bus.publish(subjects.cancel(id), Cancel, { v: 1, id, reason: reason.slice(0, 512) });
    } catch {
      // connection gone: the instance will notice the deadline instead
    }
  }

  /** The admission of `msg`: the gateway's own routing (`leg.holder` set when it admitted), else the cluster intake's. */
  private async admit(msg: InferenceRequest, signal: AbortLike, o: LegRoute, leg: Leg): Promise<RoutedAdmission | 'timed_out'> {
    if (this.router && !o.intake) {
      const a = await admitRouted(this.bus, this.router, msg, signal, this.directAdmitMs, o.exclude);
      if (a !== 'timed_out' && a !== 'intake' && a.ok) {
        this.counters.routed++;
        if (a.credited) {
          this.counters.credited++;
          leg.credited = a.credited;
        }
        if (a.instance) leg.holder = { instance: a.instance, ...(a.startedMs !== undefined ? { startedMs: a.startedMs } : {}), admittedMs: this.clock.now() };
      }
      if (a !== 'intake') return a;
    }
    this.counters.viaIntake++;
    return this.admitIntake(msg, signal, leg);
  }

  /**
   * The cluster's admission of `msg`, retried with the same id inside admitTimeoutMs (see the module
   * comment), or past it while a pool holds the request: until admitTimeoutMs after the end of the last hold
   * a pool announced (`leg.heldUntilMs`), or after the last leader election under way since the intake began
   * (a pool or the cluster planner without its leader: `elections`), never past holdLimitMs after the intake began
   * nor the request's give-up time. A refusal that retrying cannot fix (overloaded, rejected, invalid) is returned
   * as it came.
   */
  private async admitIntake(msg: InferenceRequest, signal: AbortLike, leg: Leg): Promise<Admission> {
    const start = this.clock.now();
    const base = start + this.admitTimeoutMs;
    const held = () => Math.max(base, leg.heldUntilMs ?? 0);
    const elected = () => electionDeadline(this.elections, start, this.admitTimeoutMs, this.clock.now());
    try {
      // however many holds and elections follow one another, never past holdLimitMs: a client gets an answer
      const limit = Math.min(msg.giveUpAtMs, start + Math.max(this.admitTimeoutMs, this.holdLimitMs));
      return await retrying(this.bus, this.counters, () => Math.min(Math.max(held(), elected()), limit), this.admitAttemptMs, signal,
        (timeoutMs) => this.bus.request(subjects.clusterIntake(), InferenceRequest, msg, Admission, { timeoutMs, signal }),
        (a) => !a.ok && retryableAdmission(a.error?.code) && a.error?.retryable !== false, this.clock);
    } finally {
      // waited past its budget (and any pool hold's) because an election was under way
      if (this.clock.now() > held() && elected() > held()) this.counters.electionHolds++;
    }
  }

  /**
   * Subscribes to the leg's stream subject, then asks the cluster intake to admit it. Resolves once the
   * admission says yes, or earlier when the instance's grant arrives (the grant proves the admission; its
   * reply is still on its way back through the pool and cluster managers).
   */
  private async openLeg(req: InferenceRequest, signal: AbortLike, o: LegRoute = {}, direct = false): Promise<Leg> {
    const subject = subjects.stream(req.id);
    // relayCredit: the instance paces a leg it streams by this gateway's grants (relay-flow.ts); one copy (Object.assign: a spread's members added take V8's slow path)
    const msg: InferenceRequest = Object.assign({}, req, direct ? { direct: true, streamSubject: subject, relayCredit: true } : { streamSubject: subject, relayCredit: true });
    const q = new ChunkQueue(this.capacity, this.clock, new RelayFlow(this.bus, msg.id, this.clock, this.counters, () => this.cancel(msg.id, 'its client fell behind past the relay bound', leg.cancelSent)));
    const order = new LegOrder();
    let granted: ((c: TokenChunk) => void) | undefined;
    const grant = new Promise<TokenChunk>((r) => (granted = r));
    const leg: Leg = { req: msg, q, sub: undefined as unknown as SubscribeHandle, cancelSent: { done: false }, admission: { v: 1, id: msg.id, ok: true } };
    const onChunk = (c: TokenChunk) => {
      if (c.hold) { // a pool holds the request for a ready instance and answers within forMs: worth waiting for
        if (!leg.heldUntilMs) this.counters.poolHolds++;
        leg.heldUntilMs = Math.max(leg.heldUntilMs ?? 0, this.clock.now() + c.hold.forMs + this.admitTimeoutMs);
        return;
      }
      if (!order.own(c) && ++this.counters.otherCopies) return; // another instance's copy of this leg id: never this leg's
      if (leg.onControl) return leg.onControl(c);
      if (c.grant) granted?.(c);
      const took = order.take(c);
      if (took === 'drop' || took === 'other') return;
      if (took !== 'take') this.counters[took === 'foreign' ? 'foreignTerminals' : 'relayGaps']++; // a gap: the leg ends at the missing chunk (retryable), continued from before it
      q.push(took === 'gap' ? relayGapChunk(msg.id, order.gapAt!) : c);
    };
    const sub = this.streams.listen(subject, msg.id, onChunk);
    this.held.add(q);
    leg.sub = { unsubscribe: () => (this.held.delete(q), q.close(), sub.unsubscribe(), this.router?.learn?.(msg.id, undefined)) }; // not learned: forgotten
    const admission = this.admit(msg, signal, o, leg);
    let adm: Admission | TokenChunk | 'timed_out';
    try {
      adm = await Promise.race([admission, grant]);
    } catch (err) {
      leg.sub.unsubscribe();
      // the intake may have admitted it before the deadline: make sure nobody works on it for nothing
      if ((err as DynError).code === 'timeout' || signal.aborted) this.cancel(msg.id, 'admission not confirmed');
      throw err;
    }
    if (adm === 'timed_out') {
      // the instance may hold it: cancelled there, and the request goes to intake under a new leg id
      leg.sub.unsubscribe();
      this.cancel(msg.id, 'admission not confirmed');
      const suffix = '-i';
      const id = req.id.slice(0, 128 - suffix.length) + suffix;
      return this.openLeg({ ...req, id, streamSubject: subjects.stream(id) }, signal, { ...o, intake: true }, direct);
    }
    if ('seq' in adm) {
      // granted first: the grant proves the admission, and says where it landed; the reply no longer matters
      admission.catch(() => undefined);
      leg.admission = { v: 1, id: msg.id, ok: true };
      if (adm.instance) leg.admission.instance = adm.instance;
      if (adm.pool) leg.admission.pool = adm.pool;
      if (adm.type) leg.admission.type = adm.type;
    } else if (!adm.ok) {
      leg.sub.unsubscribe();
      const e = adm.error ?? { code: 'rejected' as const, message: 'request refused', retryable: true };
      // the cluster's refusal: its words may name pools or instances, so the HTTP layer answers in its own
      throw new RemoteError(e);
    } else {
      const { grant: g, credited: _c, ...a } = adm as RoutedAdmission;
      leg.admission = a;
      // the instance started it with its admission: the grant came in the reply (never kept in the admission)
      if (g) onChunk({ v: 1, id: msg.id, seq: 0, text: '', tokens: 0, grant: g, ...(a.instance ? { instance: a.instance } : {}), ...(a.pool ? { pool: a.pool } : {}), ...(a.type ? { type: a.type } : {}) });
    }
    return leg;
  }

  async submit(req: InferenceRequest, signal: AbortLike, hooks?: StreamHooks): Promise<AdmittedStream> {
    return this.begin(req, signal, { out: 0, sent: 0, text: '', textBytes: 0, keepText: true, energyJ: 0, legs: 0 }, () => this.openLeg(req, signal, {}, this.direct), hooks);
  }

  /** Continues a stream another gateway carried (resume.ts): that gateway's leg ended on its behalf (legs.ts endForeignLeg),
   * then a new leg with the prompt plus the journal's text (a migration, not counted against migrationLimit). */
  async resume(req: InferenceRequest, from: ResumeFrom, signal: AbortLike, hooks?: StreamHooks): Promise<AdmittedStream> {
    const st = resumedState(req, from, this.migrationMaxBytes);
    const estimateFrom = (instance: string, startedMs: number) => ((m) => m && (() => this.meters.estimate(m)))(this.meters.markAt(instance, startedMs));
    await endForeignLeg(this.bus, this.legReportTimeoutMs, req, from, st, estimateFrom, this.counters, this.clock);
    this.counters.resumed++;
    if (!canMigrate(req, st, this.migrationLimit, this.clock.now())) throw cannotContinue(req, this.clock.now());
    const next = await this.counted({ ...continuation(req, st), ...(this.direct ? { direct: true } : {}) }, signal).catch((e: unknown) => contextFullEnd(e, req.id, () => st.out++, () => usageOf(st)));
    return 'admission' in next ? next : this.begin(req, signal, st, () => this.reopen(req, next, signal, from.leg?.instance), hooks);
  }

  /** The stream of `req` from `st` once `open` admitted a leg (one that ends before it starts is sent again until firstByMs). */
  private async begin(req: InferenceRequest, signal: AbortLike, st: StreamState, open: () => Promise<Leg>, hooks?: StreamHooks): Promise<AdmittedStream> {
    // the stream's current leg (the stream loop moves it to each new leg): the one an abort wakes and cancels; its reader's batches
    const cur: { leg?: Leg; batches?: AsyncGenerator<TokenChunk[]> } = {};
    const onAbort = () => {
      // the client went away, or the gateway gave up on the request (its hold limit): the reason says which
      const failed = signal.reason instanceof DynError ? signal.reason : new DynError('cancelled', 'client disconnected', { retryable: false });
      const leg = cur.leg;
      leg?.q.fail(failed);
      if (leg) this.cancel(leg.req.id, failed.message, leg.cancelSent);
      leg?.onAbort?.();
      if (!cur.batches) leg?.sub.unsubscribe(); // never read (another choice of its request refused): no stream's `finally` lets the leg go
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const firstByMs = this.clock.now() + Math.max(this.admitTimeoutMs, this.holdLimitMs);
    const opened = (cur.leg = await open().catch((err: unknown) => {
      signal.removeEventListener('abort', onAbort);
      throw err;
    }));
    const read = (sink?: BatchSink) => (cur.batches ??= this.stream(req, cur as { leg: Leg }, signal, onAbort, firstByMs, st, hooks, sink));
    return new AdmittedBatches(opened.admission, read);
  }

  /** The client's stream over one or more legs from `st` (new or resumed), in batches (those read from an engine mid-stream to `sink`, when given). */
  private async *stream(req: InferenceRequest, cur: { leg: Leg }, signal: AbortLike, onAbort: () => void, firstByMs: number, st: StreamState, hooks?: StreamHooks, sink?: BatchSink): AsyncGenerator<TokenChunk[]> {
    let leg = cur.leg;
    /** the stream goes on with `next`: an abort that came while it was being admitted ends it at once. */
    const moveTo = (next: Leg) => {
      leg = cur.leg = next;
      if (signal.aborted) onAbort();
    };
    let finished = false;
    let told: Leg | undefined; // the leg the hook was told of: it hears of each leg once
    const tell = (c: TokenChunk) => hooks?.onLeg && told !== leg && hooks.onLeg(legOf((told = leg).req.id, { ...leg.admission, ...c }, st, this.clock.now()));
    let legOut = 0; // chunks of the current leg given to the client (or held)
    const relayStop = new RelayedCrossStop(req, st, () => usageOf(st)); // a stop string completing across legs (stop-across.ts)
    this.migrationText.claim(st);
    try {
      for (;;) {
        // a stream's next leg silent since its admission is sent again, as one ended before it started; a relayed leg silent mid-stream is lost
        const c = legOut === 0 && st.sent === 0 ? await this.nextChunk(leg) : await this.nextChunk(leg).catch((e: unknown) => silentLegEnd(e, leg.req.id, () => this.cancel(leg.req.id, legOut > 0 ? 'silent mid-stream' : 'no answer since its admission', leg.cancelSent), legOut > 0));
        if (!c) return;
        // a leg ended before it started (its instance died holding it, no peer took it) is sent again as a new leg; a relayed
        // leg lost mid-stream (a chunk missing, its instance or engine gone) continues on a new leg, as a direct one does
        const redrive = !c.grant && c.error?.retryable && legOut === 0 && canRedrive(req, st, firstByMs, this.clock.now(), this.admitTimeoutMs, this.migrationLimit);
        const lost = !c.grant && legOut > 0 && legLost(c) && canMigrate(req, st, this.migrationLimit, this.clock.now());
        if (redrive || lost) {
          leg.sub.unsubscribe();
          this.cancel(leg.req.id, `its leg was ${lost ? 'lost' : 'ended before it started'} (${c.error!.message})`, leg.cancelSent); // a live instance may still hold it
          [legOut, st.legs, this.counters.migrated] = [0, st.legs + 1, this.counters.migrated + 1];
          const next = { ...continuation(req, st), ...(this.direct ? { direct: true } : {}) };
          moveTo(await this.reopen(req, lost ? await this.counted(next, signal) : next, signal, leg.admission.instance));
          continue;
        }
        if (!c.grant) {
          if (legOut++ === 0) tell(c);
          const x = relayStop.take(c, legOut === 1);
          if (x === 'hold') continue;
          // relayed by the instance (or ended before it started); finished before given: a reader may stop at the last chunk
          if (x.c.done || x.c.error) finished = true;
          if (x.c.done && !x.c.error) this.router?.learn?.(leg.req.id, c.usage?.completionTokens); // the leg's tokens, the instance's count
          if (x.stopped) this.cancel(leg.req.id, 'a stop string completed across legs', leg.cancelSent);
          yield [relayedOut(x.c, req, st, this.migrationText, this.clock.now())];
          if (finished) return;
          continue;
        }
        tell(c);
        const next = yield* this.directLeg(req, leg, c, st, signal, sink);
        leg.sub.unsubscribe();
        if (next === 'done') {
          finished = true;
          return;
        }
        // migrate: a new leg on a peer, with the prompt and the text already sent
        legOut = 0;
        st.legs++;
        this.counters.migrated++;
        moveTo(await this.reopen(req, await this.counted({ ...continuation(req, st), direct: true }, signal), signal, leg.admission.instance));
      }
    } catch (err) {
      if (signal.aborted || finished || st.readerFailed) throw err;
      // the continuation could not be admitted, or a stream went silent: an explicit end, never a hang
      finished = true;
      if (st.sent === 0 && st.legs === 0) throw err;
      yield [continuationEnd(err, req.id, st.out++, usageOf(st))];
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.migrationText.release(st);
      leg.sub.unsubscribe();
      if (!finished && !st.ended) this.cancel(leg.req.id, signal.aborted ? 'client disconnected' : 'gateway stopped reading', leg.cancelSent);
    }
  }

  /**
   * The leg's next chunk (null at its end). A leg the gateway routed itself is known to no pool leader: if the
   * process that admitted it dies (or a new one replaces it) before the leg ends, nobody else will end it, so
   * the router's view of the instances' statuses is asked while the leg is silent, and a leg whose holder is
   * gone gets a retryable end at once (the stream loop sends a leg that never started again, as a new leg),
   * not after chunkTimeoutMs. The old leg is cancelled in case the verdict was wrong.
   */
  private async nextChunk(leg: Leg): Promise<TokenChunk | null> {
    const h = leg.holder;
    const router = this.router;
    if (!h || !router) return leg.q.next(this.chunkTimeoutMs);
    const c = await leg.q.nextWatched(this.chunkTimeoutMs, this.holderCheckMs, () => router.holderGone(h.instance, h.startedMs, h.admittedMs));
    if (c !== 'gone') return c;
    this.counters.holderDied++;
    this.cancel(leg.req.id, 'its instance is gone', leg.cancelSent);
    return holderGoneChunk(leg.req.id);
  }

  /**
   * Streams one granted leg from its engine. Returns 'done' when the request ended (its final chunk
   * yielded: success or an error that cannot migrate), 'migrate' when it must continue on a peer.
   */
  private async *directLeg(req: InferenceRequest, leg: Leg, grant: TokenChunk, st: StreamState, signal: AbortLike, sink?: BatchSink): AsyncGenerator<TokenChunk[], 'done' | 'migrate'> {
    const instance = grant.instance;
    const estimate = instance ? ((m: LegMark) => () => this.meters.estimate(m))(this.meters.mark(instance)) : undefined;
    const url = engineAddress(grant.grant!.url);
    // the leg's cancellation (the client went away, the instance ended the leg): no EventTarget (src/runtime/abort.ts)
    const ac = new LeanAbort();
    const stopLeg = (c: TokenChunk) => {
      if (c.error || c.done) ac.abort(new LegEnded(c.error ?? { code: 'unavailable', message: 'the instance ended the request', retryable: true }));
    };
    leg.onControl = stopLeg;
    for (let c = leg.q.take(); c; c = leg.q.take()) stopLeg(c);
    const onAbort = (leg.onAbort = () => ac.abort(signal.reason));
    if (signal.aborted) onAbort();
    const lr = leg.req;
    // silent past its idle deadline (a frozen engine), the leg ends as an engine failure and migrates (docs/DATAPATH.md "A hung engine")
    // the engine's count of the tokens it made is asked for where a break continues the stream (or a stop string may cross into it)
    const engineReq = engineRequestOf(lr, this.clock.now(), engineIdleBounds(lr.slo, this.engineIdle.fallback, this.engineIdle.settings), st.legs > 0 || (canMigrate(req, st, this.migrationLimit, this.clock.now()) && canContinue(req, st)));
    const t: LegTiming = { tokens: 0, tbtSum: 0, tbtMax: 0, tbtN: 0 };
    const sentBefore = st.sent;
    const offsetBase = st.legs > 0 ? codePointLength(st.text) : 0; // a continuation's logprobs text_offset: past the text before it
    let startTimer: unknown;
    // told right after the engine request's write, in the same turn (leg-reports.ts legStarted)
    const tellStart = () => instance && (startTimer = legStarted(this.bus, this.clock, instance, lr.id, leg.credited, grant.grant!, leg.holder?.startedMs, this.legReportTimeoutMs, this.router, () => t.firstMs !== undefined));
    /** the first token's report waits for the end of its batch: a leg that ends in that batch says it in its end report. */
    let firstPending = false;
    let usage: EngineChunk['usage'];
    // the last text event's usage so far (continuous usage), unparsed until the leg ends or breaks (sse-event.ts)
    let usageJson: string | undefined;
    const counted = () => (usageJson !== undefined && (usage = continuousUsage(usageJson) ?? usage), (usageJson = undefined));
    let finishReason: string | undefined;
    let stopReason: string | number | null | undefined;
    let tail: TokenChunk | undefined;
    // a continuation: a stop string the text sent before it began may complete in it (stop-across.ts)
    let cross = st.legs > 0 ? crossStopOf(req, st.sent, st.text) : undefined;
    let stopped = false;
    // the leg's energy into the stream's; an estimate (no instance records that leg) goes out as its record (leg-record.ts)
    const charge = (reply: LegReply | undefined, engineJ: number | undefined, outcome: 'ok' | 'failed' | 'timed_out', fallback?: 'measured') => publishLegRecord(this.bus, estimatedLegRecord(
      req, lr, { instance: instance!, pool: grant.pool ?? leg.admission.pool, type: grant.type ?? leg.admission.type }, outcome, t, usage?.completionTokens ?? t.tokens, chargeLeg(st, reply, engineJ, estimate, this.counters, fallback), this.clock.now()));
    /** one read's events: the client's chunks of those that carry tokens (the engine's last one kept as `tail`). */
    const onBatch = (batch: readonly EngineChunk[]): TokenChunk[] => {
      const outs: TokenChunk[] = [];
      const now = this.clock.now();
      for (let ch of batch) {
        if (stopped) break;
        const x = cross && (ch.text !== '' || ch.finishReason) ? crossStopEvent(cross, ch) : undefined;
        if (x === 'hold') continue;
        if (x) [ch, stopped, cross] = [x.ch, x.stopped, x.ended ? undefined : cross];
        if (ch.usage) [usage, usageJson] = [ch.usage, undefined];
        else if (ch.usageJson !== undefined) usageJson = ch.usageJson;
        if (ch.finishReason) {
          finishReason = ch.finishReason;
          stopReason = ch.stopReason;
        }
        const extra = chunkExtras(ch);
        if (offsetBase > 0 && extra?.logprobs) extra.logprobs = shiftTextOffsets(extra.logprobs, offsetBase);
        if (ch.text === '' && !extra && !stopped) continue;
        const before = st.sent, k = sentEvent(st, ch, this.migrationText); // counted, its text kept; a tool call or reasoning: opaque
        const offs = ch.tokenOffsetsMs && ch.tokenOffsetsMs.length === k ? ch.tokenOffsetsMs : undefined;
        const first = t.firstMs === undefined;
        timeTokens(t, k, offs, now);
        if (first && instance) firstPending = true;
        const out: TokenChunk = extra ? { v: 1, id: req.id, seq: st.out++, text: ch.text, tokens: k, ...extra } : { v: 1, id: req.id, seq: st.out++, text: ch.text, tokens: k };
        if (before === 0 && first) out.ttftMs = Math.max(0, t.firstMs! - req.arrivalMs);
        if (offs && k > 1) out.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
        if (grant.instance) out.instance = grant.instance;
        if (grant.pool) out.pool = grant.pool;
        if (grant.type) out.type = grant.type;
        if (ch.finishReason) tail = out; // the engine's last text goes out as the done chunk itself, as vLLM's
        else outs.push(out);
      }
      return outs;
    };
    // the first token's report once its batch went to the reader (none when that batch ended the leg: its end says it)
    const tellFirst = () => (firstPending && !finishReason && instance && legReport(this.bus, instance, { v: 1, id: lr.id, phase: 'first_token', firstTokenMs: t.firstMs! }), (firstPending = false));
    const target = { host: url.host, port: url.port, pool: this.pool, apiKey: grant.grant!.apiKey, defaultTimeoutMs: 600_000 };
    const broke = (cause: unknown) => new EngineStreamError(`engine stream broke: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    try {
      if (sink) {
        // pushed: each read's chunks to the reader from the socket's read (no await); a first leg's may go native (data-plane.ts)
        const call = streamCompletionPush(target, engineReq, ac.signal, broke, (batch) => {
          const outs = onBatch(batch);
          try {
            if (outs.length) sink(outs);
          } catch (e) {
            st.readerFailed = true;
            throw e;
          } finally {
            tellFirst(); // the client's write first: the report is held anyway (leg-reports.ts)
          }
          if (stopped) throw STOPPED; // the engine call ends here (its connection closed: the engine aborts the request)
        }, st.legs === 0 ? nativeOf(sink, (e) => (accountSpan(st, t, e, this.migrationText), e.usageJson !== undefined && (usageJson = e.usageJson))) : undefined, sink.flow);
        // the engine request is written (streamCompletionPush writes it before its first await): now the leg's start
        tellStart();
        await call.catch((e: unknown) => {
          if (e !== STOPPED) throw e;
        });
      } else {
        tellStart();
        for await (const batch of streamCompletionBatches(target, engineReq, ac.signal, broke)) {
          const outs = onBatch(batch);
          tellFirst();
          if (outs.length) yield outs;
          if (stopped) break;
        }
      }
      leg.onControl = () => {};
      counted();
      const flags = { recycled: keptSeat(this.router, instance, leg.credited, leg.holder?.startedMs) };
      // an engine's own energy figure (the emulator's modelled one) is what the instance would answer: told without a reply, the last chunk a trip sooner
      const reply = !instance ? undefined : usage?.energyJoules !== undefined
        ? endReport(this.bus, 0, instance, lr.id, 'ok', t, usage, flags) && { v: 1 as const, ok: true, energyJ: usage.energyJoules, energySource: 'modelled' as const }
        : await endReport(this.bus, this.legReportTimeoutMs, instance, lr.id, 'ok', t, usage, flags);
      charge(reply, usage?.energyJoules, 'ok', 'measured');
      this.router?.learn?.(lr.id, usage?.completionTokens ?? t.tokens); // the leg's tokens, as the instance records them
      // the engine's count of the leg's tokens where it has one (a tool parser's delta may hold several, or wait for more)
      if (usage?.completionTokens !== undefined) st.sent = Math.max(st.sent, sentBefore + usage.completionTokens);
      st.promptTokens ??= usage?.promptTokens ?? req.inputTokens;
      const fr = finishReason === 'length' || finishReason === 'tool_calls' ? finishReason : 'stop';
      if (instance) st.ended = true; // the instance has the end report: no Cancel when the reader stops at this chunk
      // the engine's last text chunk (this leg's own object, not sent yet) ends the stream itself, completed in place
      const last: TokenChunk = tail ?? placedChunk({ v: 1, id: req.id, seq: st.out++, text: '', tokens: 0 }, grant);
      Object.assign(last, { done: true, finishReason: fr, stopReason: stopReason ?? null, usage: usageOf(st) });
      yield [last];
      return 'done';
    } catch (err) {
      leg.onControl = () => {};
      if (st.readerFailed) throw err;
      if (signal.aborted) throw signal.reason ?? err;
      // text the client has been counted for goes out before the error or the next leg
      if (tail) yield [tail];
      const ended = ac.signal.reason instanceof LegEnded ? ac.signal.reason.error : undefined;
      counted();
      // the engine's count of the tokens it made (continuous usage: several in an event, or some whose text it held back)
      if (usage?.completionTokens !== undefined) st.sent = Math.max(st.sent, sentBefore + usage.completionTokens);
      // a retryable end at the request's give-up time is its timeout (legFailure): no migration, outcome 'timed_out'
      const { w: failure, outcome } = legFailure(err, ended, req, this.clock.now());
      let w = failure;
      // the instance learns how its leg ended (it ended it itself when it sent the error)
      if (!ended && instance) charge(await endReport(this.bus, this.legReportTimeoutMs, instance, lr.id, outcome, t, usage), undefined, outcome);
      st.promptTokens ??= req.inputTokens;
      if (w.retryable && canMigrate(req, st, this.migrationLimit, this.clock.now())) return (ended && this.cancel(lr.id, `ended by the control plane, continued on a new leg (${ended.message})`, leg.cancelSent), 'migrate');
      if (w.retryable && st.opaque) w = { ...w, message: `${w.message} (not continued on another instance: it had sent a tool call or reasoning)` };
      if (ended || instance) st.ended = true; // the instance ended the leg, or has its end report
      yield [{ v: 1, id: req.id, seq: st.out++, text: '', tokens: 0, done: true, finishReason: w.code === 'cancelled' ? 'cancelled' : 'error', error: w }];
      return 'done';
    } finally {
      if (startTimer !== undefined) this.clock.clearTimeout(startTimer);
      leg.onAbort = undefined;
    }
  }

  /** The continuation's prompt counted by an engine's tokenizer: one attempt within tokenizeTimeoutMs and admitAttemptMs (continuation.ts countedWithin). */
  private counted = (req: InferenceRequest, signal: AbortLike): Promise<InferenceRequest> => countedWithin((r, timeoutMs) => this.local ? this.tokenize(r)
    : this.bus.request(subjects.tokenize(), TokenizeRequest, r, TokenizeReply, { timeoutMs, signal }), req, Math.min(this.tokenizeTimeoutMs, this.admitAttemptMs), signal, this.clock);

  /** The next leg of a request already streaming (reopen.ts); the gateway's own routing tries another instance than the previous leg's first (intake decides freely). */
  private reopen(req: InferenceRequest, next: InferenceRequest, signal: AbortLike, previous?: string): Promise<Leg> {
    return reopenLeg((l) => this.openLeg(l, signal, previous !== undefined ? { exclude: previous } : {}), this.clock, this.admitAttemptMs, req, next, signal);
  }
}
