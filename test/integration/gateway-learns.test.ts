/**
 * The gateway's output predictor learns from the ends of the legs it routed, as its backend streams them, with no
 * RequestRecord (router.ts learn): on a real nats-server with the project's permissions, real actor processes (cluster,
 * pool and node managers, one instance manager) and an emulated engine, a gateway (NatsBackend with its GatewayRouter,
 * subscribed to no record) streams requests on the direct data path and on the NATS relay; each one that ends ok is
 * one observation of the predictor, with the tokens the engine made, and a cancelled one is none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortAfter, completionRequest, emulatedClusterConfig, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import type { InferenceRequest } from '../../protocols/index.ts';

let cluster: GatewayCluster;

const request = (id: string, maxTokens: number) => completionRequest(id, maxTokens, { prompt: 'Tell me about energy efficient inference.', inputTokens: 9 });

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(1),
    ready: 1, readyTimeoutMs: 60_000,
    gatewayId: 'gw-learn',
    backend: () => ({ chunkTimeoutMs: 20_000 }),
    // routed by the gateway itself (its own routing: the legs the predictor learns from), not by the intake
    routed: { until: (r) => (r.plan({ ...request(`gl-probe-${Date.now()}`, 1), probe: true })?.pools.length ?? 0) > 0, timeoutMs: 10_000, what: () => 'a route at the gateway' },
  });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

async function tokensOf(b: NatsBackend, req: InferenceRequest): Promise<number> {
  let n = 0;
  for await (const c of await b.submit(req, new AbortController().signal)) n += c.tokens;
  return n;
}

describe('the gateway predictor learns at the stream end', () => {
  it('learns each routed leg that ended ok, on the direct data path and on the relay, and not a cancelled one', async () => {
    const { router, backend, gw, config } = cluster;
    const relay = new NatsBackend(gw, { chunkTimeoutMs: 20_000, router, direct: false, directAdmitMs: config.timeouts.dispatchMs });
    try {
      const before = router.predictorAccuracy().total;
      expect(await tokensOf(backend, request('gl-direct-1', 40))).toBe(40);
      expect(await tokensOf(backend, request('gl-direct-2', 40))).toBe(40);
      expect(router.predictorAccuracy().total).toBe(before + 2);
      expect(await tokensOf(relay, request('gl-relay-1', 40))).toBe(40);
      expect(router.predictorAccuracy().total).toBe(before + 3);
      // a client that goes away: its leg did not end ok, the predictor learns nothing from it
      await abortAfter(backend, request('gl-cancel', 400), 3);
      expect(router.predictorAccuracy().total).toBe(before + 3);
      // it learned the tokens the engine made: 40 tokens is the short class, predicted for the same prompt from now on
      const next = router.plan(request('gl-next', 400))!;
      expect(next.req.predictedOutputTokens).toBe(40);
    } finally {
      relay.close();
    }
  }, 60_000);
});
