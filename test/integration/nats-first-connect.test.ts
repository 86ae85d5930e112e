/**
 * An actor started before its NATS server accepts connections (a node agent booted before NATS, an actor restarted
 * while NATS restarts) keeps dialling until its start-up deadline instead of exiting on the first refused connect.
 * Real nats-server on a port chosen first and started late; a real `dynamollm actor node` process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errors as natsErrors } from '@nats-io/transport-node';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { Actor } from '../../src/runtime/actor.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { ACTOR_FIRST_CONNECT_MS, NatsUnreachableError } from '../../src/runtime/nats-dial.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { oneTp2InstanceConfig } from './control-harness.ts';
import { creds, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { killTree } from '../helpers/procs.ts';

const servers: TestNats[] = [];
const procs: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  killTree(procs.map((p) => p.pid ?? -1));
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('first NATS connect at start-up', () => {
  it('Bus.connect with a start-up deadline connects once the server comes up on its port', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const connecting = Bus.connect({ servers: `nats://127.0.0.1:${port}`, name: 'late-server', ...creds('admin'), log: silentLogger(), firstConnectMs: 20_000 });
    let settled = false;
    void connecting.then(() => (settled = true), () => (settled = true));
    await sleep(1500);
    expect(settled, 'settled while nothing listened').toBe(false);
    servers.push(await startNatsServer({ port }));
    const bus = await connecting;
    try {
      expect(bus.connected).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      await bus.nc.flush();
    } finally {
      await bus.close();
    }
  }, 40_000);

  it('past the deadline: NatsUnreachableError (retryable), after more than one attempt', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await Bus.connect({ servers: `nats://127.0.0.1:${port}`, name: 'no-server', log: silentLogger(), firstConnectMs: 1000 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NatsUnreachableError);
    const e = err as NatsUnreachableError;
    expect(e.retryable).toBe(true);
    expect(e.attempts).toBeGreaterThan(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(Date.now() - t0).toBeLessThan(8000);
  }, 20_000);

  it('refused credentials are not retried', async () => {
    const s = await startNatsServer();
    servers.push(s);
    const t0 = Date.now();
    const err = await Bus.connect({ servers: s.url, name: 'bad-pass', user: 'admin', pass: 'wrong', log: silentLogger(), firstConnectMs: 20_000 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(natsErrors.AuthorizationError);
    // refused after one attempt: well before the 20 s deadline that retries would run to
    console.log(`refused credentials: refused after ${Date.now() - t0} ms (deadline 20000 ms)`);
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 40_000);

  it('an actor stopped while it dials stops at once', async () => {
    const port = await freePort();
    class Idle extends Actor {
      protected override async onStart(): Promise<void> {}
    }
    const a = new Idle({ kind: 'node', id: 'dialling', servers: `nats://127.0.0.1:${port}`, log: silentLogger() });
    const started = a.start();
    await sleep(500);
    expect(a.state).toBe('starting');
    const t0 = Date.now();
    await a.stop();
    await started;
    // not at the end of its dial (ACTOR_FIRST_CONNECT_MS, 60 s)
    console.log(`an actor stopped while it dials: stopped after ${Date.now() - t0} ms`);
    expect(Date.now() - t0).toBeLessThan(ACTOR_FIRST_CONNECT_MS / 6);
    expect(a.state).toBe('stopped');
  }, 20_000);

  it('a node agent started before NATS keeps dialling and runs once NATS is up', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'dyn-first-connect-'));
    dirs.push(dir);
    const cfgPath = join(dir, 'cluster.json');
    const roles = Object.fromEntries((['cluster', 'pool', 'instance', 'node'] as const).map((r) => [r, creds(r)]));
    writeFileSync(cfgPath, JSON.stringify({ ...oneTp2InstanceConfig(5), nats: { url: `nats://127.0.0.1:${port}`, roles } }));
    const p = spawn(process.execPath, launchArgs('node', ['--id', 'n0', '--config', cfgPath]), {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info' },
    });
    procs.push(p);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    // NATS starts once the agent has found it unreachable (when that is depends on the host's load, not on a fixed
    // sleep) and a second later: the agent keeps dialling meanwhile
    const retrying = 'nats not reachable at start-up: retrying';
    for (const until = Date.now() + 30_000; Date.now() < until && !out.includes(retrying) && p.exitCode === null; ) await sleep(100);
    expect(out).toContain(retrying);
    await sleep(1000);
    expect(p.exitCode, out).toBe(null);
    servers.push(await startNatsServer({ port }));
    for (const until = Date.now() + 30_000; Date.now() < until && !out.includes('"actor running"') && p.exitCode === null; ) await sleep(200);
    expect(p.exitCode, out).toBe(null);
    expect(out).toContain('"actor running"');
    p.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);
});
