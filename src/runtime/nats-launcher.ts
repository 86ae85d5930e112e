/**
 * ensureNats: use the NATS server at `url` if one answers, else start `nats-server -c <conf>` and wait
 * until it accepts connections. "Answers" means the TCP port sends the NATS `INFO` greeting (no
 * credentials needed for that probe).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { DynError } from '../../protocols/errors.ts';
import { tiedToParent } from './parent-death.ts';
import { watchdogProbe, watchdogSettings, watchdogStart, type WatchdogSettings } from '../policy/watchdog.ts';

export class NatsUnavailableError extends DynError {
  override name = 'NatsUnavailableError';
  constructor(message: string, cause?: unknown) {
    super('unavailable', message, { retryable: false, cause });
  }
}

export interface EnsureNatsOptions {
  /** where to look for (and start) the server. Default nats://127.0.0.1:4222. */
  url?: string;
  /** server config. Default ./nats.conf. */
  confPath?: string;
  /** JetStream store dir (-sd). Default: the config's store_dir. */
  storeDir?: string;
  log: Logger;
  /** nats-server binary. Default env NATS_SERVER_BIN or 'nats-server' on PATH. */
  bin?: string;
  /** how long to wait for a started server, ms. Default 10000. */
  readyTimeoutMs?: number;
}

export interface NatsHandle {
  url: string;
  /** true when this call started the server (then stop() kills it). */
  started: boolean;
  stop(): Promise<void>;
}

/** Resolves true when host:port greets with a NATS INFO line within timeoutMs. */
export function probeNats(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((res) => {
    const sock = createConnection({ host, port });
    let buf = '';
    const done = (ok: boolean) => {
      clearTimeout(t);
      sock.destroy();
      res(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.startsWith('INFO')) done(true);
      else if (buf.length > 4) done(false);
    });
    sock.on('error', () => done(false));
  });
}

/** The config text with its jetstream store_dir set to `dir` (added when absent). */
export function withStoreDir(conf: string, dir: string): string {
  const line = `store_dir: ${JSON.stringify(dir)}`;
  if (/^\s*store_dir\s*[:=]/m.test(conf)) return conf.replace(/^(\s*)store_dir\s*[:=].*$/m, `$1${line}`);
  return conf.replace(/jetstream\s*\{/, (m) => `${m}\n  ${line}`);
}

export async function ensureNats(opts: EnsureNatsOptions): Promise<NatsHandle> {
  const url = opts.url ?? 'nats://127.0.0.1:4222';
  const u = new URL(url.replace(/^nats:/, 'http:'));
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 4222);
  if (await probeNats(host, port)) {
    opts.log.info({ url }, 'nats-server already running');
    return { url, started: false, stop: async () => {} };
  }
  const bin = opts.bin ?? process.env.NATS_SERVER_BIN ?? 'nats-server';
  const conf = resolve(opts.confPath ?? 'nats.conf');
  const args = ['-c', conf, '-a', host, '-p', String(port)];
  if (opts.storeDir) {
    // nats-server 2.9 refuses `-sd` when the config sets store_dir: run a copy with the store dir replaced
    mkdirSync(opts.storeDir, { recursive: true });
    const copy = join(opts.storeDir, 'nats.generated.conf');
    writeFileSync(copy, withStoreDir(readFileSync(conf, 'utf8'), resolve(opts.storeDir)));
    args[1] = copy;
  }
  opts.log.info({ bin, args }, 'starting nats-server');
  const server = await spawnNatsServer(bin, args, { detached: false });
  const ready = await server.awaitReady(opts.readyTimeoutMs ?? 10_000, async () => ((await probeNats(host, port, 300)) ? url : undefined));
  if (ready) {
    opts.log.info({ url, pid: server.proc.pid }, 'nats-server ready');
    return startedServer(url, server.proc);
  }
  server.proc.kill('SIGKILL');
  throw new NatsUnavailableError(`nats-server did not accept connections on ${host}:${port} in time: ${server.stderr()}`);
}

export type AuthCheck = { verdict: 'enforced' } | { verdict: 'open' } | { verdict: 'unreachable'; message: string };

/**
 * Whether the server at `servers` refuses an anonymous client: connects once with no credentials.
 * 'open' means anyone who reaches the port can read every prompt and command every GPU.
 */
export async function checkAuthorization(servers: string[], timeoutMs = 3000): Promise<AuthCheck> {
  try {
    const nc = await connect({ servers, reconnect: false, maxReconnectAttempts: 0, timeout: timeoutMs, name: 'dynamollm-auth-probe' });
    await nc.close().catch(() => {});
    return { verdict: 'open' };
  } catch (err) {
    const e = err as Error & { code?: string };
    const cause = (e as { cause?: unknown }).cause;
    const causeText = cause instanceof Error ? `${cause.name}: ${cause.message}` : typeof cause === 'string' ? cause : '';
    const text = `${e.name} ${e.message} ${e.code ?? ''} ${causeText}`.toLowerCase();
    if (text.includes('authorization') || text.includes('authentication')) return { verdict: 'enforced' };
    return { verdict: 'unreachable', message: e.message };
  }
}

export interface OwnNatsOptions {
  /** the server config text (src/runtime/nats-server-config.ts); its listen/store_dir are overridden. */
  conf: string;
  /** directory for the config copy, the ports file and the JetStream store (created; emptied of a stale store). */
  dir: string;
  log: Logger;
  bin?: string;
  readyTimeoutMs?: number;
  /** environment of the server (e.g. $DYN_*_PASS). */
  env?: Record<string, string>;
  /**
   * A server that dies unasked (SIGKILL, a crash) is started again on the same port with the same store, after a
   * backoff that doubles from `initialMs` up to `maxMs` and is reset by a run longer than `maxMs`; it never gives
   * up, and each restart is logged. Default on (initialMs 250, maxMs 5000); `false` leaves a dead server dead.
   */
  restart?: { initialMs?: number; maxMs?: number } | false;
  /**
   * The liveness watchdog (src/policy/watchdog.ts): every intervalMs the server's client port must greet with INFO
   * within the interval (a probe as probeNats); a server that missed `misses` probes in a row (stopped, hung: its port
   * still accepts connections into the kernel's backlog) is SIGKILLed, then restarted as after any death. Default
   * WATCHDOG_DEFAULTS; false: none. Only with `restart`.
   */
  watchdog?: Partial<WatchdogSettings> | false;
}

/** A private server this process started, kept running until stop(). */
export interface OwnNatsHandle extends NatsHandle {
  started: true;
  /** the server's current pid. */
  pid(): number | undefined;
  /** how many times the server was started again after it died. */
  restarts(): number;
  /** how many times the watchdog killed it for not answering its probes. */
  hangKills(): number;
}

/**
 * Start a private nats-server on 127.0.0.1 and a free port (`-p -1`, read back from its ports file), with
 * its own JetStream store under `dir` (a previous run's store is removed first: a restart never reads the
 * state of an earlier cluster). Once up, it is supervised (`restart`): the clients reconnect to the same URL and
 * find the JetStream state (leases, inventory, events) the server had written to its store.
 */
export async function startOwnNats(opts: OwnNatsOptions): Promise<OwnNatsHandle> {
  return superviseServer(opts, -1, 'nats-server');
}

export interface OwnNatsClusterOptions extends Omit<OwnNatsOptions, 'conf'> {
  /** how many servers (3 or 5: JetStream keeps a quorum when one dies). */
  nodes: number;
  /** the config text of node `i` (listen/store_dir are overridden), given its cluster block. */
  conf: (node: { index: number; cluster: { name: string; listen: string; routes: string[] } }) => string;
  /** the cluster's name (route connections of another name are refused). */
  name: string;
}

/** A private NATS cluster this process started: every node supervised as one startOwnNats server. */
export interface OwnNatsClusterHandle extends NatsHandle {
  started: true;
  /** the client URL of each node. */
  urls: string[];
  nodes: OwnNatsHandle[];
}

/**
 * Start `nodes` private nats-servers on 127.0.0.1 clustered with each other (routes on free ports, the route
 * connections authenticated by a password made here and written only to the nodes' configs, mode 0600), each with
 * its own store under `dir/node-<i>`, each restarted on its own ports when it dies. The servers find each other
 * in the background; JetStream elects its meta leader once a quorum is up (clients retry until then).
 */
export async function startOwnNatsCluster(opts: OwnNatsClusterOptions): Promise<OwnNatsClusterHandle> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new RangeError(`nodes must be a positive integer, got ${opts.nodes}`);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < opts.nodes; i++) {
    clientPorts.push(await freeLocalPort());
    routePorts.push(await freeLocalPort());
  }
  const pass = randomBytes(18).toString('base64url');
  const settled = await Promise.allSettled(
    clientPorts.map((port, i) => {
      const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats-route://route:${pass}@127.0.0.1:${p}`);
      const conf = withRouteAuth(opts.conf({ index: i, cluster: { name: opts.name, listen: `127.0.0.1:${routePorts[i]}`, routes } }), pass);
      return superviseServer({ ...opts, conf, dir: join(opts.dir, `node-${i}`) }, port, `nats-server node-${i}`);
    }),
  );
  const nodes = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw failed.reason;
  }
  const urls = nodes.map((n) => n.url);
  let stopped: Promise<void> | undefined;
  return { url: urls.join(','), urls, nodes, started: true, stop: () => (stopped ??= Promise.all(nodes.map((n) => n.stop())).then(() => undefined)) };
}

/** The config with the cluster block's route connections requiring user `route` and `pass`. */
function withRouteAuth(conf: string, pass: string): string {
  if (!/^cluster\s*\{/m.test(conf)) throw new RangeError('the node config has no cluster block');
  return conf.replace(/^cluster\s*\{/m, (m) => `${m}\n  authorization { user: route, password: ${JSON.stringify(pass)} }`);
}

/** A TCP port free on 127.0.0.1 now (the OS's pick; another process may take it before it is used). */
export async function freeLocalPort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

/** One private server under `opts.dir` on `port` (-1: a free one), supervised until stop() (see startOwnNats). */
async function superviseServer(opts: OwnNatsOptions, fixedPort: number, what: string): Promise<OwnNatsHandle> {
  const bin = opts.bin ?? process.env.NATS_SERVER_BIN ?? 'nats-server';
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const store = join(opts.dir, 'jetstream');
  rmSync(store, { recursive: true, force: true });
  const clearPorts = () => {
    for (const f of readdirSync(opts.dir)) if (f.endsWith('.ports')) rmSync(join(opts.dir, f), { force: true });
  };
  clearPorts();
  const conf = join(opts.dir, 'nats-server.conf');
  writeFileSync(conf, withStoreDir(opts.conf, resolve(store)), { mode: 0o600 });
  const argsFor = (port: string) => ['-c', conf, '-a', '127.0.0.1', '-p', port, '--ports_file_dir', opts.dir];
  opts.log.info({ bin, conf }, `starting a private ${what}`);
  // its own process group: a terminal's Ctrl-C reaches the process that started it (which stops NATS last, after
  // the actors that use it have drained), not the server itself; killed with this process if it exits unstopped,
  // and sent SIGTERM by the kernel if this process is killed (spawnNatsServer)
  const launch = async (port: string): Promise<{ proc: ChildProcess; url: string }> => {
    const server = await spawnNatsServer(bin, argsFor(port), { env: { ...process.env, ...opts.env }, detached: true });
    const proc = server.proc;
    const killOnExit = () => proc.kill('SIGKILL');
    process.once('exit', killOnExit);
    proc.once('exit', () => process.off('exit', killOnExit));
    const url = await server.awaitReady(opts.readyTimeoutMs ?? 10_000, async () => {
      const f = readdirSync(opts.dir).find((n) => n.endsWith('.ports'));
      if (!f) return undefined;
      let port = 0;
      try {
        const u = (JSON.parse(readFileSync(join(opts.dir, f), 'utf8')) as { nats?: string[] }).nats?.[0];
        if (u) port = Number(new URL(u.replace(/^nats:/, 'http:')).port);
      } catch {
        // written but not complete yet
      }
      return port && (await probeNats('127.0.0.1', port, 300)) ? `nats://127.0.0.1:${port}` : undefined;
    });
    if (url) return { proc, url };
    proc.kill('SIGKILL');
    throw new NatsUnavailableError(`the private ${what} did not accept connections in time: ${server.stderr()}`);
  };
  const first = await launch(String(fixedPort));
  const url = first.url;
  const port = new URL(url.replace(/^nats:/, 'http:')).port;
  opts.log.info({ url, pid: first.proc.pid }, `${what} ready`);
  let proc = first.proc;
  let stopping = false;
  let restarts = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const backoff = opts.restart === false ? undefined : { initialMs: opts.restart?.initialMs ?? 250, maxMs: opts.restart?.maxMs ?? 5000 };
  let delay = backoff?.initialMs ?? 0;
  let upAt = Date.now();
  const watch = (p: ChildProcess) => {
    p.once('exit', (code, signal) => {
      if (stopping || !backoff) return;
      if (Date.now() - upAt > backoff.maxMs) delay = backoff.initialMs;
      opts.log.warn({ code, signal, restartInMs: delay, restarts }, `the private ${what} died: starting it again on the same port and store`);
      const again = () => {
        timer = undefined;
        if (stopping) return;
        clearPorts();
        launch(port).then(
          (r) => {
            if (stopping) {
              r.proc.kill('SIGTERM');
              return;
            }
            proc = r.proc;
            restarts++;
            upAt = Date.now();
            opts.log.warn({ url, pid: r.proc.pid, restarts }, `the private ${what} is back`);
            watch(r.proc);
          },
          (err: unknown) => {
            delay = Math.min(delay * 2, backoff.maxMs);
            opts.log.error({ err: (err as Error).message, retryInMs: delay }, `the private ${what} did not start again; trying again`);
            timer = setTimeout(again, delay);
          },
        );
      };
      timer = setTimeout(again, delay);
      delay = Math.min(delay * 2, backoff.maxMs);
    });
  };
  watch(proc);
  // the liveness watchdog: a server that stopped greeting on its port is killed, and restarted by watch()
  const w = backoff && opts.watchdog !== false ? watchdogSettings(opts.watchdog || {}) : undefined;
  let live = { pid: proc.pid, state: watchdogStart(Date.now()) };
  let probing = false;
  let hangKills = 0;
  /** the pid killed for silence (its exit not seen yet): not probed again. */
  let killed: number | undefined;
  const probeTimer = w
    ? setInterval(() => {
        const p = proc;
        if (stopping || probing || p.exitCode !== null || p.signalCode !== null || p.pid === killed) return;
        if (live.pid !== p.pid) live = { pid: p.pid, state: watchdogStart(Date.now()) };
        probing = true;
        void probeNats('127.0.0.1', Number(port), Math.min(w.intervalMs, 2000)).then((ok) => {
          probing = false;
          if (p !== proc || stopping) return;
          const r = watchdogProbe(live.state, Date.now(), ok, w);
          live.state = r.state;
          if (r.verdict.kind === 'kill') {
            hangKills++;
            killed = p.pid;
            opts.log.error({ pid: p.pid, misses: r.verdict.misses, silentMs: r.verdict.silentMs, hangKills }, `the private ${what} does not answer on its port: killed (SIGKILL) to be restarted`);
            p.kill('SIGKILL');
          } else if (r.verdict.kind === 'miss' && r.verdict.misses === 2) {
            opts.log.warn({ pid: p.pid, misses: r.verdict.misses, silentMs: r.verdict.silentMs }, `the private ${what} missed liveness probes`);
          }
        });
      }, w.intervalMs)
    : undefined;
  probeTimer?.unref();
  let stopped: Promise<void> | undefined;
  return {
    url,
    started: true,
    pid: () => proc.pid,
    restarts: () => restarts,
    hangKills: () => hangKills,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        if (probeTimer) clearInterval(probeTimer);
        if (timer) clearTimeout(timer);
        await stopProc(proc);
      })()),
  };
}

interface SpawnedNats {
  proc: ChildProcess;
  /** the last 4 kB the server wrote to stderr, trimmed. */
  stderr: () => string;
  /**
   * Polls `probe` every 100 ms until it names the server's URL or `timeoutMs` passes (undefined); throws
   * NatsUnavailableError with the server's stderr when it exits first.
   */
  awaitReady: (timeoutMs: number, probe: () => Promise<string | undefined>) => Promise<string | undefined>;
}

/**
 * Spawn nats-server with its stderr captured; resolves once the process runs. A missing binary throws
 * NatsUnavailableError saying how to install it.
 */
async function spawnNatsServer(bin: string, args: string[], o: { env?: NodeJS.ProcessEnv; detached: boolean }): Promise<SpawnedNats> {
  // the server dies with this process, however it dies (a SIGKILLed `up` runs no exit handler): parent-death.ts
  const cmd = tiedToParent(bin, args, { path: o.env?.PATH });
  const proc: ChildProcess = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'ignore', 'pipe'], env: o.env ?? process.env, detached: o.detached });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const spawnErr = await new Promise<Error | null>((r) => {
    proc.once('spawn', () => r(null));
    proc.once('error', (e) => r(e));
  });
  if (spawnErr) {
    const missing = (spawnErr as NodeJS.ErrnoException).code === 'ENOENT';
    throw new NatsUnavailableError(
      missing
        ? `nats-server not found ('${bin}'). Install it: 'sudo apt-get install nats-server' (Debian/Ubuntu), or put a release ` +
            `from https://github.com/nats-io/nats-server/releases on PATH (or set NATS_SERVER_BIN).`
        : `could not start nats-server: ${spawnErr.message}`,
      spawnErr,
    );
  }
  return {
    proc,
    stderr: () => stderr.trim(),
    awaitReady: async (timeoutMs, probe) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (proc.exitCode !== null) throw new NatsUnavailableError(`nats-server exited with code ${proc.exitCode}: ${stderr.trim()}`);
        const url = await probe();
        if (url) return url;
        await new Promise((r) => setTimeout(r, 100));
      }
      return undefined;
    },
  };
}

/** The handle of a nats-server this process started: stop() sends SIGTERM, then SIGKILL after 5 s; idempotent. */
function startedServer(url: string, proc: ChildProcess): { url: string; started: true; stop: () => Promise<void> } {
  let stopped: Promise<void> | undefined;
  return { url, started: true, stop: () => (stopped ??= stopProc(proc)) };
}

/** SIGTERM, SIGKILL after 5 s; resolves on the exit. */
function stopProc(proc: ChildProcess): Promise<void> {
  return new Promise<void>((r) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return r();
    proc.once('exit', () => r());
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
  });
}
