/**
 * Supervises actor processes: starts children from specs, restarts a crashed child and never gives up. The delay
 * before a restart is src/policy/restart-backoff.ts's: a child that ended a stable run (it said it was ready and
 * stayed so, or it lived longer than the cap) starts again after initialMs; a failed start (a death before ready)
 * backs off exponentially (initialMs x factor^n, capped at maxMs), and past `flapping.maxRestarts` failed starts within
 * `flapping.windowMs` the child is flapping and waits the cap before each start until a stable run. A child says it is
 * ready through the pipe it gets as descriptor `DYNAMOLLM_READY_FD` (src/runtime/ready-notify.ts; an Actor does once
 * running). Stops them all in reverse order, or all at once (`stopTogether`): SIGTERM, then SIGKILL after the child's
 * stopGraceMs. Children's stdout/stderr pass through line by line.
 * Events: 'spawn' {name, pid}, 'ready' {name, pid}, 'exit' {name, pid, code, signal}, 'restart' {name, attempt,
 * delayMs, stable}, 'flapping' {name, restarts, delayMs} (once per flapping episode, before its first capped restart).
 * Children of one `group` stand in for one another (a manager and its standby): one killed by another process's signal
 * (SIGKILL, SIGTERM, SIGINT, SIGHUP: an OOM kill, an operator, a chaos run; not a crash of its own) while no other child
 * of its group is up is restarted after initialMs even when its start had not finished (a failed start otherwise backs
 * off): its group has no process left, and the wait would be the outage's; past twice the flapping threshold of failed
 * starts within the window (killed at every start: out of memory) it backs off as any. A child that ends by itself (an exit code,
 * SIGSEGV, SIGABRT) backs off as any (a crash loop).
 * A process another supervisor started and left (src/runtime/adoption.ts) is adopted by its pid: watched by polling
 * (its exit code is not ours to read: any end is a failure; it cannot say it is ready), stopped by signals, and
 * started anew from its spec.
 * A child whose spec names a liveness file (it beats: src/runtime/liveness-beat.ts) is probed every
 * `watchdog.intervalMs`; one that missed `watchdog.misses` probes in a row (stopped, or its event loop stuck) is
 * SIGKILLed and restarted as after any death (src/policy/watchdog.ts): event 'unresponsive' {name, pid, misses,
 * silentMs}, counted in children()'s `hangKills`.
 */
import { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.ts';
import { LifecycleError } from './errors.ts';
import { ADOPT_FILE_ENV, pidAlive } from './adoption.ts';
import { ChildWatch } from './watchdog.ts';
import { LIVENESS_FILE_ENV } from './liveness-beat.ts';
import { watchdogSettings, type WatchdogSettings } from '../policy/watchdog.ts';
import { READY_FD_ENV } from './ready-notify.ts';
import { DEFAULT_RESTART_BACKOFF, NO_RESTARTS, restartAfter, type RestartBackoff, type RestartHistory } from '../policy/restart-backoff.ts';

/** signals another process ends a child with (its group's last one is restarted without backoff). */
const KILL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP']);
/** how often an adopted child's pid is checked, ms (a kill(0) and a read of /proc/<pid>/stat each). */
const ADOPTED_POLL_MS = 100;
/** the child's descriptor of its readiness pipe (stdio index). */
const READY_FD = 3;

export interface ChildSpec {
  /** unique name of the child in this supervisor. */
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** ms between SIGTERM and SIGKILL on stop. Default 10000. */
  stopGraceMs?: number;
  /** default 'on-failure' (restart after a non-zero exit or a signal). */
  restart?: 'always' | 'on-failure' | 'never';
  /** children of one group stand in for one another (see the module comment). */
  group?: string;
  /**
   * where output goes: 'inherit' (line by line to our stdout/stderr, default), 'log', 'ignore', 'direct' (our own
   * stdout/stderr handed to the child: its output does not pass through this process, so it outlives it).
   */
  output?: 'inherit' | 'log' | 'ignore' | 'direct';
  /** the child beats into this file (a Node process of the CLI: src/runtime/liveness-beat.ts): it is probed by the watchdog. */
  liveness?: { file: string };
}

export type ChildState = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' | 'exited';

export interface SupervisorOptions {
  children: ChildSpec[];
  log: Logger;
  /** minReadyMs: a child that said it was ready and died sooner than this after it failed its start. Defaults 500, 10000, 2, 1000. */
  backoff?: { initialMs?: number; maxMs?: number; factor?: number; minReadyMs?: number };
  /** more than maxRestarts failed starts within windowMs: the child is flapping (logged once, backoff at the cap). Default 5 per 60 s. */
  flapping?: { maxRestarts?: number; windowMs?: number };
  /** the liveness watchdog of the children that beat (src/policy/watchdog.ts WATCHDOG_DEFAULTS); false: none. */
  watchdog?: Partial<WatchdogSettings> | false;
  clock?: Clock;
  /**
   * stop() stops every child at once instead of in reverse order of start: for children that do not depend on one
   * another (a node agent's instance managers), so the stop takes the longest child's grace, not the sum of theirs.
   * Default false.
   */
  stopTogether?: boolean;
}

interface Child {
  spec: ChildSpec;
  proc?: ChildProcess;
  state: ChildState;
  restarts: number;
  /** its failed starts (src/policy/restart-backoff.ts). */
  history: RestartHistory;
  timer?: unknown;
  exited?: Promise<void>;
  spawnedMs: number;
  /** when the current process said it was ready. */
  readyMs?: number;
  /** adopted (not spawned here): its pid, and the timer that polls it. */
  adoptedPid?: number;
  watch?: unknown;
  /** its liveness watchdog (spec.liveness). */
  live?: ChildWatch;
}

export class Supervisor extends EventEmitter {
  #children = new Map<string, Child>();
  #log: Logger;
  #clock: Clock;
  #backoff: RestartBackoff;
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #initial: ChildSpec[];
  #watchdog: WatchdogSettings | undefined;
  #probeTimer?: unknown;
  #stopTogether: boolean;

  constructor(opts: SupervisorOptions) {
    super();
    this.#log = opts.log;
    this.#stopTogether = opts.stopTogether ?? false;
    this.#clock = opts.clock ?? systemClock;
    const d = DEFAULT_RESTART_BACKOFF;
    this.#backoff = {
      initialMs: opts.backoff?.initialMs ?? d.initialMs, maxMs: opts.backoff?.maxMs ?? d.maxMs, factor: opts.backoff?.factor ?? d.factor,
      minReadyMs: opts.backoff?.minReadyMs ?? d.minReadyMs, flapMaxRestarts: opts.flapping?.maxRestarts ?? d.flapMaxRestarts, flapWindowMs: opts.flapping?.windowMs ?? d.flapWindowMs,
    };
    this.#initial = opts.children;
    this.#watchdog = opts.watchdog === false ? undefined : watchdogSettings(opts.watchdog);
    const names = new Set<string>();
    for (const c of opts.children) {
      if (names.has(c.name)) throw new RangeError(`Supervisor: duplicate child name '${c.name}'`);
      names.add(c.name);
    }
  }

  /** Spawn every child in order. Idempotent. */
  async start(): Promise<void> {
    if (this.#state === 'running') return;
    if (this.#state !== 'new') throw new LifecycleError(`supervisor cannot start in state ${this.#state}`, this.#state);
    this.#state = 'running';
    if (this.#watchdog) this.#probeTimer = this.#clock.setInterval(() => this.#probe(), this.#watchdog.intervalMs);
    for (const spec of this.#initial) this.add(spec);
  }

  /** Add and spawn a child at runtime. */
  add(spec: ChildSpec): void {
    if (this.#state !== 'running') throw new LifecycleError(`supervisor not running (${this.#state})`, this.#state);
    if (this.#children.has(spec.name)) throw new RangeError(`Supervisor: child '${spec.name}' exists`);
    const c: Child = { spec, state: 'starting', restarts: 0, history: NO_RESTARTS, spawnedMs: 0 };
    this.#children.set(spec.name, c);
    this.#spawn(c);
  }

  /**
   * Supervise process `pid`, started by a supervisor that died, as child `spec.name`: polled until it ends, then
   * restarted from `spec` as any child that failed (src/runtime/adoption.ts).
   */
  adopt(spec: ChildSpec, pid: number): void {
    if (this.#state !== 'running') throw new LifecycleError(`supervisor not running (${this.#state})`, this.#state);
    if (this.#children.has(spec.name)) throw new RangeError(`Supervisor: child '${spec.name}' exists`);
    const c: Child = { spec, state: 'running', restarts: 0, history: NO_RESTARTS, spawnedMs: this.#clock.now(), adoptedPid: pid };
    if (spec.liveness && this.#watchdog) {
      c.live = new ChildWatch(spec.liveness.file, this.#clock.now());
      c.live.adopted(this.#clock.now());
    }
    let resolveExit!: () => void;
    c.exited = new Promise((r) => (resolveExit = r));
    c.watch = this.#clock.setInterval(() => {
      if (pidAlive(pid)) return;
      this.#clock.clearInterval(c.watch);
      c.watch = undefined;
      resolveExit();
      this.#onExit(c, undefined, null, null);
      c.adoptedPid = undefined;
    }, ADOPTED_POLL_MS);
    this.#children.set(spec.name, c);
    this.#log.info({ child: spec.name, pid }, 'child adopted');
    this.emit('adopt', { name: spec.name, pid });
  }

  /** Stop (SIGTERM, then SIGKILL after stopGraceMs) and forget a child. */
  async remove(name: string): Promise<void> {
    const c = this.#children.get(name);
    if (!c) return;
    await this.#stopChild(c);
    this.#children.delete(name);
  }

  /** Each child; `misses`: liveness probes it missed in a row, `hangKills`: its kills for silence (children that beat). */
  children(): { name: string; pid: number | undefined; restarts: number; state: ChildState; misses?: number; hangKills?: number }[] {
    return [...this.#children.values()].map((c) => ({
      name: c.spec.name, pid: c.proc?.pid ?? c.adoptedPid, restarts: c.restarts, state: c.state, ...(c.live ? { misses: c.live.misses, hangKills: c.live.kills } : {}),
    }));
  }

  /** Whether child `name` runs but missed liveness probes in a row (policy watchdog unresponsive): alive, not answering. */
  unresponsive(name: string): boolean {
    const c = this.#children.get(name);
    return c?.state === 'running' && c.live?.unresponsive === true;
  }

  /** SIGKILL child `name` now (it is restarted as after any death); false when it does not run. Counted as a kill for silence. */
  replace(name: string, why: string): boolean {
    const c = this.#children.get(name);
    if (!c || c.state !== 'running') return false;
    this.#hangKill(c, { misses: c.live?.misses ?? 0, silentMs: 0, why });
    return true;
  }

  /** One liveness probe of every running child that beats. */
  #probe(): void {
    const w = this.#watchdog;
    if (!w || this.#state !== 'running') return;
    const now = this.#clock.now();
    for (const c of this.#children.values()) {
      if (!c.live || c.state !== 'running' || c.live.killing) continue;
      const v = c.live.probe(now, w);
      if (v.kind === 'kill') this.#hangKill(c, { misses: v.misses, silentMs: v.silentMs, why: `missed ${v.misses} liveness probes in a row` });
      else if (v.kind === 'miss' && v.misses === 2) this.#log.warn({ child: c.spec.name, misses: v.misses, silentMs: v.silentMs }, 'child silent: missed liveness probes');
    }
  }

  #hangKill(c: Child, e: { misses: number; silentMs: number; why: string }): void {
    const pid = c.proc?.pid ?? c.adoptedPid;
    if (c.live?.killing) return;
    if (c.live) {
      c.live.kills++;
      c.live.killing = true;
    }
    this.#log.error({ child: c.spec.name, pid, misses: e.misses, silentMs: e.silentMs, reason: e.why }, 'child unresponsive: killed (SIGKILL) to be restarted');
    this.emit('unresponsive', { name: c.spec.name, pid, misses: e.misses, silentMs: e.silentMs, why: e.why });
    try {
      if (c.proc) c.proc.kill('SIGKILL');
      else if (c.adoptedPid !== undefined) process.kill(c.adoptedPid, 'SIGKILL');
    } catch {
      // gone meanwhile: its exit restarts it
    }
  }

  /** Stop all children in reverse order of start (all at once with `stopTogether`). Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    if (this.#probeTimer !== undefined) this.#clock.clearInterval(this.#probeTimer);
    if (this.#stopTogether) await Promise.all([...this.#children.values()].map((c) => this.#stopChild(c)));
    else for (const c of [...this.#children.values()].reverse()) await this.#stopChild(c);
    this.#state = 'stopped';
  }

  #spawn(c: Child): void {
    const { spec } = c;
    c.state = 'starting';
    c.readyMs = undefined;
    const out = spec.output ?? 'inherit';
    let beatEnv: Record<string, string> = { [LIVENESS_FILE_ENV]: '' };
    if (spec.liveness && this.#watchdog) {
      c.live ??= new ChildWatch(spec.liveness.file, this.#clock.now());
      beatEnv = c.live.spawning(this.#clock.now(), this.#watchdog);
    }
    let proc: ChildProcess;
    try {
      proc = spawn(spec.command, spec.args, {
        cwd: spec.cwd,
        env: { ...process.env, DYNAMOLLM_SUPERVISED: '1', DYNAMOLLM_SUPERVISOR_PID: String(process.pid), [ADOPT_FILE_ENV]: '', [READY_FD_ENV]: String(READY_FD), ...spec.env, ...beatEnv },
        stdio: [
          'ignore',
          ...(out === 'direct' ? ['inherit', 'inherit'] as const : out === 'ignore' ? ['ignore', 'ignore'] as const : ['pipe', 'pipe'] as const),
          // the readiness pipe (ready-notify.ts): the child's first line on it says its start is done
          'pipe',
        ],
      });
    } catch (err) {
      this.#log.error({ child: spec.name, err }, 'spawn failed');
      this.#onExit(c, undefined, null, null);
      return;
    }
    c.proc = proc;
    c.spawnedMs = this.#clock.now();
    let resolveExit!: () => void;
    c.exited = new Promise((r) => (resolveExit = r));
    for (const [stream, dest] of [
      [proc.stdout, process.stdout],
      [proc.stderr, process.stderr],
    ] as const) {
      if (!stream) continue;
      const rl = createInterface({ input: stream });
      rl.on('line', (line) => {
        if (out === 'log') this.#log.info({ child: spec.name }, line);
        else dest.write(line + '\n');
      });
    }
    const ready = proc.stdio[READY_FD] as Readable | null | undefined;
    ready?.once('data', () => {
      // a line read after the process's end (it wrote, then died) tells of a run that is over
      if (c.proc !== proc || c.readyMs !== undefined || proc.exitCode !== null || proc.signalCode !== null) return;
      c.readyMs = this.#clock.now();
      this.#log.info({ child: spec.name, pid: proc.pid, afterMs: c.readyMs - c.spawnedMs }, 'child ready');
      this.emit('ready', { name: spec.name, pid: proc.pid });
    });
    ready?.on('error', () => {}); // the child's end closed with it
    ready?.resume();
    proc.once('spawn', () => {
      if (c.state === 'starting') c.state = 'running';
      this.#log.info({ child: spec.name, pid: proc.pid }, 'child spawned');
      this.emit('spawn', { name: spec.name, pid: proc.pid });
    });
    proc.once('error', (err) => {
      this.#log.error({ child: spec.name, err: err.message }, 'child process error');
      if (proc.pid === undefined) {
        resolveExit();
        this.#onExit(c, proc, null, null);
      }
    });
    proc.once('exit', (code, signal) => {
      resolveExit();
      this.#onExit(c, proc, code, signal);
    });
  }

  #onExit(c: Child, proc: ChildProcess | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    if (proc && c.proc !== proc) return;
    const { spec } = c;
    const pid = proc?.pid ?? c.adoptedPid;
    this.emit('exit', { name: spec.name, pid, code, signal });
    if (c.state === 'stopping' || c.state === 'stopped' || this.#state !== 'running') {
      c.state = 'stopped';
      return;
    }
    const policy = spec.restart ?? 'on-failure';
    const failed = code !== 0;
    const now = this.#clock.now();
    const run = { spawnedMs: c.spawnedMs, exitedMs: now, ...(c.readyMs !== undefined ? { readyMs: c.readyMs } : {}) };
    const ran = { ranMs: now - c.spawnedMs, ...(c.readyMs !== undefined ? { readyForMs: now - c.readyMs } : {}) };
    if (policy === 'never' || (policy === 'on-failure' && !failed)) {
      this.#log[failed ? 'warn' : 'info']({ child: spec.name, pid, code, signal, ...ran }, 'child exited');
      c.state = 'exited';
      return;
    }
    const after = restartAfter(c.history, run, this.#backoff);
    const { stable, flappingStarts, history } = after;
    // killed, and its group has no other process up: no backoff (its failed starts still count for the next one), up
    // to twice the flapping threshold of failed starts within the window: past it (a process killed at every start,
    // e.g. out of memory) it backs off as any, not restarted every initialMs for ever
    const lastKilled = signal !== null && KILL_SIGNALS.has(signal) && this.#lastOfGroup(c) && history.recent.length <= 2 * this.#backoff.flapMaxRestarts;
    const delayMs = lastKilled ? this.#backoff.initialMs : after.delayMs;
    c.history = history;
    this.#log[failed ? 'warn' : 'info']({ child: spec.name, pid, code, signal, ...ran, stable, restartInMs: delayMs }, 'child exited');
    if (flappingStarts && delayMs === after.delayMs) {
      // flapping: keep trying, at the cap, and say so once per episode
      this.#log.error({ child: spec.name, restarts: c.restarts, windowMs: this.#backoff.flapWindowMs, delayMs }, 'child keeps crashing; restarting it every backoff cap until it stays up');
      this.emit('flapping', { name: spec.name, restarts: c.restarts, delayMs });
    }
    c.state = 'backoff';
    this.emit('restart', { name: spec.name, attempt: c.restarts + 1, delayMs, stable });
    c.timer = this.#clock.setTimeout(() => {
      c.timer = undefined;
      if (c.state !== 'backoff' || this.#state !== 'running') return;
      c.restarts++;
      this.#spawn(c);
    }, delayMs);
  }

  /** `c` has a group and no other child of it is up (spawned and not ended). */
  #lastOfGroup(c: Child): boolean {
    const g = c.spec.group;
    if (g === undefined) return false;
    return ![...this.#children.values()].some((o) => o !== c && o.spec.group === g && (o.state === 'running' || o.state === 'starting'));
  }

  async #stopChild(c: Child): Promise<void> {
    if (c.timer !== undefined) this.#clock.clearTimeout(c.timer);
    c.timer = undefined;
    const proc = c.proc;
    const adopted = proc ? undefined : c.adoptedPid;
    const alive = proc ? proc.exitCode === null && proc.signalCode === null : adopted !== undefined && pidAlive(adopted);
    c.state = 'stopping';
    if (!alive) {
      if (c.watch !== undefined) this.#clock.clearInterval(c.watch);
      c.state = 'stopped';
      return;
    }
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (proc) proc.kill(sig);
        else process.kill(adopted!, sig);
      } catch {
        // gone meanwhile
      }
    };
    const grace = c.spec.stopGraceMs ?? 10_000;
    kill('SIGTERM');
    let h: unknown;
    const timedOut = await Promise.race([
      c.exited!.then(() => false),
      new Promise<boolean>((r) => (h = this.#clock.setTimeout(() => r(true), grace))),
    ]);
    this.#clock.clearTimeout(h);
    if (timedOut) {
      this.#log.warn({ child: c.spec.name, graceMs: grace }, 'child ignored SIGTERM, killing');
      kill('SIGKILL');
      await c.exited;
    }
    c.state = 'stopped';
  }
}
