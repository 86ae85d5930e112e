/**
 * A gateway needs no RequestRecord, on a real nats-server with the project's permissions, real actor processes
 * (cluster, pool and node managers, one instance manager) and an emulated engine:
 * - its output predictor learns from the ends of the legs it routed, as its backend streams them (router.ts learn):
 *   a gateway (NatsBackend with its GatewayRouter, subscribed to no record) streams requests on the direct data path
 *   and on the NATS relay; each one that ends ok is one observation of the predictor, with the tokens the engine made,
 *   and a cancelled one is none;
 * - the instance manager's telemetry carries the sums of the records it published (InstanceTelemetry.requests), and the
 *   gateway's Prometheus series and live dashboard fed by that telemetry alone (as GatewayActor feeds them) count what
 *   the records say: requests by outcome, rejections, SLO, TTFT histogram, energy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortAfter, completionRequest, emulatedClusterConfig, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { InstanceTelemetry, RequestRecord, subjects, type InferenceRequest, type RequestRecord as Rec } from '../../protocols/index.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { waitFor } from '../helpers/wait.ts';

let cluster: GatewayCluster;
/** the records the instance published (a consumer of the records, as billing is), and a gateway's view fed by its telemetry only */
const records = new Map<string, Rec>();
const metrics = new TelemetryMetrics({ processMetrics: false });
const live = new LiveState();
let lastCounted = 0;

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
  const { h } = cluster;
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.set(r.id, r), { capacity: 4096 });
  h.bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => {
    metrics.onInstance(t, Date.now());
    live.onInstance(t, Date.now());
    lastCounted = (t.requests?.groups ?? []).reduce((n, g) => n + Object.values(g.outcomes).reduce((a, b) => a + (b ?? 0), 0), 0);
  }, { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

async function tokensOf(b: NatsBackend, req: InferenceRequest): Promise<number> {
  let n = 0;
  for await (const c of await b.submit(req, new AbortController().signal)) n += c.tokens;
  return n;
}

describe('a gateway without RequestRecords', () => {
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

  it("counts the cluster's requests from the instance's telemetry as the records say", async () => {
    const { backend } = cluster;
    // the first test's requests, and more: two of 8 tokens, and one the client leaves
    expect(await tokensOf(backend, request('gc-1', 8))).toBe(8);
    expect(await tokensOf(backend, request('gc-2', 8))).toBe(8);
    await abortAfter(backend, request('gc-cancel', 400), 3);
    await waitFor(() => (records.size >= 7 && lastCounted === records.size ? true : undefined), 15_000, 'the instance telemetry counting every record');
    const recs = [...records.values()];
    const fams = parsePrometheusText(await metrics.text());
    const sum = (name: string, fam: string, f: (l: Record<string, string>) => boolean) => fams.get(fam)!.samples.filter((s) => s.name === name && f(s.labels)).reduce((a, s) => a + s.value, 0);
    const byOutcome = (o: string) => recs.filter((r) => r.outcome === o).length;
    for (const o of ['ok', 'cancelled']) expect(sum('dynamollm_requests_total', 'dynamollm_requests_total', (l) => l.outcome === o), o).toBe(byOutcome(o));
    expect(byOutcome('ok')).toBe(5);
    expect(byOutcome('cancelled')).toBe(2);
    expect(sum('dynamollm_requests_total', 'dynamollm_requests_total', () => true)).toBe(recs.length);
    expect(sum('dynamollm_request_energy_joules_total', 'dynamollm_request_energy_joules_total', () => true)).toBeCloseTo(recs.reduce((a, r) => a + r.energyJ, 0), 6);
    const oks = recs.filter((r) => r.outcome === 'ok');
    expect(sum('dynamollm_request_ttft_seconds_count', 'dynamollm_request_ttft_seconds', () => true)).toBe(oks.filter((r) => r.ttftMs !== undefined).length);
    expect(sum('dynamollm_request_ttft_seconds_sum', 'dynamollm_request_ttft_seconds', () => true)).toBeCloseTo(oks.reduce((a, r) => a + (r.ttftMs ?? 0) / 1000, 0), 6);
    expect(sum('dynamollm_slo_violations_total', 'dynamollm_slo_violations_total', () => true)).toBe(oks.filter((r) => !r.sloMet).length);
    // the live dashboard's counts
    const snap = live.snapshot();
    expect(snap.requests).toEqual({ ok: byOutcome('ok'), rejected: 0, failed: byOutcome('failed'), cancelled: byOutcome('cancelled'), timed_out: byOutcome('timed_out') });
    const met = Object.values(snap.slo).reduce((a, s) => a + s.met, 0);
    expect([Object.values(snap.slo).reduce((a, s) => a + s.total, 0), met]).toEqual([oks.length, oks.filter((r) => r.sloMet).length]);
  }, 60_000);
});
