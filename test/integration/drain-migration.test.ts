/**
 * Scale-in with request migration, live (config scaling.drainMigrateS; actors/instance-manager/drain-migrate.ts): on a
 * real nats-server, real actor processes (cluster, pool and node managers, two instance managers) and emulated
 * engines, the gateway the real NatsBackend routing itself. A 'drain' of the instance serving a long direct request
 * (more than drainMigrateS, 4 s here, of decode left) ends its leg with a retryable error and the gateway continues it on the
 * peer: the client sees one stream with every token once, the second leg on the other instance, and the drained
 * instance runs nothing soon after (it would otherwise hold the request for its whole decode). A short request is
 * left to finish where it is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayRouter } from '../../actors/gateway/router.ts';
import { loadConfig, profilePathOf } from '../../actors/common/config.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { Ack, InstanceCommand, InstanceStatus, RequestRecord, controlSubjects, subjects, type InferenceRequest, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

const MODEL = 'llama3.1-8b';
const PROMPT = 'Tell me about energy efficient inference in large clusters.';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
let router: GatewayRouter;
const records = new Map<string, Rec>();
const statuses = new Map<string, InstanceStatus>();

beforeAll(async () => {
  h = await startHarness({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    // a quarter of real time: ~30 ms per token, a 300-token answer takes ~9 s
    engine: { kind: 'emulator', timeScale: 0.25, healthDeadlineMs: 30_000, initialTp: 1, maxInEngine: 16, maxQueued: 64 },
    scaling: { drainMigrateS: 4 },
  });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  await h.waitReady(2, 60_000);
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-drain'), name: 'gw-drain', log: silentLogger() });
  const config = loadConfig(h.cfgPath);
  router = new GatewayRouter(gw, config, loadProfile(profilePathOf(config)));
  router.start();
  backend = new NatsBackend(gw, { chunkTimeoutMs: 20_000, router });
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => {
    records.set(r.id, r);
    router.learn(r);
  }, { capacity: 4096 });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.set(s.id, s), { capacity: 4096 });
  for (const until = Date.now() + 10_000; !router.routable() && Date.now() < until;) await sleep(100);
}, 90_000);

afterAll(async () => {
  router?.stop();
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

function request(id: string, maxTokens: number): InferenceRequest {
  const now = Date.now();
  return {
    v: 1, id, model: MODEL, kind: 'completion', prompt: PROMPT, inputTokens: 13, maxTokens, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id),
  };
}

const command = (instance: string, op: 'drain' | 'resume') => h.bus.request(subjects.instanceControl(instance), InstanceCommand, { v: 1, op, reason: 'test' }, Ack, { timeoutMs: 5000 });

/** Streams `maxTokens` tokens and drains the serving instance once `drainAt` tokens arrived; the chunks, the drained instance, when. */
async function drainedMidStream(id: string, maxTokens: number, drainAt: number): Promise<{ chunks: TokenChunk[]; victim: string; drainedAtMs: number }> {
  const chunks: TokenChunk[] = [];
  let n = 0, victim = '', drainedAtMs = 0;
  for await (const c of await backend.submit(request(id, maxTokens), new AbortController().signal)) {
    chunks.push(c);
    n += c.tokens;
    if (!victim && n >= drainAt && c.instance) {
      victim = c.instance;
      drainedAtMs = Date.now();
      await command(victim, 'drain');
    }
  }
  return { chunks, victim, drainedAtMs };
}

function oneStream(chunks: TokenChunk[], maxTokens: number): void {
  expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
  const last = chunks.at(-1)!;
  expect(last.error, JSON.stringify(last.error)).toBeUndefined();
  expect(last.done).toBe(true);
  expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBe(maxTokens);
  expect(chunks.map((c) => c.text).join('').trim().split(/\s+/).length).toBe(maxTokens);
  expect(last.usage!.completionTokens).toBe(maxTokens);
}

describe('a drained instance hands its long requests to its peer (scaling.drainMigrateS)', () => {
  it('a long request continues on the peer: one stream, every token once; the drained instance runs nothing soon after', async () => {
    const migrated = backend.counters.migrated;
    const { chunks, victim, drainedAtMs } = await drainedMidStream(`dm-long-${Date.now()}`, 300, 30);
    try {
    oneStream(chunks, 300);
    expect(backend.counters.migrated).toBe(migrated + 1);
    const instances = [...new Set(chunks.map((c) => c.instance).filter((x) => x))];
    expect(instances[0]).toBe(victim);
    expect(instances.at(-1)).not.toBe(victim);
    // the drained instance's status shows nothing running within a few status intervals of the drain, well before
    // the ~8 s the rest of the answer took on the peer
    const idleAt = statuses.get(victim)?.running === 0 && statuses.get(victim)?.state === 'draining' ? Date.now() : 0;
    expect(idleAt).toBeGreaterThan(0);
    let leg2: Rec | undefined;
    for (const until = Date.now() + 5000; !leg2 && Date.now() < until; await sleep(100)) leg2 = records.get(`${chunks[0]!.id}-m1`);
    expect(leg2?.outcome).toBe('ok');
    expect(leg2?.instance).not.toBe(victim);
    expect(leg2!.completionTokens).toBeGreaterThan(200);
    console.log(`drain -> peer leg: ${leg2?.completionTokens} tokens; stream ended ${Date.now() - drainedAtMs} ms after the drain`);
    } finally {
      await command(victim, 'resume');
    }
  }, 90_000);

  it('a request with less than drainMigrateS of decode left finishes on the drained instance', async () => {
    await h.waitReady(2, 30_000);
    const migrated = backend.counters.migrated;
    // 30 tokens: after 15, 15 left, under the 4-s threshold at any TBT up to 260 ms
    const { chunks, victim } = await drainedMidStream(`dm-short-${Date.now()}`, 30, 15);
    try {
      oneStream(chunks, 30);
      expect(backend.counters.migrated).toBe(migrated);
      expect(new Set(chunks.map((c) => c.instance).filter((x) => x))).toEqual(new Set([victim]));
    } finally {
      await command(victim, 'resume');
    }
  }, 90_000);
});
