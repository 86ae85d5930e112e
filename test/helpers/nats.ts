/**
 * Starts a real nats-server per suite: `nats-server -c <conf> -p -1 -sd <tmp> --ports_file_dir <tmp>`
 * (random free port, private JetStream store), reads the ports file, waits until it greets, and kills and
 * removes everything on stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { inboxPrefix, ROLES, type Role } from '../../protocols/permissions.ts';
import { rolePasswordEnv } from '../../src/runtime/nats-server-config.ts';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { withStoreDir } from '../../src/runtime/nats-launcher.ts';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeNats } from '../../src/runtime/nats-launcher.ts';
import { freePort } from './net.ts';
import { CrashLog } from './crash-log.ts';
import { leasePlacementTag } from '../../protocols/subjects.ts';

export type { Role } from '../../protocols/permissions.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NATS_CONF = join(REPO_ROOT, 'nats.conf');
const NATS_BIN = process.env.NATS_SERVER_BIN ?? (process.platform === 'linux' ? '/usr/sbin/nats-server' : 'nats-server');

export interface TestNats {
  url: string;
  port: number;
  pid: number;
  creds(role: Role): { user: string; pass: string };
  /** credentials and inbox prefix of a client acting as `role`. */
  as(role: Role, id?: string): { user: string; pass: string; inboxPrefix: string };
  /**
   * SIGKILL the server, wait `downMs`, start it again on the same port with the same JetStream store (a
   * crash and a restart: its clients reconnect). Absent on a TestNats that stands for something else.
   */
  restart?(downMs: number): Promise<void>;
  /**
   * Whether the server process still runs, else how it ended, and its stderr: the cause of a Go panic or fatal error
   * when it printed one, and the last lines (a failed suite's message; test/helpers/crash-log.ts).
   */
  describe?(): string;
  stop(): Promise<void>;
}

/**
 * The committed nats.conf takes each role's password from the server's environment ($DYN_<ROLE>_PASS):
 * random ones per test process, handed to every server this helper starts.
 */
const PASSWORDS = Object.fromEntries(ROLES.map((r) => [r, `p${randomBytes(12).toString('hex')}`])) as Record<Role, string>;
export const ROLE_PASSWORD_ENV = Object.fromEntries(ROLES.map((r) => [rolePasswordEnv(r), PASSWORDS[r]]));

/**
 * Connection options of a test client acting as `role`: its credentials plus an inbox prefix of that role
 * (the server lets a role subscribe only under `_INBOX.<role>.<id>.>`).
 */
export function as(role: Role, id = `test-${randomBytes(3).toString('hex')}`): { user: string; pass: string; inboxPrefix: string } {
  return { ...creds(role), inboxPrefix: role === 'admin' ? '_INBOX' : inboxPrefix(role as Exclude<Role, 'admin'>, id) };
}

/** Credentials of a role of the repo's nats.conf (its user and this process's password). */
export function creds(role: Role): { user: string; pass: string } {
  return { user: role, pass: PASSWORDS[role] };
}

/**
 * `files`: written beside the config copy (path relative to it -> content), e.g. an included users file.
 * `port`: listen there (a restart of a server on the port its clients reconnect to); default a free one.
 */
export async function startNatsServer(opts: { conf?: string; jetstream?: boolean; env?: Record<string, string>; files?: Record<string, string>; port?: number } = {}): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-nats-'));
  // nats-server 2.9 refuses `-sd` when the config names store_dir too, so the suite runs a copy of the
  // project's config whose store_dir points at the private temp dir (everything else unchanged).
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, withStoreDir(readFileSync(opts.conf ?? NATS_CONF, 'utf8'), join(dir, 'js')));
  for (const [rel, text] of Object.entries(opts.files ?? {})) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  let proc = await spawnServer(dir, conf, opts.port ?? -1, opts);
  const port = proc.port;
  let stopped: Promise<void> | undefined;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return proc.child.pid!;
    },
    creds,
    as,
    async restart(downMs) {
      proc.child.kill('SIGKILL');
      await proc.exited;
      await new Promise((r) => setTimeout(r, downMs));
      for (const f of readdirSync(dir)) if (f.endsWith('.ports')) rmSync(join(dir, f));
      proc = await spawnServer(dir, conf, port, opts);
    },
    describe() {
      const c = proc.child;
      const how = c.exitCode === null && c.signalCode === null ? `nats-server ${c.pid} running` : `nats-server ${c.pid} exited (${c.signalCode ?? `code ${c.exitCode}`})`;
      const said = proc.stderr.summary(5);
      return said ? `${how}; its stderr: ${said}` : how;
    },
    stop: () =>
      (stopped ??= (async () => {
        if (proc.child.exitCode === null && proc.child.signalCode === null) {
          proc.child.kill('SIGTERM');
          const t = setTimeout(() => proc.child.kill('SIGKILL'), 3000);
          await proc.exited;
          clearTimeout(t);
        }
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}

/** One nats-server process on `conf` (port -1: a free one), once it greets. */
async function spawnServer(dir: string, conf: string, wantPort: number, opts: { jetstream?: boolean; env?: Record<string, string> }): Promise<{ child: ChildProcess; exited: Promise<void>; port: number; stderr: CrashLog }> {
  const args = ['-c', conf, '-a', '127.0.0.1', '-p', String(wantPort), '--ports_file_dir', dir];
  if (opts.jetstream !== false) args.push('-js');
  const proc = spawn(existsBin(NATS_BIN) ? NATS_BIN : 'nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...ROLE_PASSWORD_ENV, ...opts.env } });
  const stderr = new CrashLog();
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => stderr.push(d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 10_000;
  let port = 0;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited (${proc.exitCode}): ${stderr.summary(40)}`);
    const f = readdirSync(dir).find((n) => n.endsWith('.ports'));
    if (f) {
      try {
        const ports = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nats?: string[] };
        const u = ports.nats?.[0];
        if (u) port = Number(new URL(u.replace(/^nats:/, 'http:')).port);
      } catch {
        // written but not complete yet
      }
      if (port && (await probeNats('127.0.0.1', port, 300))) break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!port) {
    proc.kill('SIGKILL');
    throw new Error(`nats-server did not start: ${stderr.summary(40)}`);
  }
  return { child: proc, exited, port, stderr };
}

function existsBin(p: string): boolean {
  try {
    readFileSync(p, { flag: 'r' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A NATS cluster of `n` servers on loopback (routes between them, JetStream on each), for replicated (R3)
 * buckets and streams. Each server listens on its own free port; `urls` lists them all. Server i carries the
 * server tag leasePlacementTag(i) (the lease bucket i is placed there: src/runtime/lease.ts) unless `leaseTags` is false.
 */
export async function startNatsCluster(n = 3, opts: { leaseTags?: boolean } = {}): Promise<{ urls: string[]; servers: TestNats[]; stop(): Promise<void> }> {
  // the route ports are chosen before the servers start: one taken meanwhile (by another server's client port, or
  // any process's) fails that server's start, and the whole cluster is tried again on new ports
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNatsClusterOnce(n, opts.leaseTags !== false);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startNatsClusterOnce(n: number, leaseTags: boolean): Promise<{ urls: string[]; servers: TestNats[]; stop(): Promise<void> }> {
  const routePorts: number[] = [];
  for (let i = 0; i < n; i++) routePorts.push(await freePort());
  const name = `dyn-test-${randomBytes(3).toString('hex')}`;
  const servers: TestNats[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
      const conf = readFileSync(NATS_CONF, 'utf8').replace(/^server_name: .*$/m, `server_name: ${name}-${i}${leaseTags ? `\nserver_tags: ["${leasePlacementTag(i)}"]` : ''}`) +
        `\ncluster {\n  name: ${name}\n  listen: 127.0.0.1:${routePorts[i]}\n  routes: [${routes}]\n}\n`;
      const dir = mkdtempSync(join(tmpdir(), 'dyn-natsc-'));
      writeFileSync(join(dir, 'cluster.conf'), conf);
      servers.push(await startNatsServer({ conf: join(dir, 'cluster.conf') }));
      rmSync(dir, { recursive: true, force: true });
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  return { urls: servers.map((s) => s.url), servers, stop: async () => {
    await Promise.all(servers.map((s) => s.stop()));
  } };
}
