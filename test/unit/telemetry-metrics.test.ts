/**
 * Telemetry -> Prometheus metrics and the dashboard's live state: families present and parseable by a
 * strict text-format parser, energy counters from cumulative per-instance counters (incl. restarts), the
 * cluster's request series from the instances' request counts (InstanceTelemetry.requests, made by the
 * instance's own RequestTally: added once, monotonic across a restart, kept when the instance goes silent),
 * stale instances dropped, SinglePool baseline above the cluster's own power at low load.
 */
import { describe, expect, it } from 'vitest';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { parsePrometheusText, PromParseError } from '../../src/telemetry/prom-parse.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import type { DecisionEvent, InstanceTelemetry, RequestRecord } from '../../protocols/messages.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';

const inst = (id: string, energyJ: number, over: Partial<InstanceTelemetry> = {}): InstanceTelemetry => ({
  v: 1, id, pool: 'p-short', tp: 4, gpus: [0, 1, 2, 3], clockMhz: 1200, maxClockMhz: 1980, powerW: 1600, energyJ,
  energySource: 'modelled', queued: 2, running: 5, loadByType: { SS: 1 }, state: 'running', sentMs: 0, ...over,
});
const rec = (over: Partial<RequestRecord> = {}): RequestRecord => ({
  v: 1, id: 'r1', type: 'SS', pool: 'p-short', outcome: 'ok', promptTokens: 100, completionTokens: 50, ttftMs: 120,
  tbtMeanMs: 30, tbtMaxMs: 60, energyJ: 40, energySource: 'modelled', sloMet: true, finishedMs: 0, ...over,
});
/** the request counts an instance process started at `startedMs` carries after publishing `recs`. */
const counts = (startedMs: number, ...recs: RequestRecord[]) => {
  const t = new RequestTally();
  for (const r of recs) t.add(r);
  return t.counts(startedMs);
};
const evt = (kind: DecisionEvent['kind'], decision: Record<string, unknown> = {}): DecisionEvent => ({ v: 1, kind, actor: 'pool-a', atMs: 1, summary: `${kind} happened`, decision, inputs: {} });

const value = (fams: ReturnType<typeof parsePrometheusText>, fam: string, name: string, labels: Record<string, string>) =>
  fams.get(fam)?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

describe('TelemetryMetrics', () => {
  it('exposes every family, parseable, with the right values', async () => {
    const m = new TelemetryMetrics();
    m.onInstance(inst('i1', 1000, { requests: counts(5, rec()) }), 0);
    m.onInstance(inst('i1', 1500, { requests: counts(5, rec(), rec({ ttftMs: 900, sloMet: false }), rec({ outcome: 'rejected', ttftMs: undefined, tbtMeanMs: undefined, energyJ: 0 })) }), 1000);
    m.onInstance(inst('i2', 200, { pool: 'p-long', tp: 8, gpus: [4, 5, 6, 7, 8, 9, 10, 11], powerW: 4000, clockMhz: 1980 }), 1000);
    m.onEvent(evt('reshard', { take: true, target: [] }));
    m.onEvent(evt('clock', { clockMhz: 1400, from: 1980 }));
    m.onEvent(evt('lease'));
    // decision events that record no reconfiguration: a kept layout, a re-shard's progress, the start-up
    // clock, an instance's state change
    m.onEvent(evt('reshard', { take: false, target: [] }));
    m.onEvent(evt('reshard', { complete: true }));
    m.onEvent(evt('clock', { clockMhz: 1980, from: 0 }));
    m.onEvent(evt('instance', { state: 'ready', from: 'starting' }));
    m.onEvent(evt('scale', { start: 'p-a-n0-g0x2' }));
    m.httpRequests.inc({ route: '/v1/completions', code: '200' });
    const fams = parsePrometheusText(await m.text());
    for (const f of [
      'dynamollm_requests_total', 'dynamollm_request_ttft_seconds', 'dynamollm_gateway_ttft_seconds', 'dynamollm_gateway_tbt_seconds', 'dynamollm_slo_violations_total',
      'dynamollm_rejections_total', 'dynamollm_energy_joules_total', 'dynamollm_request_energy_joules_total', 'dynamollm_gpu_power_watts',
      'dynamollm_gpu_sm_clock_hertz', 'dynamollm_reconfigurations_total', 'dynamollm_cluster_power_watts', 'dynamollm_gateway_http_requests_total',
    ]) expect(fams.has(f), f).toBe(true);
    expect(fams.get('dynamollm_request_ttft_seconds')!.type).toBe('histogram');
    expect(fams.get('dynamollm_energy_joules_total')!.type).toBe('counter');
    // first message counts the manager's cumulative energy, the next adds the delta
    expect(value(fams, 'dynamollm_energy_joules_total', 'dynamollm_energy_joules_total', { instance: 'i1', source: 'modelled' })).toBe(1500);
    expect(value(fams, 'dynamollm_gpu_power_watts', 'dynamollm_gpu_power_watts', { instance: 'i1', gpu: '2' })).toBe(400);
    expect(value(fams, 'dynamollm_gpu_sm_clock_hertz', 'dynamollm_gpu_sm_clock_hertz', { instance: 'i2', gpu: '11' })).toBe(1.98e9);
    expect(value(fams, 'dynamollm_cluster_power_watts', 'dynamollm_cluster_power_watts', {})).toBe(5600);
    expect(value(fams, 'dynamollm_requests_total', 'dynamollm_requests_total', { type: 'SS', outcome: 'ok' })).toBe(2);
    expect(value(fams, 'dynamollm_requests_total', 'dynamollm_requests_total', { type: 'SS', outcome: 'failed' })).toBeUndefined();
    expect(value(fams, 'dynamollm_request_energy_joules_total', 'dynamollm_request_energy_joules_total', { type: 'SS', source: 'modelled' })).toBe(40 + 40 + 0);
    expect(value(fams, 'dynamollm_slo_violations_total', 'dynamollm_slo_violations_total', { type: 'SS' })).toBe(1);
    expect(value(fams, 'dynamollm_rejections_total', 'dynamollm_rejections_total', { type: 'SS' })).toBe(1);
    expect(value(fams, 'dynamollm_request_ttft_seconds', 'dynamollm_request_ttft_seconds_bucket', { le: '0.25' })).toBe(1);
    expect(value(fams, 'dynamollm_request_ttft_seconds', 'dynamollm_request_ttft_seconds_bucket', { le: '1' })).toBe(2);
    expect(value(fams, 'dynamollm_request_ttft_seconds', 'dynamollm_request_ttft_seconds_count', {})).toBe(2);
    expect(value(fams, 'dynamollm_request_ttft_seconds', 'dynamollm_request_ttft_seconds_sum', {})).toBeCloseTo(1.02, 9);
    expect(value(fams, 'dynamollm_reconfigurations_total', 'dynamollm_reconfigurations_total', { kind: 'reshard' })).toBe(1);
    expect(fams.get('dynamollm_reconfigurations_total')!.samples.map((s) => [s.labels.kind, s.value])).toEqual([['reshard', 1], ['clock', 1], ['instance_start', 1]]);
  });

  it("the request series add each instance process's counts once: repeated counts add nothing, a restart adds from 0, a silent instance's stay", async () => {
    const m = new TelemetryMetrics({ processMetrics: false, staleAfterMs: 5000 });
    const ok = (n: number) => Array.from({ length: n }, (_, i) => rec({ id: `r${i}` }));
    const requests = async () => value(parsePrometheusText(await m.text()), 'dynamollm_requests_total', 'dynamollm_requests_total', { type: 'SS', outcome: 'ok' });
    m.onInstance(inst('i1', 10, { requests: counts(100, ...ok(3)) }), 0);
    m.onInstance(inst('i1', 20, { requests: counts(100, ...ok(3)) }), 1000);
    expect(await requests()).toBe(3);
    m.onInstance(inst('i1', 30, { requests: counts(100, ...ok(5)) }), 2000);
    expect(await requests()).toBe(5);
    // the manager restarted (another start time): its counts start from 0, all added
    m.onInstance(inst('i1', 5, { requests: counts(3000, ...ok(2)) }), 3000);
    expect(await requests()).toBe(7);
    // silent past staleAfterMs: its gauges go, what it counted stays; heard again, only its growth is added
    m.sweep(60_000);
    expect(await requests()).toBe(7);
    m.onInstance(inst('i1', 6, { requests: counts(3000, ...ok(4)) }), 61_000);
    expect(await requests()).toBe(9);
    const fams = parsePrometheusText(await m.text());
    expect(value(fams, 'dynamollm_request_energy_joules_total', 'dynamollm_request_energy_joules_total', { type: 'SS', source: 'modelled' })).toBe(9 * 40);
    expect(value(fams, 'dynamollm_request_ttft_seconds', 'dynamollm_request_ttft_seconds_count', {})).toBe(9);
  });

  it('a manager restart (energy counter drops) keeps the counter monotonic', async () => {
    const m = new TelemetryMetrics({ processMetrics: false });
    m.onInstance(inst('i1', 1000), 0);
    m.onInstance(inst('i1', 30), 1000);
    m.onInstance(inst('i1', 50), 2000);
    const fams = parsePrometheusText(await m.text());
    expect(value(fams, 'dynamollm_energy_joules_total', 'dynamollm_energy_joules_total', { instance: 'i1' })).toBe(1050);
  });

  it("an instance whose GPU read failed shows its reading's age and, in the cluster's power, the stale part; its energy counts once", async () => {
    const m = new TelemetryMetrics({ processMetrics: false });
    m.onInstance(inst('i1', 100), 0);
    m.onInstance(inst('i2', 500, { gpus: [4, 5, 6, 7], powerW: 1000 }), 0);
    // i2's engine restarts: two readings of its last figures, 1 s and 2 s old
    m.onInstance(inst('i2', 500, { gpus: [4, 5, 6, 7], powerW: 1000, gpuStaleMs: 1000 }), 1000);
    m.onInstance(inst('i2', 500, { gpus: [4, 5, 6, 7], powerW: 1000, gpuStaleMs: 2000 }), 2000);
    let fams = parsePrometheusText(await m.text());
    const age = (id: string) => value(fams, 'dynamollm_instance_gpu_reading_age_seconds', 'dynamollm_instance_gpu_reading_age_seconds', { instance: id });
    const one = (fam: string, labels: Record<string, string> = {}) => value(fams, fam, fam, labels);
    expect([age('i1'), age('i2')]).toEqual([0, 2]);
    expect(one('dynamollm_cluster_power_watts')).toBe(2600);
    expect(one('dynamollm_cluster_stale_power_watts')).toBe(1000);
    expect(one('dynamollm_energy_joules_total', { instance: 'i2' })).toBe(500);
    // read again: the energy spent while the reads failed counts at this reading
    m.onInstance(inst('i2', 560, { gpus: [4, 5, 6, 7], powerW: 400 }), 3000);
    fams = parsePrometheusText(await m.text());
    expect(age('i2')).toBe(0);
    expect([one('dynamollm_cluster_power_watts'), one('dynamollm_cluster_stale_power_watts')]).toEqual([2000, 0]);
    expect(one('dynamollm_energy_joules_total', { instance: 'i2' })).toBe(560);
  });

  it('drops the gauges of a silent instance, keeps its energy', async () => {
    const m = new TelemetryMetrics({ processMetrics: false, staleAfterMs: 5000 });
    m.onInstance(inst('i1', 10), 0);
    m.onInstance(inst('i2', 10, { gpus: [4, 5, 6, 7] }), 6000);
    m.sweep(6000);
    const fams = parsePrometheusText(await m.text());
    expect(fams.get('dynamollm_gpu_power_watts')!.samples.every((s) => s.labels.instance === 'i2')).toBe(true);
    expect(value(fams, 'dynamollm_cluster_power_watts', 'dynamollm_cluster_power_watts', {})).toBe(1600);
    expect(value(fams, 'dynamollm_energy_joules_total', 'dynamollm_energy_joules_total', { instance: 'i1' })).toBe(10);
  });

  it('the parser rejects malformed exposition text', () => {
    expect(() => parsePrometheusText('x{a="b} 1')).toThrow(PromParseError);
    expect(() => parsePrometheusText('x 1 2 3')).toThrow(PromParseError);
    expect(() => parsePrometheusText('# TYPE x histogram\nx_bucket{le="1"} 5\nx_bucket{le="+Inf"} 3')).toThrow(/cumulative/);
    expect(parsePrometheusText('a_b{x="q\\"r"} +Inf').get('a_b')!.samples[0]).toEqual({ name: 'a_b', labels: { x: 'q"r' }, value: Infinity });
  });
});

describe('LiveState', () => {
  it("marks an instance whose GPU read failed and says its part of the cluster's power apart; its energy counts once", () => {
    const live = new LiveState();
    live.onInstance(inst('i1', 100, { powerW: 600 }), 0);
    live.onInstance(inst('i2', 500, { powerW: 1000 }), 0);
    live.onInstance(inst('i2', 500, { powerW: 1000, gpuStaleMs: 2000 }), 2000);
    let s = live.snapshot(2000);
    expect(s.pools[0]!.instances.map((i) => [i.id, i.gpuStaleMs])).toEqual([['i1', undefined], ['i2', 2000]]);
    expect([s.powerW, s.stalePowerW, s.energyJ]).toEqual([1600, 1000, 0]);
    live.onInstance(inst('i2', 560, { powerW: 400 }), 3000);
    s = live.snapshot(3000);
    expect(s.pools[0]!.instances.map((i) => i.gpuStaleMs)).toEqual([undefined, undefined]);
    expect([s.powerW, s.stalePowerW, s.energyJ]).toEqual([1000, 0, 60]);
  });

  it('integrates energy from counter deltas and a modelled SinglePool baseline', () => {
    const profile = loadProfile('profiles/llama2-70b.h100.json');
    const live = new LiveState({ profile, clusterGpus: 32 });
    live.onInstance(inst('i1', 1000, { powerW: 1200 }), 0);
    live.tick(0);
    live.onInstance(inst('i1', 2200, { powerW: 1200, requests: counts(5, rec(), rec({ type: 'LL', sloMet: false })) }), 1000);
    // the same counts again add nothing
    live.onInstance(inst('i1', 2200, { powerW: 1200, requests: counts(5, rec(), rec({ type: 'LL', sloMet: false })) }), 1000);
    live.onEvent(evt('scale'));
    live.tick(1000);
    const s = live.snapshot(1000);
    expect(s.energyJ).toBe(1200); // energy before the first message is not counted
    expect(s.pools).toHaveLength(1);
    expect(s.pools[0]!.instances[0]).toMatchObject({ id: 'i1', tp: 4, clockMhz: 1200 });
    expect(s.slo.SS).toEqual({ total: 1, met: 1 });
    expect(s.slo.LL).toEqual({ total: 1, met: 0 });
    expect(s.requests).toEqual({ ok: 2, rejected: 0, failed: 0, cancelled: 0, timed_out: 0 });
    expect(s.events[0]!.summary).toBe('scale happened');
    // 4 TP8 instances at max clock idle at least as much as one TP4 at 1200 MHz: the baseline is higher
    expect(s.series.at(-1)!.baselinePowerW!).toBeGreaterThan(1200);
    expect(s.baselineEnergyJ!).toBeGreaterThan(1200);
    expect(s.baselineSource).toMatch(/modelled/);
    // silent instances leave the view
    expect(live.snapshot(60_000).pools).toHaveLength(0);
  });
});
