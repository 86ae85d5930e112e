/**
 * A gateway replica run as worker processes answers /metrics for all of them (aggregateWorkerMetrics,
 * src/telemetry/metrics.ts): what each worker served (dynamollm_gateway_*, histograms and the per-token
 * TokenHistogram included) is summed, the cluster-wide series every worker aggregates from the same NATS
 * telemetry are counted once (their max: each worker adds the instances' request counts, InstanceTelemetry.requests,
 * from the same telemetry), process series summed.
 * The IPC between the workers and the primary is checked on real processes by
 * test/integration/gateway-workers.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { aggregateWorkerMetrics, TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import type { InstanceTelemetry, RequestRecord } from '../../protocols/messages.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';

const inst = (energyJ: number, ...recs: RequestRecord[]): InstanceTelemetry => {
  const tally = new RequestTally();
  for (const r of recs) tally.add(r);
  return {
    v: 1, id: 'i1', pool: 'p-short', tp: 2, gpus: [0, 1], clockMhz: 1200, maxClockMhz: 1980, powerW: 800, energyJ,
    energySource: 'modelled', queued: 0, running: 1, loadByType: { SS: 1 }, state: 'running', sentMs: 0, requests: tally.counts(7),
  };
};
const rec = (id: string): RequestRecord => ({
  v: 1, id, type: 'SS', pool: 'p-short', outcome: 'ok', promptTokens: 100, completionTokens: 50, ttftMs: 120,
  tbtMeanMs: 30, tbtMaxMs: 60, energyJ: 40, energySource: 'modelled', sloMet: true, finishedMs: 0,
});

const value = (fams: ReturnType<typeof parsePrometheusText>, name: string, labels: Record<string, string> = {}, fam = name) =>
  fams.get(fam)?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

describe('aggregateWorkerMetrics', () => {
  it('sums what each worker served and counts the shared cluster telemetry once', async () => {
    const w0 = new TelemetryMetrics();
    const w1 = new TelemetryMetrics();
    // the same cluster telemetry reaches both workers; w1 started later and missed the first message
    w0.onInstance(inst(300, rec('a')), 0);
    for (const w of [w0, w1]) w.onInstance(inst(500, rec('a'), rec('b'), rec('c')), 0);
    // what each served
    w0.httpRequests.inc({ route: '/v1/completions', code: '200' }, 3);
    w1.httpRequests.inc({ route: '/v1/completions', code: '200' }, 4);
    w1.httpRequests.inc({ route: '/metrics', code: '200' });
    w0.gatewayInflight.set(2);
    w1.gatewayInflight.set(5);
    const labels = { model_name: 'm', type: 'SS', pool: 'p-short' };
    w0.gatewayTtft.observe(labels, 0.02);
    w1.gatewayTtft.observe(labels, 0.2);
    w0.gatewayTbt.labels(labels).observe(0.03);
    w1.gatewayTbt.labels(labels).observe(0.03);
    w1.gatewayTbt.labels(labels).observe(0.5);
    const text = await aggregateWorkerMetrics([await w0.registry.getMetricsAsJSON(), await w1.registry.getMetricsAsJSON()]);
    const fams = parsePrometheusText(text);
    expect(value(fams, 'dynamollm_gateway_http_requests_total', { route: '/v1/completions', code: '200' })).toBe(7);
    expect(value(fams, 'dynamollm_gateway_http_requests_total', { route: '/metrics' })).toBe(1);
    expect(value(fams, 'dynamollm_gateway_inflight_requests')).toBe(7);
    expect(value(fams, 'dynamollm_gateway_ttft_seconds_count', labels, 'dynamollm_gateway_ttft_seconds')).toBe(2);
    expect(value(fams, 'dynamollm_gateway_ttft_seconds_bucket', { ...labels, le: '0.025' }, 'dynamollm_gateway_ttft_seconds')).toBe(1);
    expect(value(fams, 'dynamollm_gateway_tbt_seconds_count', labels, 'dynamollm_gateway_tbt_seconds')).toBe(3);
    // cluster-wide: once, not once per worker
    expect(value(fams, 'dynamollm_requests_total', { type: 'SS', outcome: 'ok' })).toBe(3);
    expect(value(fams, 'dynamollm_request_energy_joules_total', { type: 'SS' })).toBe(120);
    expect(value(fams, 'dynamollm_cluster_power_watts')).toBe(800);
    expect(value(fams, 'dynamollm_energy_joules_total', { instance: 'i1' })).toBe(500);
    // the process series of both workers (CPU seconds summed)
    const cpu0 = (await w0.registry.getSingleMetric('dynamollm_process_process_cpu_seconds_total')!.get()).values[0]!.value;
    expect(value(fams, 'dynamollm_process_process_cpu_seconds_total')).toBeGreaterThanOrEqual(cpu0);
  });
});
