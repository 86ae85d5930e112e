/**
 * ensureNats: use the NATS server at `url` if one answers, else start `nats-server -c <conf>` and wait
 * until it accepts connections. "Answers" means the TCP port sends the NATS `INFO` greeting (no
 * credentials needed for that probe).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { DynError } from '../../protocols/errors.ts';

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
  const proc: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => {
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
        ? `nats-server not found ('${bin}'). Install it: 'sudo apt-get install nats-server' (Debian/Ubuntu), ` +
            `or download a release tarball from https://github.com/nats-io/nats-server/releases and put ` +
            `nats-server on PATH (or set NATS_SERVER_BIN).`
        : `could not start nats-server: ${spawnErr.message}`,
      spawnErr,
    );
  }
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new NatsUnavailableError(`nats-server exited with code ${proc.exitCode}: ${stderr.trim()}`);
    if (await probeNats(host, port, 300)) {
      opts.log.info({ url, pid: proc.pid }, 'nats-server ready');
      let stopped: Promise<void> | undefined;
      return {
        url,
        started: true,
        stop: () =>
          (stopped ??= new Promise<void>((r) => {
            if (proc.exitCode !== null) return r();
            proc.once('exit', () => r());
            proc.kill('SIGTERM');
            setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
          })),
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new NatsUnavailableError(`nats-server did not accept connections on ${host}:${port} in time: ${stderr.trim()}`);
}
