/**
 * TokenHistogram (src/telemetry/token-histogram.ts) exposes what prom-client's Histogram exposes for the same
 * observations: the same samples (name, labels, value) in /metrics text and in the JSON form, and it is what
 * the gateway's TBT metric is.
 */
import { describe, expect, it } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { TokenHistogram } from '../../src/telemetry/token-histogram.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2];
const NAME = 'x_tbt_seconds';

/** every sample of the text: `name{sorted labels} value`, sorted. */
function samples(text: string): string[] {
  const out: string[] = [];
  for (const [, fam] of parsePrometheusText(text)) {
    for (const s of fam.samples) {
      const l = Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',');
      out.push(`${s.name}{${l}} ${s.value}`);
    }
  }
  return out.sort();
}

describe('TokenHistogram', () => {
  it("gives one child per label set (none made per call), each counting into its own series; a reset starts new ones", async () => {
    const r = new Registry();
    const h = new TokenHistogram(NAME, 'h', ['model_name', 'type', 'pool'], BUCKETS, [r]);
    const a = h.labels({ model_name: 'm', type: 'SS', pool: 'p' });
    expect(h.labels({ model_name: 'm', type: 'SS', pool: 'p' })).toBe(a);
    // label values that a separator joining them would run together are other series
    const b = h.labels({ model_name: 'm', type: 'S', pool: 'Sp' });
    const c = h.labels({ model_name: 'mS', type: 'S', pool: 'p' });
    expect(new Set([a, b, c]).size).toBe(3);
    a.observe(0.004);
    h.labels({ model_name: 'm', type: 'SS', pool: 'p' }).observe(0.2);
    b.observe(0.004);
    const count = async () => (await h.get()).values.filter((v) => v.metricName === `${NAME}_count`).map((v) => `${v.labels.type}/${v.labels.pool}:${v.value}`).sort();
    expect(await count()).toEqual(['S/Sp:1', 'S/p:0', 'SS/p:2']);
    h.reset();
    expect(h.labels({ model_name: 'm', type: 'SS', pool: 'p' })).not.toBe(a);
    expect(await count()).toEqual(['SS/p:0']);
  });

  it("exposes the samples prom-client's Histogram exposes for the same observations", async () => {
    const ra = new Registry(), rb = new Registry();
    const a = new Histogram({ name: NAME, help: 'h', labelNames: ['model_name', 'type', 'pool'], buckets: BUCKETS, registers: [ra] });
    const b = new TokenHistogram(NAME, 'h', ['model_name', 'type', 'pool'], BUCKETS, [rb]);
    const labels = [{ model_name: 'm', type: 'SS', pool: 'p' }, { model_name: 'm', type: 'LL', pool: 'q' }, { model_name: 'a"b\\c', type: '', pool: '' }];
    // the bounds themselves, between them, past the last, zero, negative, and a spread
    const values = [...BUCKETS, 0, -1, 3, 1e-9, 0.0011, 0.7, 2.0000001, ...Array.from({ length: 500 }, (_, i) => ((i * 7919) % 1000) / 400)];
    for (const [k, l] of labels.entries()) {
      const child = b.labels(l);
      for (const v of values.slice(k * 3)) {
        a.observe(l, v);
        child.observe(v);
      }
    }
    b.observe(labels[0]!, 0.04);
    a.observe(labels[0]!, 0.04);
    const ta = await ra.metrics(), tb = await rb.metrics();
    expect(samples(tb)).toEqual(samples(ta));
    expect(samples(tb)).toHaveLength(3 * (BUCKETS.length + 3));
    expect(tb).toContain(`# TYPE ${NAME} histogram`);
    const ja = (await ra.getMetricsAsJSON())[0]!, jb = (await rb.getMetricsAsJSON())[0]!;
    const norm = (vs: { value: number; labels: object; metricName?: string }[]) => vs.map((v) => JSON.stringify([v.metricName, Object.entries(v.labels).sort(), v.value])).sort();
    expect(norm(jb.values)).toEqual(norm(ja.values as never));
    expect(() => b.labels(labels[0]!).observe(Number.NaN)).toThrow(TypeError);
    b.reset();
    expect(samples(await rb.metrics())).toEqual([]);
  });

  it("is the gateway's TBT metric", async () => {
    const m = new TelemetryMetrics({ processMetrics: false });
    expect(m.gatewayTbt).toBeInstanceOf(TokenHistogram);
    const c = m.gatewayTbt.labels({ model_name: 'm', type: 'SS', pool: 'p' });
    for (const v of [0.01, 0.03, 3]) c.observe(v);
    const fam = parsePrometheusText(await m.text()).get('dynamollm_gateway_tbt_seconds');
    const count = fam?.samples.find((s) => s.name === 'dynamollm_gateway_tbt_seconds_count');
    expect(count?.value).toBe(3);
    expect(fam?.samples.find((s) => s.name === 'dynamollm_gateway_tbt_seconds_bucket' && s.labels.le === '0.03')?.value).toBe(2);
  });
});
