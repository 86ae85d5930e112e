/**
 * The actor base every actor kind extends. Owns the process's NATS connection (Bus), the heartbeat, the
 * lifecycle (LifecycleState) and the two shutdown deadlines:
 * - drain: state 'draining' (announced by a heartbeat), `onDrain(signal)` finishes in-flight work within
 *   `drainGraceMs`; past it the signal is aborted and in-flight work gets `drainForceMs` more; then stop.
 * - stop: stop heartbeats, `onStop()` within `stopHookMs`, a last heartbeat saying 'stopped', close the connection
 *   (bounded by the Bus's drain deadline).
 * A process told to stop by a signal, or whose supervisor is gone, exits once the sum of those deadlines has
 * passed even if a step never settles (installSignalHandlers): a process that lost its node must not linger.
 * start/stop/drain are idempotent; calls in a state that forbids them throw LifecycleError.
 */
import type { Logger } from 'pino';
import { inboxPrefix, serviceName, type ActorKind, type Codec } from '../../protocols/index.ts';
import { BUS_DRAIN_TIMEOUT_MS, Bus, type ServeContext, type ServeHandle, type ServeOpts, type SubscribeHandle, type SubscribeOpts } from './bus.ts';
import { systemClock, type Clock } from './clock.ts';
import { LifecycleError } from './errors.ts';
import { Heartbeater, type LoadSummary } from './heartbeat.ts';
import type { LifecycleState } from './lifecycle.ts';
import { actorLogger, createLogger } from './logger.ts';
import { DYNAMOLLM_VERSION } from './version.ts';
import { natsSettings, type NatsSettings } from './nats-settings.ts';
import { ADOPT_FILE_ENV, ADOPT_WAIT_MS, readRecord, supervised as watched } from './adoption.ts';
import { sinceProcessStart, startupPhases } from './startup.ts';
import { notifyReady } from './ready-notify.ts';
import { ACTOR_FIRST_CONNECT_MS } from './nats-dial.ts';

export type { LifecycleState } from './lifecycle.ts';

/** How long stop() waits for a start in progress before it stops anyway (onStop then ends what the start began). */
export const STOP_START_WAIT_MS = 2000;
/** Default of ActorOptions.stopHookMs. */
export const STOP_HOOK_MS = 15_000;
/**
 * What a supervisor's grace before SIGKILL adds to an actor's shutdown bound (shutdownLimitMs), ms: the process's start
 * of exit and its signal's delivery.
 */
export const KILL_MARGIN_MS = 3000;

export interface ActorOptions {
  kind: ActorKind;
  id: string;
  /** NATS server URL (or use `servers`). Default env NATS_URL or nats://127.0.0.1:4222. */
  natsUrl?: string;
  servers?: string | string[];
  /** NATS user/password of this actor (nats.conf); or `nats`. */
  user?: string;
  pass?: string;
  /** full NATS settings (src/runtime/nats-settings.ts); when given, servers/natsUrl/user/pass are ignored. */
  nats?: NatsSettings;
  /** root logger; the actor logs through a child {actor: kind, id}. */
  log?: Logger;
  clock?: Clock;
  /** heartbeat period, ms. Default 1000. */
  heartbeatMs?: number;
  /** its NATS connection's ping period, ms (src/policy/bus-keepalive.ts busPingMs of liveness.deadAfterMs). Default that of a 3 s window. */
  natsPingMs?: number;
  /** replicas of the KV buckets and streams this actor creates (JetStream R1/R3/R5). Default 1. */
  jetstreamReplicas?: number;
  /** time in-flight work gets to finish on drain, ms. Default 10000. */
  drainGraceMs?: number;
  /** extra time after aborting in-flight work, ms. Default 5000. */
  drainForceMs?: number;
  /** time `onStop()` gets before the connection is closed anyway, ms. Default STOP_HOOK_MS. */
  stopHookMs?: number;
  /** how long the start keeps dialling NATS while no server takes the connection, ms. Default ACTOR_FIRST_CONNECT_MS. */
  firstConnectMs?: number;
}

const processExit = (code: number): void => process.exit(code);

/**
 * The longest an actor with these options takes from a SIGTERM to its exit by its deadlines (drain grace, force, a
 * start's wait, onStop, the Bus's drain), plus 5 s: its signal handler exits then whatever a step waits on. A
 * supervisor's grace before SIGKILL (Kubernetes' terminationGracePeriodSeconds, a primary's stopGraceMs) covers it.
 */
export function shutdownLimitMs(o: Pick<ActorOptions, 'drainGraceMs' | 'drainForceMs' | 'stopHookMs'>): number {
  return (o.drainGraceMs ?? 10_000) + (o.drainForceMs ?? 5000) + STOP_START_WAIT_MS + (o.stopHookMs ?? STOP_HOOK_MS) + BUS_DRAIN_TIMEOUT_MS + 5000;
}

export abstract class Actor {
  readonly kind: ActorKind;
  readonly id: string;
  protected log: Logger;
  protected clock: Clock;
  protected readonly opts: ActorOptions;
  #bus?: Bus;
  #state: LifecycleState | 'new' = 'new';
  #heartbeater?: Heartbeater;
  #starting?: Promise<void>;
  /** aborted by stop(): ends a start still dialling NATS. */
  readonly #startAbort = new AbortController();
  #draining?: Promise<void>;
  #stopping?: Promise<void>;
  #handles: (ServeHandle | SubscribeHandle)[] = [];
  readonly startedMs: number;

  constructor(opts: ActorOptions) {
    this.opts = opts;
    this.kind = opts.kind;
    this.id = opts.id;
    this.clock = opts.clock ?? systemClock;
    this.log = actorLogger(opts.log ?? createLogger(), opts.kind, opts.id);
    this.startedMs = this.clock.now();
  }

  /** 'starting' until start() completes ('starting' also before start() is called). */
  get state(): LifecycleState {
    return this.#state === 'new' ? 'starting' : this.#state;
  }

  /**
   * For liveness/readiness probes (src/runtime/health.ts). live: the actor has not failed (a NATS outage
   * does not make it dead: it reconnects by itself). ready: running, connected to NATS, and the kind's own
   * condition (notReadyReason()) holds.
   */
  health(): { live: boolean; ready: boolean; state: LifecycleState; nats: 'connected' | 'disconnected'; reason?: string } {
    const nats = this.#bus?.connected ? 'connected' : 'disconnected';
    const live = this.#state !== 'failed' && this.#state !== 'stopped';
    const reason =
      this.#state !== 'running' ? `state ${this.state}` : nats !== 'connected' ? 'NATS disconnected' : (this.notReadyReason() ?? undefined);
    return { live, ready: reason === undefined, state: this.state, nats, ...(reason ? { reason } : {}) };
  }

  /** A kind's own readiness condition: null when ready, else why not. Default: always ready. */
  protected notReadyReason(): string | null {
    return null;
  }

  protected get bus(): Bus {
    if (!this.#bus) throw new LifecycleError(`${this.kind}/${this.id}: not connected (state ${this.state})`, this.state);
    return this.#bus;
  }

  /** beforeConnect, connect, start heartbeats, run onStart. Idempotent; throws LifecycleError once draining/stopped/failed. */
  start(): Promise<void> {
    if (this.#starting) return this.#starting;
    if (this.#state !== 'new') return Promise.reject(new LifecycleError(`cannot start in state ${this.#state}`, this.#state));
    this.#state = 'starting';
    this.#starting = (async () => {
      try {
        const servers = this.opts.servers ?? this.opts.natsUrl;
        // what the kind must have before NATS answers (the gateway's bound port: a start while NATS is down holds its
        // clients' requests instead of refusing their connections)
        await this.beforeConnect();
        const settings =
          this.opts.nats ??
          natsSettings({ flags: { nats: Array.isArray(servers) ? servers.join(',') : servers, user: this.opts.user, password: this.opts.pass } });
        this.#bus = await Bus.connect({
          settings,
          name: `${this.kind}/${this.id}`,
          inboxPrefix: inboxPrefix(this.kind, this.id),
          log: this.log,
          firstConnectMs: this.opts.firstConnectMs ?? ACTOR_FIRST_CONNECT_MS,
          ...(this.opts.natsPingMs !== undefined ? { pingIntervalMs: this.opts.natsPingMs } : {}),
          signal: this.#startAbort.signal,
        });
        const connect = sinceProcessStart();
        this.#bus.jetstreamReplicas = this.opts.jetstreamReplicas ?? 1;
        // the cluster manager owns the KV buckets and streams (creates them); every other actor waits for them
        this.#bus.createsJetStream = this.kind === 'cluster';
        // the NATS Service API: `nats micro ls` lists this actor, with every subject it serves as an endpoint
        this.#bus.startService({
          name: serviceName(this.kind),
          id: this.id,
          version: DYNAMOLLM_VERSION,
          description: `dynamollm ${this.kind} actor`,
          metadata: { kind: this.kind, protocol: 'dyn.v1' },
        });
        this.#heartbeater = new Heartbeater({
          bus: this.#bus,
          kind: this.kind,
          id: this.id,
          periodMs: this.opts.heartbeatMs ?? 1000,
          load: () => this.loadSummary(),
          state: () => this.state,
          meta: () => this.heartbeatMeta(),
          clock: this.clock,
          startedMs: this.startedMs,
        });
        await this.onStart();
        if ((this.#state as string) !== 'starting') return; // drained/stopped during start
        this.#state = 'running';
        this.#heartbeater.start();
        // where this process's start went (src/runtime/startup.ts): each step's ms, and spawn to running
        const startup = startupPhases({ connect, running: sinceProcessStart() });
        this.log.info(startup ? { startup: startup.phases, startupMs: startup.totalMs, startupCpuMs: startup.cpuMs } : {}, 'actor running');
        // its supervisor counts a death from here on as the end of a stable run (src/policy/restart-backoff.ts)
        notifyReady();
      } catch (err) {
        // stopped while starting: what the start was waiting for was ended by the stop, not a failure
        if ((this.#state as string) === 'stopped' || this.#startAbort.signal.aborted) return;
        this.#state = 'failed';
        this.log.error({ err }, 'actor failed to start');
        this.#heartbeater?.stop();
        await this.#bus?.close().catch(() => {});
        throw err;
      }
    })();
    return this.#starting;
  }

  /** Finish in-flight work under the grace deadline, then the force deadline, then stop. Idempotent. */
  drain(): Promise<void> {
    if (this.#draining) return this.#draining;
    if (this.#stopping) return this.#stopping;
    if (this.#state === 'new') {
      this.#state = 'stopped';
      return Promise.resolve();
    }
    this.#draining = (async () => {
      const grace = this.opts.drainGraceMs ?? 10_000;
      const force = this.opts.drainForceMs ?? 5000;
      // a start that hangs (an engine that never gets healthy, a server that never answers) must not keep a
      // draining process, and the GPUs it holds, alive: wait for it within the grace, then stop anyway
      if (this.#state === 'starting') await this.#within(this.#starting?.catch(() => {}) ?? Promise.resolve(), grace);
      if (this.#state !== 'running') return this.stop();
      this.#state = 'draining';
      this.#heartbeater?.beat();
      this.log.info({ graceMs: grace, forceMs: force }, 'draining');
      const ac = new AbortController();
      const work = this.onDrain(ac.signal).catch((err: unknown) => this.log.warn({ err }, 'onDrain failed'));
      const inGrace = await this.#within(work, grace);
      if (!inGrace) {
        this.log.warn({ graceMs: grace }, 'drain grace deadline passed, aborting in-flight work');
        ac.abort(new LifecycleError('drain deadline passed', 'draining'));
        const inForce = await this.#within(work, force);
        if (!inForce) this.log.error({ forceMs: force }, 'drain force deadline passed, stopping anyway');
      }
      await this.stop();
    })();
    return this.#draining;
  }

  async #within(p: Promise<unknown>, ms: number): Promise<boolean> {
    let h: unknown;
    const timeout = new Promise<false>((r) => {
      h = this.clock.setTimeout(() => r(false), ms);
    });
    const r = await Promise.race([p.then(() => true as const), timeout]);
    this.clock.clearTimeout(h);
    return r;
  }

  /** Stop now: no more heartbeats, onStop, announce 'stopped', close the connection. Idempotent. */
  stop(): Promise<void> {
    if (this.#stopping) return this.#stopping;
    this.#stopping = (async () => {
      if (this.#state === 'new') {
        this.#state = 'stopped';
        return;
      }
      if (this.#state === 'starting') {
        this.#startAbort.abort(new LifecycleError('stopped while starting', 'starting'));
        const started = await this.#within(this.#starting?.catch(() => {}) ?? Promise.resolve(), STOP_START_WAIT_MS);
        if (!started) this.log.warn({ waitedMs: STOP_START_WAIT_MS }, 'stopping while the start has not finished');
      }
      const failed = this.#state === 'failed';
      this.#heartbeater?.stop();
      for (const h of this.#handles) h.unsubscribe();
      const hookMs = this.opts.stopHookMs ?? STOP_HOOK_MS;
      const hooked = await this.#within(this.onStop().catch((err: unknown) => this.log.warn({ err }, 'onStop failed')), hookMs);
      if (!hooked) this.log.error({ stopHookMs: hookMs }, 'onStop deadline passed, closing anyway');
      this.#state = failed ? 'failed' : 'stopped';
      this.#heartbeater?.beat();
      try {
        await this.#bus?.drain();
      } catch {
        await this.#bus?.close().catch(() => {});
      }
      this.log.info({ state: this.#state }, 'actor stopped');
    })();
    return this.#stopping;
  }

  /**
   * SIGTERM and SIGINT drain then exit(0); a second signal exits(1) at once.
   * Under a Supervisor (env DYNAMOLLM_SUPERVISED=1) a terminal's Ctrl-C reaches the whole process group;
   * the child then ignores SIGINT and waits for the supervisor's SIGTERM, so children stop in the
   * supervisor's order and actually drain. A supervised child whose parent is not the supervisor that started
   * it (DYNAMOLLM_SUPERVISOR_PID; re-parented, also before this ran) drains by itself, so a SIGKILLed
   * supervisor leaves no orphans serving stale state. An adoptable child (env DYNAMOLLM_ADOPT_FILE: a node agent's
   * instance manager, src/runtime/adoption.ts) first waits ADOPT_WAIT_MS for a new supervisor to adopt it.
   * `exit` is injectable for tests.
   */
  installSignalHandlers(exit: (code: number) => void = processExit): () => void {
    const supervised = process.env.DYNAMOLLM_SUPERVISED === '1';
    let signalled = false;
    let backstop: unknown;
    let orphan = false;
    // an orphan's stdout may be a pipe its dead supervisor held: pino's flush at exit retries a write to it for ever
    // (sonic-boom's flushSync on EPIPE), so once drained it ends without exit handlers
    const quit = (code: number) => (orphan && exit === processExit ? process.kill(process.pid, 'SIGKILL') : exit(code));
    const begin = (why: string) => {
      signalled = true;
      orphan = why.startsWith('parent exited');
      this.log.info({ reason: why }, 'draining');
      // whatever a step waits on, the process ends once every deadline of the drain and the stop has passed
      const limitMs = this.shutdownLimitMs();
      backstop = this.clock.setTimeout(() => {
        this.log.error({ limitMs }, 'shutdown deadline passed, exiting');
        quit(1);
      }, limitMs);
      const end = (code: number) => {
        this.clock.clearTimeout(backstop);
        quit(code);
      };
      this.drain().then(
        () => end(0),
        (err: unknown) => {
          this.log.error({ err }, 'drain failed');
          end(1);
        },
      );
    };
    const onSignal = (sig: NodeJS.Signals) => {
      if (supervised && sig === 'SIGINT') {
        this.log.debug({ signal: sig }, 'SIGINT ignored: the supervisor stops this child in order');
        return;
      }
      if (signalled) {
        this.log.warn({ signal: sig }, 'second signal, exiting now');
        exit(1);
        return;
      }
      begin(`signal ${sig}`);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // the supervisor as it named itself: one that died before this process got here has left it another parent already
    const parent = Number(process.env.DYNAMOLLM_SUPERVISOR_PID) || process.ppid;
    const adoptFile = process.env[ADOPT_FILE_ENV] || undefined;
    let orphanSinceMs: number | undefined;
    const check = () => {
      if (signalled) return;
      if (!adoptFile) {
        if (process.ppid === parent) return;
        this.log.warn({ parent, ppid: process.ppid }, 'supervisor is gone');
        return begin('parent exited');
      }
      const record = readRecord(adoptFile);
      if (watched({ ppid: process.ppid, startedBy: parent, pid: process.pid, ...(record ? { record } : {}) })) {
        if (orphanSinceMs !== undefined) this.log.info({ supervisor: record?.supervisorPid }, 'adopted by a new supervisor');
        orphanSinceMs = undefined;
        return;
      }
      if (orphanSinceMs === undefined) {
        orphanSinceMs = this.clock.now();
        this.log.warn({ parent, ppid: process.ppid, waitMs: ADOPT_WAIT_MS }, 'supervisor is gone: serving on while waiting to be adopted');
      } else if (this.clock.now() - orphanSinceMs >= ADOPT_WAIT_MS) {
        this.log.warn({ parent, ppid: process.ppid }, 'supervisor is gone and nobody adopted this process');
        begin('parent exited, not adopted');
      }
    };
    const watchdog = supervised ? setInterval(check, 1000) : undefined;
    watchdog?.unref();
    if (supervised) check();
    return () => {
      if (watchdog) clearInterval(watchdog);
      if (backstop !== undefined) this.clock.clearTimeout(backstop);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    };
  }

  /** The longest a drain and the stop after it may take by their deadlines (shutdownLimitMs of this actor's options). */
  shutdownLimitMs(): number {
    return shutdownLimitMs(this.opts);
  }

  /** Serve requests; the handle is drained by the default onDrain and closed on stop. */
  protected serve<Q, R>(
    subject: string,
    reqCodec: Codec<Q>,
    resCodec: Codec<R>,
    handler: (req: Q, ctx: ServeContext) => Promise<R>,
    opts?: ServeOpts<Q>,
  ): ServeHandle {
    const h = this.bus.serve(subject, reqCodec, resCodec, handler, opts);
    this.#handles.push(h);
    return h;
  }

  /** Subscribe; drained by the default onDrain and closed on stop. */
  protected subscribe<T>(
    subject: string,
    codec: Codec<T>,
    handler: (msg: T, subject: string) => void | Promise<void>,
    opts?: SubscribeOpts<T>,
  ): SubscribeHandle {
    const h = this.bus.subscribe(subject, codec, handler, opts);
    this.#handles.push(h);
    return h;
  }

  /**
   * Runs first in start(), before NATS is dialled (`bus` does not exist yet): what a kind does whether or not NATS
   * answers. A throw fails the start. Default: nothing.
   */
  protected async beforeConnect(): Promise<void> {}

  protected abstract onStart(): Promise<void>;

  /** Default: stop receiving on every serve/subscribe made through this class and let in-flight work end. */
  protected async onDrain(_signal: AbortSignal): Promise<void> {
    await Promise.all(this.#handles.map((h) => h.drain()));
  }

  protected async onStop(): Promise<void> {}

  /** Load in the heartbeat. Default: sum of the mailboxes of handles made through this class. */
  protected loadSummary(): LoadSummary {
    let queued = 0;
    let running = 0;
    for (const h of this.#handles) {
      queued += h.mailbox.size;
      running += h.mailbox.inFlight;
    }
    return { queued, running, mailbox: queued };
  }

  /** Extra key/values in heartbeats. */
  protected heartbeatMeta(): Record<string, string | number | boolean> | undefined {
    return undefined;
  }
}
