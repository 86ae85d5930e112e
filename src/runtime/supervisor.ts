/**
 * Supervises actor processes: starts children from specs, restarts a crashed child with exponential
 * backoff (initialMs x factor^n, capped at maxMs) and never gives up: a child that crashed more than
 * `flapping.maxRestarts` times within `flapping.windowMs` is flapping, and waits the cap (maxMs) before
 * each further restart until it runs longer than the cap again. Stops them all in reverse order (SIGTERM,
 * then SIGKILL after the child's stopGraceMs). Children's stdout/stderr pass through line by line.
 * Events: 'spawn' {name, pid}, 'exit' {name, pid, code, signal}, 'restart' {name, attempt, delayMs},
 * 'flapping' {name, restarts, delayMs} (once per flapping episode, before its first capped restart).
 * A process another supervisor started and left (src/runtime/adoption.ts) is adopted by its pid: watched by polling
 * (its exit code is not ours to read: any end is a failure), stopped by signals, and started anew from its spec.
 * A child whose spec names a liveness file (it beats: src/runtime/liveness-beat.ts) is probed every
 * `watchdog.intervalMs`; one that missed `watchdog.misses` probes in a row (stopped, or its event loop stuck) is
 * SIGKILLed and restarted as after any death (src/policy/watchdog.ts): event 'unresponsive' {name, pid, misses,
 * silentMs}, counted in children()'s `hangKills`.
 */
import { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.ts';
import { LifecycleError } from './errors.ts';
import { ADOPT_FILE_ENV, pidAlive } from './adoption.ts';
import { ChildWatch } from './watchdog.ts';
import { LIVENESS_FILE_ENV } from './liveness-beat.ts';
import { watchdogSettings, type WatchdogSettings } from '../policy/watchdog.ts';

/** how often an adopted child's pid is checked, ms (a kill(0) and a read of /proc/<pid>/stat each). */
const ADOPTED_POLL_MS = 100;

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
  backoff?: { initialMs?: number; maxMs?: number; factor?: number };
  /** more than maxRestarts restarts within windowMs: the child is flapping (logged once, backoff at the cap). Default 5 per 60 s. */
  flapping?: { maxRestarts?: number; windowMs?: number };
  /** the liveness watchdog of the children that beat (src/policy/watchdog.ts WATCHDOG_DEFAULTS); false: none. */
  watchdog?: Partial<WatchdogSettings> | false;
  clock?: Clock;
}

interface Child {
  spec: ChildSpec;
  proc?: ChildProcess;
  state: ChildState;
  restarts: number;
  /** restart times within the flapping window. */
  recent: number[];
  /** flapping reported for the current episode. */
  flapping: boolean;
  /** consecutive failures (sets the backoff). */
  failures: number;
  timer?: unknown;
  exited?: Promise<void>;
  spawnedMs: number;
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
  #backoff: { initialMs: number; maxMs: number; factor: number };
  #flapping: { maxRestarts: number; windowMs: number };
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #initial: ChildSpec[];
  #watchdog: WatchdogSettings | undefined;
  #probeTimer?: unknown;

  constructor(opts: SupervisorOptions) {
    super();
    this.#log = opts.log;
    this.#clock = opts.clock ?? systemClock;
    this.#backoff = { initialMs: 500, maxMs: 10_000, factor: 2, ...opts.backoff };
    this.#flapping = { maxRestarts: 5, windowMs: 60_000, ...opts.flapping };
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
    const c: Child = { spec, state: 'starting', restarts: 0, recent: [], flapping: false, failures: 0, spawnedMs: 0 };
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
    const c: Child = { spec, state: 'running', restarts: 0, recent: [], flapping: false, failures: 0, spawnedMs: this.#clock.now(), adoptedPid: pid };
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

  /** Stop all children in reverse order of start. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    if (this.#probeTimer !== undefined) this.#clock.clearInterval(this.#probeTimer);
    for (const c of [...this.#children.values()].reverse()) await this.#stopChild(c);
    this.#state = 'stopped';
  }

  #spawn(c: Child): void {
    const { spec } = c;
    c.state = 'starting';
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
        env: { ...process.env, DYNAMOLLM_SUPERVISED: '1', DYNAMOLLM_SUPERVISOR_PID: String(process.pid), [ADOPT_FILE_ENV]: '', ...spec.env, ...beatEnv },
        stdio: out === 'direct' ? ['ignore', 'inherit', 'inherit'] : ['ignore', out === 'ignore' ? 'ignore' : 'pipe', out === 'ignore' ? 'ignore' : 'pipe'],
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
    this.#log[failed ? 'warn' : 'info']({ child: spec.name, pid, code, signal }, 'child exited');
    if (policy === 'never' || (policy === 'on-failure' && !failed)) {
      c.state = 'exited';
      return;
    }
    const now = this.#clock.now();
    // a child that ran longer than the max backoff was stable: start the backoff over
    if (now - c.spawnedMs > this.#backoff.maxMs) {
      c.failures = 0;
      c.flapping = false;
    }
    c.recent = c.recent.filter((t) => now - t < this.#flapping.windowMs);
    let delayMs = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * this.#backoff.factor ** c.failures);
    if (c.recent.length >= this.#flapping.maxRestarts) {
      // flapping: keep trying, at the cap, and say so once per episode
      delayMs = this.#backoff.maxMs;
      if (!c.flapping) {
        c.flapping = true;
        this.#log.error({ child: spec.name, restarts: c.restarts, windowMs: this.#flapping.windowMs, delayMs }, 'child keeps crashing; restarting it every backoff cap until it stays up');
        this.emit('flapping', { name: spec.name, restarts: c.restarts, delayMs });
      }
    }
    c.failures++;
    c.recent.push(now);
    c.state = 'backoff';
    this.emit('restart', { name: spec.name, attempt: c.restarts + 1, delayMs });
    c.timer = this.#clock.setTimeout(() => {
      c.timer = undefined;
      if (c.state !== 'backoff' || this.#state !== 'running') return;
      c.restarts++;
      this.#spawn(c);
    }, delayMs);
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
