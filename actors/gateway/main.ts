/**
 * The gateway actor: OpenAI-compatible HTTP (GatewayServer) in front of the cluster over NATS
 * (NatsBackend), aggregating the cluster's telemetry (instances and their request counts, nodes, decision events) into
 * Prometheus metrics and the dashboard's live stream. Stateless: run any number of replicas.
 * `dynamollm actor gateway --id gw-0 --config deploy/local.yaml [--set port=8001]`.
 */
import { loadDataPlane, type NativeDataPlane } from './data-plane.ts';
import type { NatsSettings } from '../../src/runtime/nats-settings.ts';
import { Actor } from '../../src/runtime/actor.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import type { LoadSummary } from '../../src/runtime/heartbeat.ts';
import { subjects } from '../../protocols/subjects.ts';
import { ClusterStatus, DecisionEvent, InstanceTelemetry, NodeTelemetry, StatusRequest } from '../../protocols/messages.ts';
import { DispatchView } from '../../protocols/dispatch-view.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { profilePathOf, type ClusterConfig } from '../common/config.ts';
import { promptSloOf } from '../../src/policy/classify.ts';
import { RateLimitedLog } from '../../src/runtime/logger.ts';
import { applyOverrides, gatewayDrainGraceMs, splitConfig, unauthenticatedWarning, type GatewaySettings } from './config.ts';
import { GatewayServer } from './server.ts';
import { gatewayShutdownLimitMs } from './deadlines.ts';
import { JournalWriter, jetStreamAppend, readJournal, type JournalAppend } from './resume.ts';
import { NatsBackend, type AdmissionCounters } from './nats-backend.ts';
import { reportAs, type MigrationText } from './legs.ts';
import { GatewayRouter } from './router.ts';
import { ElectionWatch } from './elections.ts';
import { localDetokenize, localTokenizer } from './tokens.ts';
import { maxLogprobsOf } from '../common/engine-limits.ts';
import { getModelSpec } from '../../src/model/catalog.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { Counter, Gauge } from 'prom-client';
import { createServer as createNetServer } from 'node:net';
import { serveWorkerMetrics, workerIndex, workerMetricsText } from '../../src/runtime/workers.ts';
import { notifyReady } from '../../src/runtime/ready-notify.ts';
import { sinceProcessStart } from '../../src/runtime/startup.ts';
import { DynError } from '../../protocols/errors.ts';
import { ConnectingBackend } from './connecting-backend.ts';
import { firstTokenTrace } from '../../src/runtime/first-token-trace.ts';
import { shortLivedHeap } from '../../src/runtime/heap-tuning.ts';
import { busPingMs } from '../../src/policy/bus-keepalive.ts';

/** a resume reads its stream's journal within this, ms (past it the client gets a retryable 503). */
const RESUME_READ_MS = 5000;

/** period of the gateway's readiness probe of the cluster, ms. */
const READY_PROBE_MS = 2000;
/** how often a standby tries its replica's port, ms. */
const PORT_WAIT_MS = 250;

/** Whether `port` can be bound now: a listener bound and closed again at once (EADDRINUSE: another process serves it). */
export function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

export interface GatewayActorOptions {
  id: string;
  cluster: ClusterConfig;
  settings: GatewaySettings;
  /** NATS server(s) and credentials: `nats` (src/runtime/nats-settings.ts), or servers/user/pass. */
  nats?: NatsSettings;
  servers?: string | string[];
  user?: string;
  pass?: string;
  log: ActorFactoryOptions['log'];
  /** time and timers of the gateway and everything it runs (src/runtime/clock.ts). Default the system clock. */
  clock?: Clock;
}

export class GatewayActor extends Actor {
  private server?: GatewayServer;
  readonly metrics = new TelemetryMetrics();
  readonly live: LiveState;
  private sweepTimer?: unknown;
  private readyTimer?: unknown;
  /** the last cluster status probe: why the cluster cannot serve (null: it can), and when it was taken. */
  private servable: { reason: string | null; atMs: number } = { reason: 'cluster not asked yet', atMs: 0 };
  private readonly profile: Profile | undefined;
  private router?: GatewayRouter;
  private elections?: ElectionWatch;
  /** aborted by drain/stop: a standby waiting for its port gives up the wait. */
  private readonly standbyWait = new AbortController();
  /** what the server asks of the cluster, held from the port's bind until the first NATS connection. */
  private gate?: ConnectingBackend;
  /** the bind of the port (a standby's once its peer let it go): true once bound, false when stopped first. */
  private binding?: Promise<boolean>;
  /** the first NATS connection is up (onStart ran). */
  private connected = false;
  /** the port is bound (listening() ran). */
  private bound = false;
  /** a standby found its port served by a peer and waits for it. */
  private portTaken = false;
  /** the resume journal's appends on this process's connection, made at the first append. */
  private append?: JournalAppend;

  constructor(private readonly g: GatewayActorOptions) {
    super({ kind: 'gateway', id: g.id, nats: g.nats, servers: g.servers, user: g.user, pass: g.pass, log: g.log, drainGraceMs: gatewayDrainGraceMs(g.settings), clock: g.clock, jetstreamReplicas: g.cluster.nats.jetstreamReplicas, natsPingMs: busPingMs(g.cluster.liveness.deadAfterMs) });
    // a request's objects born young, not pretenured (src/runtime/heap-tuning.ts): short scavenges on the first token's path
    shortLivedHeap();
    let profile;
    try {
      profile = loadProfile(profilePathOf(g.cluster));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'no profile: the dashboard shows no SinglePool baseline');
    }
    this.profile = profile;
    this.live = new LiveState({
      profile,
      clusterGpus: g.cluster.servers.reduce((s, x) => s + x.gpus, 0),
      timeScale: g.cluster.engine.kind === 'emulator' ? g.cluster.engine.timeScale : 1,
    });
  }

  /** The bound HTTP port (after start). */
  get port(): number {
    return this.server!.port;
  }

  /**
   * Before NATS is dialled: the HTTP server, its API keys and options as configured, bound to its port at once (a
   * standby's once its peer has let it go, meanwhile dialling NATS), its calls to the cluster held by the gate until
   * the first connection (connecting-backend.ts): a start during a NATS outage holds its clients' requests instead
   * of refusing their connections. Not ready meanwhile (Actor.health: starting), and not ready to the supervisor
   * either (notifyReady once running).
   */
  protected override async beforeConnect(): Promise<void> {
    const s = this.g.settings;
    const gate = new ConnectingBackend({ clock: this.clock, holdMs: s.holdLimitMs, capacity: s.maxInflight });
    this.gate = gate;
    heldForConnectMetric(this.metrics, gate);
    const worker = workerIndex() !== undefined;
    if (worker) serveWorkerMetrics(this.metrics.registry);
    const journalLog = new RateLimitedLog(this.log);
    const journalTimeout = (wait: 'head' | 'write', boundMs: number, id: string) => {
      this.metrics.gatewayJournalTimeouts.inc({ wait });
      journalLog.warn(`journal-${wait}`, { requestId: id, boundMs: Math.round(boundMs) }, wait === 'head'
        ? `the resume journal did not hold a stream's head within ${Math.round(boundMs)} ms: served without resumption (x-dynamollm-resumable: 0)`
        : `the resume journal did not hold a stream's entry within ${Math.round(boundMs)} ms: the stream is no longer resumable (event ids reset)`);
    };
    // a stream's writer is made once its prompt was counted, which waited for the connection: an append before it
    // (none is made) is refused as a journal that did not answer
    const append: JournalAppend = (e, timeoutMs) => this.connected
      ? (this.append ??= jetStreamAppend(this.bus, this.clock))(e, timeoutMs)
      : Promise.reject(new DynError('unavailable', 'NATS is not connected yet', { retryable: true }));
    const dataPlane = await loadDataPlane(s.dataPlane, this.log);
    dataPlaneMetrics(this.metrics, dataPlane);
    // opt-in: each request's first token's path, as JSON lines to this file (src/runtime/first-token-trace.ts)
    const traceFile = process.env.DYN_TRACE_FIRST_TOKEN;
    if (traceFile) firstTokenTrace.start(traceFile);
    this.server = new GatewayServer({
      backend: gate,
      ...(dataPlane ? { dataPlane } : {}),
      clock: this.clock,
      port: s.port,
      host: s.host,
      apiKeys: s.apiKeys,
      cookieSecure: s.cookieSecure,
      trustedProxies: s.trustedProxies,
      cors: { allowedOrigins: s.allowedOrigins, allowedMethods: s.allowedMethods, allowedHeaders: s.allowedHeaders, allowCredentials: s.allowCredentials },
      bodyLimitBytes: s.bodyLimitBytes,
      metricsToken: s.metricsToken ?? process.env.DYNAMOLLM_METRICS_TOKEN,
      // the readiness probe's token, given by `up` to its own gateways only (openai.ts probeOf)
      probeToken: process.env.DYNAMOLLM_PROBE_TOKEN || undefined,
      headersTimeoutMs: s.headersTimeoutMs,
      bodyTimeoutMs: s.bodyTimeoutMs,
      clientStallMs: s.clientStallMs,
      maxInflight: s.maxInflight,
      requestTimeoutMs: s.requestTimeoutS * 1000,
      holdLimitMs: s.holdLimitMs,
      models: s.models ?? [this.g.cluster.model],
      metrics: this.metrics,
      // a worker of a replica run as several processes answers /metrics for all of them (src/runtime/workers.ts)
      ...(worker ? { metricsText: () => workerMetricsText() } : {}),
      live: s.dashboard ? this.live : undefined,
      log: this.log,
      replicaId: this.id,
      health: () => ({ ...this.health(), kind: 'gateway', id: this.id }),
      // resumable streams (opt-in): their journal in JetStream, capped at the migration's text cap, read within
      // RESUME_READ_MS; its waits bounded by a share of the request's SLO, each bound passed counted and logged
      journal: {
        writer: (id, gen, slo) => new JournalWriter(append, id, gen, s.migrationMaxBytes, s.journal, this.clock, slo, journalTimeout),
        read: (id) => gate.whenConnected(() => readJournal(this.bus, id, RESUME_READ_MS, this.clock)),
      },
      sloOf: (r) => promptSloOf(r.inputTokens, this.g.cluster),
      warnings: this.g.cluster.nats.insecure ? ['NATS does not enforce authorization (--insecure-nats): anyone who reaches it can read every prompt, change GPU clocks and stop instances'] : undefined,
    });
    // a standby binds once the replica's serving process has let the port go (its death), and dials NATS meanwhile;
    // any other gateway binds now, and a port in use fails its start
    if (s.standby && s.port !== 0) {
      const binding = this.takePort(s.port, s.host);
      binding.catch(() => {}); // its failure fails the start in onStart
      this.binding = binding;
      return;
    }
    this.binding = this.server.listen().then((port) => this.listening(port));
    await this.binding;
  }

  protected async onStart(): Promise<void> {
    const s = this.g.settings;
    this.connected = true;
    // started, connected and waiting for its peer's port: the standby's job while its peer serves (its supervisor
    // counts it ready); nothing before the port is bound, so a waiting standby costs an idle connection and no telemetry
    if (this.portTaken) notifyReady();
    if (!(await this.binding)) return; // stopped while waiting: nothing was started
    // the telemetry's arrival times on the gateway's clock (their staleness, the live stream's series); the cluster's
    // request series come from the instances' request counts in it (InstanceTelemetry.requests): no RequestRecord is
    // read here, so a gateway process's work per request is its own requests' (docs/DATAPATH.md "Gateway workers")
    this.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => {
      const now = this.clock.now();
      this.metrics.onInstance(t, now);
      this.live.onInstance(t, now);
    }, { capacity: 4096, expectSubject: (t) => subjects.telInstance(t.id) });
    this.subscribe(subjects.telNodeAll(), NodeTelemetry, (t) => {
      const now = this.clock.now();
      this.metrics.onNode(t, now);
      this.live.onNode(t, now);
    }, { capacity: 1024, expectSubject: (t) => subjects.telNode(t.node) });
    // the gateway's own routing (docs/DATAPATH.md "Request plane"): the cluster's routing table and the instances' status
    const router = s.requestPlane === 'direct' ? new GatewayRouter(this.bus, this.g.cluster, this.profile, this.id, this.clock) : undefined;
    router?.start();
    this.router = router;
    // its routing view, on the observer's request (dynamollm chaos times a dead instance's leave by it): computed only when asked
    this.serve(subjects.dispatchView('gateway', this.id), StatusRequest, DispatchView, () => Promise.resolve({
      v: 1 as const, kind: 'gateway' as const, id: this.id, atMs: this.clock.now(), ...(router ? router.view() : { routing: false, pools: [] }),
    }), { capacity: 16, concurrency: 1 });
    this.subscribe(subjects.eventAll(), DecisionEvent, (e) => {
      this.metrics.onEvent(e);
      this.live.onEvent(e);
    }, { capacity: 1024, expectSubject: (e) => subjects.event(e.kind, e.actor) });
    this.sweepTimer = this.clock.setInterval(() => this.metrics.sweep(this.clock.now()), 5000);
    this.readyTimer = this.clock.setInterval(() => void this.probeCluster(), READY_PROBE_MS);
    void this.probeCluster();
    // the leader elections a request's intake may wait on (the managers' heartbeats)
    const elections = new ElectionWatch(this.bus, this.g.cluster.liveness.deadAfterMs, s.electionHoldMs, this.clock);
    elections.start();
    this.elections = elections;
    // the instances that grant this process legs free their seats once its heartbeats lapse (legs.ts reportAs)
    reportAs(this.bus, { id: this.id, startedMs: this.startedMs });
    const backend = new NatsBackend(this.bus, {
      admitTimeoutMs: s.admitTimeoutMs, admitAttemptMs: s.admitAttemptMs, chunkTimeoutMs: s.chunkTimeoutMs,
      direct: s.dataPath === 'direct', migrationLimit: s.migrationLimit, migrationMaxBytes: s.migrationMaxBytes, migrationMaxTotalBytes: s.migrationMaxTotalBytes, elections, clock: this.clock,
      // a prompt waits for a tokenizer while an instance starts, as long as a pool holds a request for one
      tokenizeHoldMs: Math.min(this.g.cluster.engine.healthDeadlineMs, s.requestTimeoutS * 1000, s.holdLimitMs), holdLimitMs: s.holdLimitMs,
      // emulated engines tokenize with the emulator's tokenizer, which the gateway has too (loaded on first use): a
      // prompt no instance counts at once is counted here, with the engines' own answer (context length and logprobs bound included)
      ...(emulatedTokenizer(this.g.cluster) ? { localTokenizer: { tokenize: localTokenizer(getModelSpec(this.g.cluster.model).maxContext, maxLogprobsOf(this.g.cluster.engine)), detokenize: localDetokenize } } : {}),
      ...(router ? { router, directAdmitMs: this.g.cluster.timeouts.dispatchMs } : {}),
      engineIdle: { settings: this.g.cluster.timeouts.engineIdle, fallback: { ttftMs: this.g.cluster.slo.ttftMs.L, tbtMs: this.g.cluster.slo.tbtMs } },
    });
    failoverMetrics(this.metrics, backend.counters);
    migrationTextMetrics(this.metrics, backend.migrationText);
    const held = this.gate!.waiting;
    this.gate!.attach(backend);
    this.log.info({ held }, held ? `NATS connected: serving the ${held} requests held since the start` : 'NATS connected: serving');
  }

  /** The port bound: logged (scripts/gateway-downtime.ts reads this line: the port answers from here on). */
  private listening(port: number): true {
    const s = this.g.settings;
    this.bound = true;
    this.log.info({ port, auth: s.apiKeys.length > 0, natsConnected: this.connected, sinceProcessStartMs: Math.round(sinceProcessStart()) }, `gateway listening on http://${s.host === '0.0.0.0' ? '127.0.0.1' : s.host}:${port} (dashboard at /)`);
    const open = unauthenticatedWarning(s, port);
    if (open) this.log.warn({ host: s.host, port, allowUnauthenticated: true }, open);
    return true;
  }

  /** A standby's bind: once the port is free, bound (another standby of the replica that took it first is waited for again); false when told to stop first. */
  private async takePort(port: number, host: string): Promise<boolean> {
    for (;;) {
      if (!(await this.waitForPort(port, host))) return false;
      try {
        return this.listening(await this.server!.listen());
      } catch (err) {
        // another standby of the replica took the port in the meantime: wait for it again
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  }

  /**
   * Until `port` can be bound (tried every PORT_WAIT_MS: the replica's serving process holds it while alive): true,
   * or false once the actor is told to drain or stop meanwhile.
   */
  private async waitForPort(port: number, host: string): Promise<boolean> {
    let said = false;
    const signal = this.standbyWait.signal;
    while (!signal.aborted && !(await portFree(port, host))) {
      if (!said) {
        this.log.info({ port }, `standby: port ${port} is served by another process of this replica; taking it over when it is free`);
        // started, connected and waiting is this process's job while its peer serves: its supervisor counts it ready
        // (onStart tells it when the connection comes later)
        if (this.connected) notifyReady();
      }
      said = true;
      this.portTaken = true;
      await this.clock.sleep(PORT_WAIT_MS, signal).catch(() => {});
    }
    this.portTaken = false;
    if (signal.aborted) return false;
    if (said) this.log.info({ port }, `standby: port ${port} free, taking it over`);
    return true;
  }

  /** A start that fails (NATS unreachable past its first-connect deadline, refused credentials) answers the requests it holds with a retryable 503 before its port closes. */
  override start(): Promise<void> {
    return super.start().catch(async (err: unknown) => {
      await this.release(new DynError('unavailable', 'the gateway could not reach the cluster: retry', { retryable: true, retryAfterS: 1 }));
      throw err;
    });
  }

  override drain(): Promise<void> {
    this.standbyWait.abort();
    // a standby still waiting for its port holds no request: its start (dialling NATS) is not waited for
    if (this.state === 'starting' && !this.bound) return this.stop();
    return super.drain();
  }

  override stop(): Promise<void> {
    this.standbyWait.abort();
    return super.stop();
  }

  /** Refuses the requests held for a first connection that did not come with `err`, and closes the port once they are answered. */
  private async release(err: DynError): Promise<void> {
    // the refusals are written on the next turns of the event loop: closeAllConnections would cut them
    if (this.gate?.fail(err)) await this.clock.sleep(50);
    await this.server?.close(0);
  }

  /**
   * Leave the load balancer while serving for gateway.drainDelayMs (/readyz 503, answers close their connections), then
   * close the listener and let the requests in flight finish within gateway.drainStreamsMs, then drop the telemetry
   * subscriptions. A standby that never bound its port has nothing to leave.
   */
  protected override async onDrain(signal: AbortSignal): Promise<void> {
    const s = this.g.settings;
    if (this.bound && s.drainDelayMs > 0) {
      this.server?.leave();
      this.log.info({ drainDelayMs: s.drainDelayMs, inflight: this.server?.inflightCount ?? 0 }, 'draining: not ready, serving on until the load balancer has let go of this replica');
      await this.clock.sleep(s.drainDelayMs, signal).catch(() => {});
    }
    this.log.info({ drainStreamsMs: s.drainStreamsMs, inflight: this.server?.inflightCount ?? 0 }, 'draining: closing the listener, waiting for the requests in flight');
    await this.server?.close(s.drainStreamsMs);
    firstTokenTrace.stop();
    this.router?.stop();
    this.elections?.stop();
    await super.onDrain(signal);
  }

  /**
   * Ready only when a request can be served: NATS connected (Actor.health), the cluster leader answers its
   * status, and at least one instance is ready, as of a probe younger than 3 probe periods.
   */
  protected override notReadyReason(): string | null {
    if (this.clock.now() - this.servable.atMs > 3 * READY_PROBE_MS) return 'no recent cluster status';
    return this.servable.reason;
  }

  private async probeCluster(): Promise<void> {
    let reason: string | null;
    try {
      const st = await this.bus.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: READY_PROBE_MS / 2 });
      reason = st.pools.some((p) => p.instances.some((i) => i.state === 'ready' || i.state === 'running')) ? null : 'no ready instance in the cluster';
    } catch (err) {
      reason = `cluster status unanswered: ${(err as Error).message}`;
    }
    this.servable = { reason, atMs: this.clock.now() };
  }

  protected override async onStop(): Promise<void> {
    if (this.sweepTimer !== undefined) this.clock.clearInterval(this.sweepTimer);
    if (this.readyTimer !== undefined) this.clock.clearInterval(this.readyTimer);
    this.router?.stop();
    this.elections?.stop();
    await this.release(new DynError('unavailable', 'gateway shutting down', { retryable: true, retryAfterS: 1 }));
  }

  protected override loadSummary(): LoadSummary {
    return { queued: 0, running: this.server?.inflightCount ?? 0 };
  }
}

/**
 * Whether the cluster's engines are the emulator the gateway ships (not a command of the operator's): its tokenizer
 * (src/engine/emulator/tokenizer.ts) and its context length (the model catalog's) are then the engines' own.
 */
export function emulatedTokenizer(c: ClusterConfig): boolean {
  return c.engine.kind === 'emulator' && c.engine.command === undefined;
}

/** The backend's failover counters as Prometheus counters of this replica (read at scrape time). */
function failoverMetrics(m: TelemetryMetrics, c: AdmissionCounters): void {
  const def: [string, string, keyof AdmissionCounters][] = [
    ['dynamollm_gateway_admission_retries_total', 'Intake attempts this gateway replica sent again (same request id) after one hit a dead manager or a dropped connection.', 'retries'],
    ['dynamollm_gateway_held_for_reconnect_total', 'Requests this gateway replica held until NATS reconnected before their first intake attempt.', 'heldForReconnect'],
    ['dynamollm_gateway_resumed_total', 'Resumable streams this gateway replica took over from another (a reconnect with Last-Event-ID) and continued as a new leg.', 'resumed'],
    ['dynamollm_gateway_migrations_total', 'Streams this gateway replica continued on another instance after theirs died mid-generation.', 'migrated'],
    ['dynamollm_gateway_estimated_leg_energy_total', 'Request legs whose instance died before answering their end report: their energy (in the client\'s usage.energy_estimated_joules) is this gateway replica\'s estimate from that instance\'s telemetry.', 'energyEstimated'],
    ['dynamollm_gateway_routed_total', 'Request legs this gateway replica routed itself and an instance admitted directly (one round trip).', 'routed'],
    ['dynamollm_gateway_credited_total', 'Request legs this gateway replica routed and started on an admission credit its instance lent it (no round trip).', 'credited'],
    ['dynamollm_gateway_relay_gaps_total', 'Relayed request legs (the NATS data path) this gateway replica ended at a missing chunk (a seq skipped): continued on another leg from the last chunk it had, or ended with a retryable error.', 'relayGaps'],
    ['dynamollm_gateway_relay_waits_total', 'Times a relayed request leg (the NATS data path) of this gateway replica used its whole credit window because its client took its tokens slower than they came: its instance stopped reading the engine for it until the next grant.', 'relayWaits'],
    ['dynamollm_gateway_relay_overflows_total', 'Relayed request legs this gateway replica ended (retryable mailbox_full) and cancelled because they held more than the relay bound for their client: their instance did not wait for its credit.', 'relayOverflows'],
    ['dynamollm_gateway_other_copies_total', 'Chunks this gateway replica ignored on a leg\'s stream subject because an instance other than the one the leg belongs to (its first grant or token) sent them: a second admission of the same leg id.', 'otherCopies'],
    ['dynamollm_gateway_holder_died_total', 'Request legs this gateway replica routed whose instance process died before their stream ended (admitted again elsewhere, or ended at once).', 'holderDied'],
    ['dynamollm_gateway_pool_holds_total', 'Request legs a pool said it held for a ready instance (capacity coming): this gateway replica waited for their admission past its intake budget when the hold needed it.', 'poolHolds'],
    ['dynamollm_gateway_election_holds_total', 'Request legs whose cluster intake this gateway replica waited for past its intake budget because a leader election (a pool\'s, the cluster planner\'s) was under way.', 'electionHolds'],
    ['dynamollm_gateway_local_tokenize_total', 'Prompts (and detokenize calls) this gateway replica answered with its own copy of the emulated engines\' tokenizer because no instance\'s tokenizer answered the first attempt (none ready, none in time, NATS reconnecting).', 'localTokenized'],
    ['dynamollm_gateway_intake_total', 'Request legs this gateway replica sent to the cluster intake (no routing table, no ready instance in its view, an instance unavailable, an admission that timed out).', 'viaIntake'],
  ];
  for (const [name, help, key] of def) {
    new Counter({
      name, help, registers: [m.registry],
      collect() {
        this.reset();
        this.inc(c[key]);
      },
    });
  }  new Counter({
    name: 'dynamollm_gateway_estimated_leg_energy_joules_total', labelNames: ['source'], registers: [m.registry],
    help: 'Energy this gateway replica estimated for request legs whose instance died before answering their end report (the records it published for them, RequestRecord.energyEstimatedJ), joules, by source; the cluster\'s request energy is dynamollm_request_energy_joules_total (the instances\') plus this, summed over the replicas.',
    collect() {
      this.reset();
      this.inc({ source: 'measured' }, c.estimatedMeasuredJ);
      this.inc({ source: 'modelled' }, c.estimatedModelledJ);
    },
  });
}

/** The calls this replica held at its start until its first NATS connection (connecting-backend.ts), read at scrape time. */
function heldForConnectMetric(m: TelemetryMetrics, gate: ConnectingBackend): void {
  new Counter({
    name: 'dynamollm_gateway_held_for_first_connect_total', help: 'Calls to the cluster (a prompt\'s count, an admission, a resume) this gateway replica held after binding its port until its first NATS connection (a start during a NATS outage).', registers: [m.registry],
    collect() {
      this.reset();
      this.inc(gate.held);
    },
  });
}

/** Which plane moves this replica's plain text events (gateway.dataPlane as resolved), and the native plane's spans and events, read at scrape time. */
function dataPlaneMetrics(m: TelemetryMetrics, plane: NativeDataPlane | undefined): void {
  new Gauge({
    name: 'dynamollm_gateway_data_plane', help: 'The plane that moves this gateway process\'s eligible direct streams\' plain text events (gateway.dataPlane as resolved at its start; auto: native where dist/native/relay.so loaded): 1 for the plane in use, labelled plane="native" or "js"; a replica of several processes (gateway.workers) counts its processes on each.', labelNames: ['plane'], registers: [m.registry],
    collect() {
      this.set({ plane: plane ? 'native' : 'js' }, 1);
    },
  });
  const def: [string, string, 'spans' | 'carried'][] = [
    ['dynamollm_gateway_native_spans_total', 'Spans of streams this gateway process handed to the native data plane (docs/DATAPATH.md "Native data plane"): its thread moved their plain text events from the engine\'s connection to the client\'s; 0 on the JavaScript path.', 'spans'],
    ['dynamollm_gateway_native_events_total', 'Plain text events (tokens) the native data plane of this gateway process moved in its spans, counted as each span ends.', 'carried'],
  ];
  for (const [name, help, key] of def) {
    new Counter({
      name, help, registers: [m.registry],
      collect() {
        this.reset();
        this.inc(plane?.[key] ?? 0);
      },
    });
  }
}

/** The text this replica's streams keep for migration (legs.ts MigrationText), read at scrape time. */
function migrationTextMetrics(m: TelemetryMetrics, t: MigrationText): void {
  new Gauge({
    name: 'dynamollm_gateway_migration_text_bytes', help: 'Generated text this gateway replica keeps for request migration, all its streams together, UTF-8 bytes: at most gateway.migrationMaxTotalBytes per process, so a replica of several processes (gateway.workers) sums their caps as it sums their text.', registers: [m.registry],
    collect() {
      this.set(t.totalBytes);
    },
  });
  new Counter({
    name: 'dynamollm_gateway_migration_text_dropped_total', help: 'Streams that stopped keeping their text for migration because a cap (gateway.migrationMaxBytes per stream, gateway.migrationMaxTotalBytes over the streams of one process, each of gateway.workers its own) would have passed: they streamed on, and could no longer migrate.', registers: [m.registry],
    collect() {
      this.reset();
      this.inc(t.dropped);
    },
  });
}

/** Worker processes behind the gateway's port (`gateway.workers`, src/runtime/workers.ts). */
export function workerCount(opts: ActorFactoryOptions): number {
  const { gateway } = splitConfig(opts.config);
  return applyOverrides(gateway, opts.extra).workers;
}

/**
 * How long the primary of `gateway.workers` > 1 gives a worker between its SIGTERM and its SIGKILL, ms: the worker's
 * own shutdown bound (its drain delay, its wait for the streams, its stop), so a worker is killed only past it.
 */
export function workerStopGraceMs(opts: ActorFactoryOptions): number {
  const { gateway } = splitConfig(opts.config);
  return gatewayShutdownLimitMs(applyOverrides(gateway, opts.extra));
}

/** Entry for `dynamollm actor gateway` (src/cli/actor-registry.ts). */
export function createActor(opts: ActorFactoryOptions): GatewayActor {
  const { cluster, gateway } = splitConfig(opts.config);
  const settings = applyOverrides(gateway, opts.extra);
  return new GatewayActor({
    id: opts.id,
    cluster,
    settings,
    nats: opts.nats,
    log: opts.log,
  });
}
