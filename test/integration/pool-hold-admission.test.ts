/**
 * A pool hold that outlasts the gateway's intake budget (issue 13, "retries, not timeouts"), on a real
 * nats-server with the project's permissions and real actor processes (a cluster manager, two pool managers,
 * a node agent, its instance manager and emulated engine). The gateway is the real NatsBackend on a
 * gateway-role connection, with an intake budget (admitTimeoutMs) of 2 s: shorter than the engine's start
 * (startupDelayMs 6 s), so every request below is held by the pool for longer than that budget.
 *
 * - The engine is still loading: the pool holds the request (capacity is coming) and says so on the request's
 *   stream subject (TokenChunk.hold); the gateway keeps waiting past its 2 s and the request completes, every
 *   token once, admitted once the engine is ready.
 * - The instance manager is SIGKILLed (the node agent starts it again, its engine loads for 6 s), and the pool
 *   leader holding the request is SIGKILLed too: the standby pool manager takes the lead, holds the request
 *   again when the cluster's dispatch is retried, and the request completes.
 *
 * Without the hold notice each request fails after 2 s with the intake's timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { PoolStatus, controlSubjects, subjects, type InferenceRequest, type TokenChunk } from '../../protocols/index.ts';

const POOL = 'pool-all';
const STARTUP_MS = 6000;
const ADMIT_MS = 2000;
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
const leaders: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: POOL, types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, startupDelayMs: STARTUP_MS, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  });
  h.bus.subscribe(controlSubjects.poolStatus(POOL), PoolStatus, (s) => {
    if (leaders.at(-1) !== s.leader) leaders.push(s.leader);
  }, { capacity: 256 });
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-hold'), name: 'gw-hold', log: silentLogger() });
  backend = new NatsBackend(gw, { admitTimeoutMs: ADMIT_MS, admitAttemptMs: 1000, chunkTimeoutMs: 30_000 });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('pool', 'pm-1');
  h.startActor('node', 'n0');
}, 60_000);

afterAll(async () => {
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

async function until<T>(f: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** One request through the gateway's backend: how long its admission took, and its chunks (or the error that ended it). */
async function send(tag: string): Promise<{ admitMs: number; chunks: TokenChunk[]; error?: string }> {
  const id = `${tag}-${Math.random().toString(36).slice(2, 8)}`;
  const now = Date.now();
  const req: InferenceRequest = {
    v: 1, id, model: 'llama3.1-8b', kind: 'completion', prompt: 'hello '.repeat(10), inputTokens: 12, maxTokens: 20, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream(id),
  };
  const chunks: TokenChunk[] = [];
  try {
    const stream = await backend.submit(req, new AbortController().signal);
    const admitMs = Date.now() - now;
    for await (const c of stream) chunks.push(c);
    return { admitMs, chunks };
  } catch (err) {
    return { admitMs: Date.now() - now, chunks, error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

function complete(r: { chunks: TokenChunk[]; error?: string }): void {
  expect(r.error).toBeUndefined();
  const last = r.chunks[r.chunks.length - 1]!;
  expect(last.error).toBeUndefined();
  expect(last.done).toBe(true);
  expect(r.chunks.reduce((n, c) => n + c.tokens, 0)).toBe(20);
  expect(r.chunks.map((c) => c.seq)).toEqual(r.chunks.map((_, k) => k));
}

describe('a pool hold longer than the gateway intake budget', () => {
  it('the engine still loading: the request is held past admitTimeoutMs and completes', async () => {
    // the pool leads, its instance is starting (its engine loads for STARTUP_MS): send now
    await until(async () => (await h.status())?.pools.find((p) => p.id === POOL)?.instances.some((i) => i.state === 'starting') || undefined, 30_000, 'a starting instance');
    const r = await send('load');
    complete(r);
    expect(r.admitMs).toBeGreaterThan(ADMIT_MS);
    expect(backend.counters.poolHolds).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('the instance manager and then the pool leader holding the request SIGKILLed: the standby holds it again and it completes', async () => {
    await h.waitReady(1);
    const leader = await until(() => leaders.at(-1), 10_000, 'a pool leader');
    const pid = (await until(() => h.pidsOf('actor instance')[0], 5000, 'the instance manager'));
    process.kill(pid, 'SIGKILL');
    // the node agent starts it again under the same id: its engine loads for STARTUP_MS
    await until(async () => (await h.status())?.pools.find((p) => p.id === POOL)?.instances.some((i) => i.state !== 'ready') || undefined, 10_000, 'the instance not ready');
    const holds = backend.counters.poolHolds;
    const pending = send('lead');
    await until(() => (backend.counters.poolHolds > holds ? true : undefined), 5000, 'the hold notice');
    h.procs.get(leader)!.kill('SIGKILL');
    const r = await pending;
    complete(r);
    expect(r.admitMs).toBeGreaterThan(ADMIT_MS);
    // the request was held by the standby after the leader's death
    expect(leaders.at(-1)).not.toBe(leader);
  }, 90_000);
});
