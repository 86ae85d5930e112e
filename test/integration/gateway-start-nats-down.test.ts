/**
 * A gateway process started while its NATS server is down (a replica restarted by its supervisor during a NATS
 * outage): real `dynamollm actor gateway` processes (one replica as `up` runs it: two processes with gateway.standby on
 * one port), and a real nats-server started on their NATS port only once their HTTP port is bound. The port is bound at
 * once by one of them (the other waits for it), with the API keys of the config (a request without one is refused
 * at once, not held); liveness answers, readiness (/readyz, /healthz) does not, nor does the process tell its
 * supervisor it is ready (DYNAMOLLM_READY_FD). A completion sent meanwhile is held and, once NATS and the cluster (a
 * scripted cluster intake, tokenizer and status on a Bus, as test/integration/gateway-nats.test.ts) are up, completes;
 * the replica is then ready, and both its processes tell their supervisor so. A gateway whose hold limit
 * (gateway.holdLimitMs, 3 s) passes before NATS comes answers the held request with the retryable 503 of every hold
 * that runs out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { creds, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { killTree } from '../helpers/procs.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, ClusterStatus, InferenceRequest, StatusRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';

const KEY = 'k-start-test-0001';
let natsPort: number;
let nats: TestNats | undefined;
let cluster: Bus | undefined;
let cfg: string;
const procs: ChildProcess[] = [];

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

/** A gateway process of replica `id` on `port`, its NATS at natsPort; `log()` what it logged, `ready()` whether it told its supervisor it is ready. */
function gateway(id: string, port: number, extra: string[] = []): ChildProcess & { log: () => string; ready: () => boolean } {
  const p = spawn(process.execPath, launchArgs('gateway', ['--id', id, '--config', cfg, '--set', `port=${port}`, ...extra]), {
    stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0', NATS_URL: `nats://127.0.0.1:${natsPort}`, NATS_USER: 'gateway', NATS_PASSWORD: creds('gateway').pass, DYNAMOLLM_READY_FD: '3' },
  });
  let out = '';
  let ready = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  (p.stdio[3] as Readable).on('data', (d: Buffer) => (ready += d.toString())).on('error', () => {});
  procs.push(p);
  return Object.assign(p, { log: () => out, ready: () => ready === 'ready\n' });
}

/** GET `path`: its status (0: refused or no answer within 2 s). */
const get = (port: number, path: string, key?: string) =>
  fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000), ...(key ? { headers: { authorization: `Bearer ${key}` } } : {}) }).then((r) => r.status, () => 0);

/** POST /v1/completions: status, Retry-After, body, and ms from send to answer. */
async function complete(port: number, key: string | undefined, prompt: string): Promise<{ status: number; retryAfter: string | null; body: Record<string, unknown>; ms: number }> {
  const t0 = Date.now();
  const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ model: 'llama2-70b', prompt, max_tokens: 3 }),
    signal: AbortSignal.timeout(90_000),
  });
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as Record<string, unknown>, ms: Date.now() - t0 };
}

async function until<T>(f: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The scripted cluster on the started NATS: intake streaming `maxTokens` tokens, the tokenizer, and a status with one ready instance. */
async function startCluster(url: string): Promise<Bus> {
  const bus = await Bus.connect({ servers: url, name: 'fake-cluster', ...creds('admin'), log: silentLogger() });
  bus.serve(subjects.clusterIntake(), InferenceRequest, Admission, (req) => {
    setTimeout(() => {
      for (let i = 0; i < req.maxTokens; i++) bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: i, text: ` t${i}`, tokens: 1, pool: 'pool-SS', type: 'SS' });
      bus.publish(req.streamSubject, TokenChunk, {
        v: 1, id: req.id, seq: req.maxTokens, text: '', tokens: 0, done: true, finishReason: 'length',
        usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 1.5, energySource: 'modelled' },
      });
    }, 5);
    return Promise.resolve({ v: 1 as const, id: req.id, ok: true, type: 'SS' as const, pool: 'pool-SS', instance: 'i-0' });
  }, { queue: CLUSTER_INTAKE_QUEUE });
  const tokenize = localTokenizer(4096);
  bus.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => tokenize(req), { queue: TOKENIZER_QUEUE });
  bus.serve(subjects.clusterStatus(), StatusRequest, ClusterStatus, () => Promise.resolve({
    v: 1 as const, leader: 'cm-test', atMs: Date.now(),
    pools: [{ id: 'pool-SS', types: ['SS' as const], gpus: 1, instances: [{ id: 'i-0', tp: 1, gpus: [0], clockMhz: 1980, powerW: 300, energyJ: 0, queued: 0, running: 0, state: 'ready' }] }],
    freeGpus: 7, powerW: 300, energyJ: 0,
  }));
  return bus;
}

beforeAll(async () => {
  natsPort = await freePort(); // nothing listens there until the test starts NATS
  const dir = mkdtempSync(join(tmpdir(), 'dyn-gw-start-'));
  cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0, apiKeys: [KEY] } }));
});

afterAll(async () => {
  for (const p of procs) if (p.pid && alive(p)) killTree([p.pid]);
  await cluster?.close();
  await nats?.stop();
});

describe('a gateway started while NATS is down', () => {
  it('binds its port at once, holds a request until NATS and the cluster are up, then serves it; a hold past its limit is a retryable 503', async () => {
    const port = await freePort();
    const shortPort = await freePort();
    const t0 = Date.now();
    // replica gw-a as `up` runs it: two processes with gateway.standby on its port; gw-b a lone process with a short hold limit
    const pair = [gateway('gw-a', port, ['--set', 'standby=true']), gateway('gw-a', port, ['--set', 'standby=true'])];
    const short = gateway('gw-b', shortPort, ['--set', 'holdLimitMs=3000']);
    // bound while no NATS server runs (a gateway that binds only once connected never answers here)
    await until(async () => ((await get(port, '/livez')) === 200 ? true : undefined), 60_000, 'gw-a to bind its port');
    const boundMs = Date.now() - t0;
    await until(async () => ((await get(shortPort, '/livez')) === 200 ? true : undefined), 60_000, 'gw-b to bind its port');
    // one process of gw-a serves the port, the other waits for it (neither connected)
    const gw = await until(() => pair.find((p) => p.log().includes('gateway listening')), 10_000, 'the process of gw-a that bound');
    const standby = pair.find((p) => p !== gw)!;
    await until(() => (/standby: port \d+ is served by another process/.test(standby.log()) ? true : undefined), 30_000, 'the other process of gw-a to wait for the port');
    expect(standby.log()).not.toMatch(/gateway listening/);
    // the bind's own log line: before any NATS connection, its time since the process began (module loading included)
    const listening = gw.log().split('\n').filter((l) => l.includes('gateway listening')).map((l) => JSON.parse(l) as { natsConnected: boolean; sinceProcessStartMs: number });
    expect(listening).toHaveLength(1);
    expect(listening[0]!.natsConnected).toBe(false);
    console.log(`a gateway process answered on its port ${boundMs} ms after its spawn (bound ${listening[0]!.sinceProcessStartMs} ms after its process began), NATS down`);
    // alive, not ready: neither to a load balancer nor to its supervisor
    expect(await get(port, '/readyz')).toBe(503);
    expect(await get(port, '/healthz')).toBe(503);
    expect(gw.ready()).toBe(false);
    expect(standby.ready()).toBe(false);
    // the API keys hold before anything is connected: a request without one is refused at once, not held
    const noKey = await complete(port, undefined, 'hello');
    expect(noKey.status).toBe(401);
    expect(noKey.ms).toBeLessThan(2000);

    // held: the short hold limit runs out while NATS is still down (the retryable 503 every hold gets), the other waits
    const shortHeld = complete(shortPort, KEY, 'held too long');
    const heldAt = Date.now();
    const held = complete(port, KEY, 'hello from a held request');
    const expired = await shortHeld;
    expect(expired.status).toBe(503);
    expect(expired.retryAfter).toBe('1');
    expect(expired.body.error).toMatchObject({ code: 503, type: 'ServiceUnavailableError' });
    expect((expired.body.error as { message: string }).message).toMatch(/hold limit/);
    expect(expired.ms).toBeGreaterThanOrEqual(2900);
    expect(expired.ms).toBeLessThan(15_000);
    expect(alive(gw)).toBe(true);
    expect(alive(short)).toBe(true);

    // NATS and the cluster come: the held request completes, and the replica is ready
    nats = await startNatsServer({ port: natsPort });
    const natsAt = Date.now();
    cluster = await startCluster(nats.url);
    const served = await held;
    console.log(`the held request was answered ${served.ms} ms after it was sent, ${heldAt + served.ms - natsAt} ms after NATS answered`);
    expect(served.status).toBe(200);
    expect((served.body.choices as { text: string }[])[0]!.text).toBe(' t0 t1 t2');
    await until(async () => ((await get(port, '/readyz')) === 200 ? true : undefined), 20_000, 'gw-a to be ready');
    expect(await get(port, '/healthz')).toBe(200);
    // both processes of gw-a are ready for their supervisor once connected: the one serving, the one waiting for the port
    await until(() => (gw.ready() && standby.ready() ? true : undefined), 10_000, 'both processes of gw-a to tell their supervisor they are ready');
    expect(alive(standby)).toBe(true);
    // where the process's time went: loading its modules and building the actor, then the bind (no NATS wait in between)
    const running = gw.log().split('\n').filter((l) => l.includes('"actor running"')).map((l) => JSON.parse(l) as { startup?: Record<string, number> })[0];
    const built = Object.entries(running?.startup ?? {}).filter(([k]) => k !== 'connect' && k !== 'running').reduce((t, [, ms]) => t + ms, 0);
    console.log(`gw-a: modules loaded and actor built ${Math.round(built)} ms after its process began, port bound ${listening[0]!.sinceProcessStartMs - Math.round(built)} ms later`);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.text());
    expect(Number(/^dynamollm_gateway_held_for_first_connect_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    // and a request now is served at once
    const after = await complete(port, KEY, 'hello again');
    expect(after.status).toBe(200);
  }, 120_000);
});
