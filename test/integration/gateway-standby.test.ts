/**
 * A gateway replica's standby process (gateway.standby, `dynamollm up --gateway-standbys 1`), on real `dynamollm
 * actor gateway` processes against a real nats-server: two processes of one replica (same id, same port) started
 * together, one serves the port and the other waits; SIGKILL the one that serves and the port answers again from
 * the standby, with no process started after the kill. Without standby a second process on a port in use fails its
 * start (exit code 1) instead of waiting. A standby told to stop while waiting exits 0 at once. Both processes of a
 * replica tell their supervisor they are ready (its restart backoff counts their deaths as stable runs): the serving
 * one once running, the standby once waiting for the port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor as until } from '../helpers/wait.ts';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { killTree } from '../helpers/procs.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';

let nats: TestNats;
let cfg: string;
const procs: ChildProcess[] = [];

/** `GET /healthz` on a fresh connection: its status (0: refused or no answer). */
function servedBy(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * A gateway process of replica gw-s on `port`; `log()` is what it has logged (info and above), `ready()` whether it
 * said it was ready on the readiness descriptor a Supervisor gives it (src/runtime/ready-notify.ts).
 */
function gateway(port: number, standby: boolean): ChildProcess & { log: () => string; ready: () => boolean } {
  const p = spawn(process.execPath, launchArgs('gateway', ['--id', 'gw-s', '--config', cfg, '--set', `port=${port}`, ...(standby ? ['--set', 'standby=true'] : [])]), {
    stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0', NATS_URL: nats.url, NATS_USER: 'gateway', NATS_PASSWORD: nats.creds('gateway').pass, DYNAMOLLM_READY_FD: '3' },
  });
  let out = '';
  let ready = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  (p.stdio[3] as Readable).on('data', (d: Buffer) => (ready += d.toString())).on('error', () => {});
  procs.push(p);
  return Object.assign(p, { log: () => out, ready: () => ready === 'ready\n' });
}

/** the gateway actor's drain grace (actors/gateway/main.ts drainGraceMs): a start in progress is waited for this long. */
const DRAIN_GRACE_MS = 15_000;

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

/** The process (of `ps`) that holds `port`'s listening socket, by the socket inode in /proc/net/tcp. */
async function listener<P extends ChildProcess>(port: number, ps: P[]): Promise<P | undefined> {
  const { readFileSync, readdirSync, readlinkSync } = await import('node:fs');
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inode = readFileSync('/proc/net/tcp', 'utf8').split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[1]?.endsWith(`:${hex}`) && f[3] === '0A')?.[9];
  if (!inode) return undefined;
  return ps.find((p) => {
    try {
      return readdirSync(`/proc/${p.pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${p.pid}/fd/${fd}`) === `socket:[${inode}]`;
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  });
}

beforeAll(async () => {
  nats = await startNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'dyn-gw-standby-'));
  cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0 } }));
}, 30_000);

afterAll(async () => {
  for (const p of procs) if (p.pid && alive(p)) killTree([p.pid]);
  await nats?.stop();
});

describe('gateway standby', () => {
  it('the standby takes the port over when the serving process is SIGKILLed; nothing is restarted', async () => {
    const port = await freePort();
    const a = gateway(port, true);
    const b = gateway(port, true);
    // one of them serves, the other waits (both alive)
    await until(async () => ((await servedBy(port)) !== 0 ? true : undefined), 60_000, 'the port to serve');
    const serving = await until(() => listener(port, [a, b]), 10_000, 'the listening process');
    const standby = serving === a ? b : a;
    // both are ready for their supervisor: the serving one running, the standby started and waiting for the port
    await until(() => (serving.ready() && standby.ready() ? true : undefined), 30_000, 'both processes to say they are ready');
    expect(/standby: port \d+ is served by another process/.test(standby.log())).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    expect(alive(standby)).toBe(true);
    expect(await listener(port, [a, b])).toBe(serving);
    serving.kill('SIGKILL');
    await until(async () => ((await servedBy(port)) !== 0 ? true : undefined), 30_000, 'the standby to serve');
    expect(await listener(port, [a, b])).toBe(standby);
    expect(alive(standby)).toBe(true);
  }, 120_000);

  it('without standby, a second process on a port in use fails its start', async () => {
    const port = await freePort();
    const first = gateway(port, false);
    await until(async () => ((await servedBy(port)) !== 0 ? true : undefined), 60_000, 'the port to serve');
    const second = gateway(port, false);
    const code = await new Promise<number | null>((r) => second.once('exit', (c) => r(c)));
    expect(code).not.toBe(0);
    expect(alive(first)).toBe(true);
    first.kill('SIGKILL');
  }, 120_000);

  it('a standby told to stop while it waits exits 0 without waiting for the port', async () => {
    const port = await freePort();
    const first = gateway(port, true);
    await until(async () => ((await servedBy(port)) !== 0 ? true : undefined), 60_000, 'the port to serve');
    const waiting = gateway(port, true);
    // started (its signal handlers in place, NATS connected) and waiting for the port before it is stopped
    await until(() => (/standby: port \d+ is served by another process/.test(waiting.log()) ? true : undefined), 60_000, 'the standby to wait');
    expect(alive(waiting)).toBe(true);
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => waiting.once('exit', (c) => r(c)));
    waiting.kill('SIGTERM');
    expect(await exited).toBe(0);
    // not after the drain's grace for a start in progress: the wait ends when the drain begins (a standby whose
    // wait went on would exit once the grace ran out, DRAIN_GRACE_MS after the SIGTERM at the earliest)
    const tookMs = Date.now() - t0;
    console.log(`a waiting standby exited ${tookMs} ms after its SIGTERM (drain grace ${DRAIN_GRACE_MS} ms)`);
    expect(tookMs).toBeLessThan(DRAIN_GRACE_MS);
    expect(alive(first)).toBe(true);
    first.kill('SIGKILL');
  }, 120_000);
});
