/**
 * Scale-in with request migration, live (config scaling.drainMigrateS; actors/instance-manager/drain-migrate.ts): on a
 * real nats-server, real actor processes (cluster, pool and node managers, two instance managers) and emulated
 * engines, the gateway the real NatsBackend routing itself. A 'drain' of the instance serving a long direct request
 * (more than drainMigrateS, 4 s here, of decode left) ends its leg with a retryable error and the gateway continues it on the
 * peer: the client sees one stream with every token once, the second leg on the other instance, and the drained
 * instance runs nothing soon after (it would otherwise hold the request for its whole decode). A short request is
 * left to finish where it is. The decode left is estimated from the request's predicted output (src/policy
 * remainingTokens), which the gateway's router predicts from the outputs of the requests it served: one request of
 * the long one's length served whole first teaches it. The same drain while the gateway's native data plane carries
 * the stream (its HTTP layer on the plane, test/helpers/native-http.ts) continues it on the peer as well.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completionRequest as request, emulatedClusterConfig, expectOneStream, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { sleep } from '../helpers/wait.ts';
import { buildNativePlane, nativeHttpGateway } from '../helpers/native-http.ts';
import type { Harness } from './control-harness.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { Ack, InstanceCommand, InstanceStatus, RequestRecord, controlSubjects, subjects, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

let cluster: GatewayCluster;
let h: Harness;
let backend: NatsBackend;
const records = new Map<string, Rec>();
const statuses = new Map<string, InstanceStatus>();

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(2, { scaling: { drainMigrateS: 4 } }),
    ready: 2, readyTimeoutMs: 60_000,
    gatewayId: 'gw-drain',
    backend: () => ({ chunkTimeoutMs: 20_000 }),
  });
  ({ h, backend } = cluster);
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.set(r.id, r), { capacity: 4096 });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.set(s.id, s), { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

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

describe('a drained instance hands its long requests to its peer (scaling.drainMigrateS)', () => {
  it('a long request continues on the peer: one stream, every token once; the drained instance runs nothing soon after', async () => {
    // the router's predictor learns this prompt's output (300 tokens) from one request served whole: the drained
    // request is predicted at 300 tokens, 270 left at the drain (a fresh predictor's 50 would leave it 20: it would stay)
    const warm = `dm-warm-${Date.now()}`, warmChunks: TokenChunk[] = [];
    for await (const c of await backend.submit(request(warm, 300), new AbortController().signal)) warmChunks.push(c);
    expectOneStream(warmChunks, 300);
    for (const until = Date.now() + 5000; !records.has(warm) && Date.now() < until; await sleep(100));
    expect(records.get(warm)?.completionTokens).toBe(300);
    const migrated = backend.counters.migrated;
    const { chunks, victim, drainedAtMs } = await drainedMidStream(`dm-long-${Date.now()}`, 300, 30);
    try {
    expectOneStream(chunks, 300);
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
  }, 120_000);

  it('a request with less than drainMigrateS of decode left finishes on the drained instance', async () => {
    await h.waitReady(2, 30_000);
    const migrated = backend.counters.migrated;
    // 30 tokens: after 15, 15 left, under the 4-s threshold at any TBT up to 260 ms
    const { chunks, victim } = await drainedMidStream(`dm-short-${Date.now()}`, 30, 15);
    try {
      expectOneStream(chunks, 30);
      expect(backend.counters.migrated).toBe(migrated);
      expect(new Set(chunks.map((c) => c.instance).filter((x) => x))).toEqual(new Set([victim]));
    } finally {
      await command(victim, 'resume');
    }
  }, 90_000);

  it('on the native data plane through the gateway: a drain mid-span continues the stream on the peer, every token once', async () => {
    await h.waitReady(2, 30_000);
    // the router's predictor learns the prompt's output (300 tokens) again (the short case served it 30)
    const warm = `dm-nwarm-${Date.now()}`, warmChunks: TokenChunk[] = [];
    for await (const c of await backend.submit(request(warm, 300), new AbortController().signal)) warmChunks.push(c);
    expectOneStream(warmChunks, 300);
    for (const until = Date.now() + 5000; !records.has(warm) && Date.now() < until; await sleep(100));
    const plane = await buildNativePlane();
    const gw = await nativeHttpGateway(backend, plane);
    let victim = '';
    try {
      const migrated = backend.counters.migrated;
      const spans = plane.spans;
      let during = -1;
      let drained: Promise<unknown> | undefined;
      const got = await gw.stream(300, (words, id) => {
        const serving = gw.serving.get(id);
        if (victim || words < 30 || !serving) return;
        // the drain lands while the native thread carries the stream: its leg's end takes the stream back
        during = plane.active;
        victim = serving;
        drained = command(victim, 'drain');
      });
      await drained;
      expect(got.error).toBeUndefined();
      expect(victim).not.toBe('');
      expect(during).toBe(1);
      expect(plane.spans).toBeGreaterThan(spans);
      console.log(`native data plane: ${plane.spans - spans} spans, ${plane.carried} events carried natively`);
      expect(plane.active).toBe(0);
      expect(backend.counters.migrated).toBe(migrated + 1);
      expect(got.text.trim().split(/\s+/).length).toBe(300);
      expect(got.finishes).toEqual(['length']);
      expect(got.usage?.completion_tokens).toBe(300);
      let leg2: Rec | undefined;
      for (const until = Date.now() + 5000; !leg2 && Date.now() < until; await sleep(100)) leg2 = records.get(`${got.id}-m1`);
      expect(leg2?.outcome).toBe('ok');
      expect(leg2?.instance).not.toBe(victim);
    } finally {
      await gw.close();
      if (victim) await command(victim, 'resume');
    }
  }, 120_000);
});
