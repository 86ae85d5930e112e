/**
 * Terminal table and self-contained HTML report of simulation results. The report draws its charts with
 * Observable Plot (with d3), whose browser bundles are inlined so the file works offline.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { PAPER_ENERGY_VS_SINGLE, SERVER_BOOT_S, type SimResult } from './types.ts';

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
/** a latency percentile: Infinity where it falls among saturated requests (fluid: SimResult latency.saturated). */
const lat0 = (x: number) => (x === Infinity ? 'saturated' : f0(x));
/** SimResult.p99WithinSlo in words: null when no type had requests enough to judge. */
export const p99Verdict = (x: boolean | null) => (x === null ? 'not judged' : x ? 'yes' : 'no');

export function relEnergy(r: SimResult, base: SimResult | undefined): number {
  return base ? (r.energyKWh / base.energyKWh - 1) * 100 : NaN;
}

export function table(results: SimResult[], paper: Partial<Record<string, number>> = PAPER_ENERGY_VS_SINGLE): string {
  const base = results.find((r) => r.policy === 'single-pool');
  const head = ['policy', 'fidelity', 'energy kWh', 'vs single', 'paper', 'avg kW', 'p99 kW', 'GPU-h', 'TTFT p50/p99 ms', 'TBT p50/p99 ms', 'SLO att. min', 'p99 in SLO', 'reconf s/r/c/e', 'rejected', 'refused ctx', 'prefix hit'];
  const rows = results.map((r) => {
    const att = Object.values(r.sloAttainment).filter((x): x is number => x !== undefined);
    const rel = relEnergy(r, base);
    return [
      r.policy, r.fidelity, r.energyKWh.toFixed(2), base ? `${rel >= 0 ? '+' : ''}${rel.toFixed(1)}%` : '-',
      paper[r.policy] !== undefined ? `${paper[r.policy]! >= 0 ? '+' : ''}${paper[r.policy]}%` : '-',
      f1(r.avgPowerW / 1000), f1(r.p99PowerW / 1000), f1(r.gpuHours),
      `${lat0(r.latency.ttftP50Ms)}/${lat0(r.latency.ttftP99Ms)}`, `${lat0(r.latency.tbtP50Ms)}/${lat0(r.latency.tbtP99Ms)}`,
      att.length ? (Math.min(...att) * 100).toFixed(1) + '%' : '-', p99Verdict(r.p99WithinSlo),
      `${r.reconfigurations.instanceStart}/${r.reconfigurations.reshard}/${r.reconfigurations.clock}/${r.reconfigurations.emergency}`,
      String(r.rejected), String(r.refusedOverContext ?? 0),
      r.prefixCache ? `${((100 * r.prefixCache.hitTokens) / Math.max(1, r.prefixCache.lookupTokens)).toFixed(1)}%` : '-',
    ];
  });
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(w[i])).join('  ');
  const out = [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)];
  const dyn = results.find((r) => r.policy === 'dynamollm');
  const orc = results.find((r) => r.policy === 'oracle');
  if (dyn && orc) out.push('', `gap dynamollm -> oracle: ${((dyn.energyKWh / orc.energyKWh - 1) * 100).toFixed(1)}% more energy than the oracle`);
  out.push('', ...breakdownTable(results));
  out.push('', `energy is modelled: ${results[0]?.energySource.profile ?? ''}; calibration: ${results[0]?.energySource.calibration ?? ''}`);
  return out.join('\n');
}

const BREAKDOWN_PARTS = [
  ['unallocatedKWh', 'GPUs in no instance'],
  ['startingKWh', 'instances starting or stopping'],
  ['instanceIdleKWh', 'instances idle'],
  ['instanceBusyKWh', 'instances stepping'],
] as const;

/**
 * Where the energy went, kWh per policy (SimResult.energyBreakdown: the parts sum to the energy), and where
 * dynamollm spends more than the oracle, part by part.
 */
export function breakdownTable(results: SimResult[]): string[] {
  const rs = results.filter((r) => r.energyBreakdown);
  if (!rs.length) return [];
  const head = ['energy by part, kWh', ...BREAKDOWN_PARTS.map(([, name]) => name)];
  const rows = rs.map((r) => [r.policy, ...BREAKDOWN_PARTS.map(([k]) => r.energyBreakdown![k].toFixed(2))]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(w[i])).join('  ');
  const out = [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)];
  const idle = rs.filter((r) => (r.energyBreakdown!.unusedServersKWh ?? 0) > 0 && !r.serverPower);
  if (idle.length) out.push(`drawn powered on servers holding no grant and no instance (at most what --unused-servers off could save), kWh: ${idle.map((r) => `${r.policy} ${f1(r.energyBreakdown!.unusedServersKWh!)}`).join(', ')}`);
  const off = rs.filter((r) => r.serverPower);
  if (off.length) out.push(`server power (--unused-servers off, the cluster machine's decisions, ${SERVER_BOOT_S}-s boots by default): ${off.map((r) => `${r.policy} ${r.serverPower!.powerOffs} off / ${r.serverPower!.powerOns} on, ${f1(r.energyBreakdown!.unusedServersKWh ?? 0)} kWh not drawn, boots ${f1(r.energyBreakdown!.serverBootKWh ?? 0)} kWh`).join('; ')}`);
  const slept = rs.filter((r) => r.sleepStandby);
  if (slept.length) out.push(`sleep mode (--sleep-standby on): ${slept.map((r) => `${r.policy} ${r.sleepStandby!.sleeps} sleeps (${r.sleepStandby!.level2Sleeps} at level 2) / ${r.sleepStandby!.wakes} wakes, ${f1(r.sleepStandby!.asleepGpuHours)} GPU-h asleep drawing ${(r.energyBreakdown!.instanceAsleepKWh ?? 0).toFixed(2)} kWh (part of instances idle)`).join('; ')}`);
  const pooled = rs.filter((r) => r.energyByPoolKWh && Object.keys(r.energyByPoolKWh).length);
  const drained = rs.filter((r) => r.drains);
  if (drained.length) out.push(`drains (the pool's decision to the GPUs free), s: ${drained.map((r) => { const d = r.drains!; return `${r.policy} ${d.count} drains, mean ${d.meanS.toFixed(1)} p50 ${d.p50S.toFixed(1)} p99 ${d.p99S.toFixed(1)} max ${d.maxS.toFixed(1)}, ${d.migrated} requests migrated (${d.reprefillTokens} tokens prefilled again)`; }).join('; ')}`);
  if (pooled.length) out.push(`instances idle and stepping by pool, kWh: ${pooled.map((r) => `${r.policy} ${Object.entries(r.energyByPoolKWh!).map(([id, v]) => `${id.replace(/^pool-/, '')} ${v.toFixed(2)}`).join(' ')}`).join('; ')}`);
  const dyn = rs.find((r) => r.policy === 'dynamollm');
  const orc = rs.find((r) => r.policy === 'oracle');
  if (dyn && orc) {
    const parts = BREAKDOWN_PARTS.map(([k, name]) => {
      const d = dyn.energyBreakdown![k] - orc.energyBreakdown![k];
      return `${name} ${d >= 0 ? '+' : ''}${d.toFixed(2)}`;
    });
    out.push(`dynamollm - oracle by part, kWh: ${parts.join(', ')} (GPU-hours ${f1(dyn.gpuHours)} vs ${f1(orc.gpuHours)})`);
    const g = gapCauses(dyn, orc);
    if (g) out.push(`dynamollm - oracle by cause, kWh: capacity held in instances ${sgn(g.capacityKWh)} (${f1(dyn.gpuHours)} vs ${f1(orc.gpuHours)} instance GPU-hours at the oracle's ${g.oracleKWhPerGpuH.toFixed(4)} kWh each), instance efficiency ${sgn(g.efficiencyKWh)} (${g.dynKWhPerGpuH.toFixed(4)} kWh per instance GPU-hour: clock, TP split, batching), GPUs in no instance ${sgn(g.noInstanceKWh)}`);
  }
  return out;
}

const sgn = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;

/**
 * dynamollm's energy above the oracle's split by cause (exact: the three sum to the difference). Instance energy
 * (starting, idle and stepping) over instance GPU-hours is a policy's energy per instance GPU-hour; `capacity`
 * prices the instance GPU-hours dynamollm holds beyond the oracle's at the oracle's rate (instances kept for load
 * that does not come: the burst guard, the forecast's headroom, pools too small to share), `efficiency` prices
 * dynamollm's hours at the difference of the rates (a clock above need, a TP split that steps at more energy,
 * smaller batches), `noInstance` is the GPUs granted and in no instance. Undefined without a breakdown or GPU-hours.
 */
export function gapCauses(dyn: SimResult, orc: SimResult): { capacityKWh: number; efficiencyKWh: number; noInstanceKWh: number; dynKWhPerGpuH: number; oracleKWhPerGpuH: number } | undefined {
  const a = dyn.energyBreakdown, b = orc.energyBreakdown;
  if (!a || !b || !(dyn.gpuHours > 0) || !(orc.gpuHours > 0)) return undefined;
  const inst = (x: NonNullable<SimResult['energyBreakdown']>) => x.startingKWh + x.instanceIdleKWh + x.instanceBusyKWh;
  const ed = inst(a) / dyn.gpuHours, eo = inst(b) / orc.gpuHours;
  return { capacityKWh: (dyn.gpuHours - orc.gpuHours) * eo, efficiencyKWh: dyn.gpuHours * (ed - eo), noInstanceKWh: a.unallocatedKWh - b.unallocatedKWh, dynKWhPerGpuH: ed, oracleKWhPerGpuH: eo };
}

/** The plotting library's browser bundles, read once and inlined, so a report opens offline. */
let bundles: string | undefined;
function plotBundles(): string {
  if (bundles === undefined) {
    const req = createRequire(import.meta.url);
    // @observablehq/plot's UMD bundle expects d3 as a global; both are ISC-licensed
    const d3 = readFileSync(join(dirname(req.resolve('d3')), 'd3.min.js'), 'utf8');
    const plot = readFileSync(join(dirname(req.resolve('@observablehq/plot')), '..', 'dist', 'plot.umd.min.js'), 'utf8');
    bundles = `<script>${d3.replace(/<\/script/gi, '<\\/script')}</script>\n<script>${plot.replace(/<\/script/gi, '<\\/script')}</script>`;
  }
  return bundles;
}

/** What the page's script draws, per policy; a pool's clock is null while it has no GPU (drawn absent, not 0 MHz). */
export function chartData(results: SimResult[]) {
  return results.map((r) => ({
    policy: r.policy,
    tS: r.series.tS,
    powerKW: r.series.powerW.map((w) => w / 1000),
    energyKWh: r.series.energyKWh,
    gpus: r.series.gpusByPool,
    clock: Object.fromEntries(Object.entries(r.series.clockByPool).map(([pool, mhz]) => [pool, mhz.map((m, k) => ((r.series.gpusByPool[pool]?.[k] ?? 0) > 0 && m > 0 ? m : null))])),
    ttft: r.cdf.ttft.filter((c) => c.ms > 0),
    tbt: r.cdf.tbt.filter((c) => c.ms > 0),
  }));
}

// Runs in the browser (Plot and d3 globals). Time in minutes up to 3 h, else hours; one colour per policy,
// per-pool charts as small multiples (one panel per policy), latency CDFs on a log x axis.
const PAGE_SCRIPT = `
const data = JSON.parse(document.getElementById('sim-data').textContent);
const span = Math.max(0, ...data.map((d) => d.tS[d.tS.length - 1] ?? 0));
const [tDiv, tUnit] = span > 3 * 3600 ? [3600, 'hours'] : [60, 'minutes'];
const policies = data.map((d) => d.policy);
const color = { legend: true, domain: policies, scheme: 'tableau10' };
const W = 900;
function add(id, title, chart) {
  const fig = document.createElement('figure');
  fig.id = id;
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap, chart);
  document.getElementById('charts').append(fig);
}
const rows = (f) => data.flatMap((d) => d.tS.map((t, k) => ({ policy: d.policy, t: t / tDiv, ...f(d, k) })));
const dash = (p) => ['', '6,3', '2,2', '8,3,2,3'][policies.indexOf(p) % 4];
const lineBy = (rs, y) => policies.map((p) => Plot.lineY(rs.filter((r) => r.policy === p), { x: 't', y, stroke: 'policy', strokeWidth: 1.6, strokeDasharray: dash(p), tip: true }));
add('power', 'Cluster power (kW, modelled)', Plot.plot({ width: W, height: 280, color, x: { label: 'time (' + tUnit + ')', grid: true }, y: { label: 'kW', grid: true, zero: true },
  marks: lineBy(rows((d, k) => ({ kW: d.powerKW[k] })), 'kW') }));
add('energy', 'Cumulative energy (kWh, modelled)', Plot.plot({ width: W, height: 280, color, x: { label: 'time (' + tUnit + ')', grid: true }, y: { label: 'kWh', grid: true, zero: true },
  marks: lineBy(rows((d, k) => ({ kWh: d.energyKWh[k] })), 'kWh') }));
const poolRows = (key) => data.flatMap((d) => Object.entries(d[key]).flatMap(([pool, ys]) => d.tS.map((t, k) => ({ policy: d.policy, pool, t: t / tDiv, y: ys[k] }))));
const pools = [...new Set(data.flatMap((d) => Object.keys(d.gpus)))];
const poolColor = { legend: true, domain: pools, scheme: 'tableau10' };
add('gpus', 'GPUs per pool, one panel per policy', Plot.plot({ width: W, height: 110 * policies.length + 40, marginRight: 100, color: poolColor, fy: { label: null, domain: policies },
  x: { label: 'time (' + tUnit + ')', grid: true }, y: { label: 'GPUs', grid: true, zero: true, nice: true, insetTop: 10 },
  marks: [Plot.lineY(poolRows('gpus'), { x: 't', y: 'y', z: 'pool', stroke: 'pool', fy: 'policy', strokeWidth: 1.4, tip: true }), Plot.frame({ stroke: '#ccc' })] }));
// a pool with no GPU has no clock: null breaks the line (absent), it is not drawn at 0 MHz
add('clocks', 'Mean SM clock per pool (MHz); gaps: the pool has no GPU', Plot.plot({ width: W, height: 110 * policies.length + 40, marginRight: 100, color: poolColor, fy: { label: null, domain: policies },
  x: { label: 'time (' + tUnit + ')', grid: true }, y: { label: 'MHz', grid: true, nice: true, insetTop: 10, insetBottom: 4 },
  marks: [Plot.lineY(poolRows('clock'), { x: 't', y: 'y', z: 'pool', stroke: 'pool', fy: 'policy', strokeWidth: 1.4, tip: true }), Plot.frame({ stroke: '#ccc' })] }));
for (const [key, name] of [['ttft', 'TTFT'], ['tbt', 'TBT']]) {
  const rs = data.flatMap((d) => d[key].map((c) => ({ policy: d.policy, ms: c.ms, pct: c.p * 100 })));
  add('cdf-' + key, name + ' latency CDF (log scale)', Plot.plot({ width: W, height: 300, color, x: { type: 'log', label: name + ' (ms)', grid: true }, y: { label: 'percentile', domain: [0, 100], grid: true },
    marks: policies.map((p) => Plot.line(rs.filter((r) => r.policy === p), { x: 'ms', y: 'pct', stroke: 'policy', strokeWidth: 1.6, strokeDasharray: dash(p), tip: true })) }));
}
document.body.dataset.rendered = 'true';
`;

export function html(results: SimResult[], title: string): string {
  const esc = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
  const parts: string[] = [`<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>`,
    '<style>body{font-family:sans-serif;margin:24px;max-width:1000px}pre{background:#f6f6f6;padding:8px;overflow-x:auto}figure{margin:16px 0}figcaption{font-weight:bold;margin-bottom:4px}td,th{padding:3px 6px}</style>',
    plotBundles(), '</head><body>',
    `<h1>${esc(title)}</h1><p>Energy is modelled (not measured): ${esc(results[0]?.energySource.profile ?? '')}, calibration ${esc(results[0]?.energySource.calibration ?? '')}. Fidelity per policy is in the table. Charts: Observable Plot (embedded, works offline).</p>`,
    `<pre>${esc(table(results))}</pre>`,
    '<div id="charts"></div>'];
  parts.push('<h2>Per type</h2><table border="1"><tr><th>policy</th>' + REQUEST_TYPES.map((t) => `<th>${t} TTFT p99 / TBT p99 / SLO att.</th>`).join('') + '</tr>');
  for (const r of results) {
    parts.push(`<tr><td>${r.policy}</td>` + REQUEST_TYPES.map((t) => {
      const s = r.latency.byType[t];
      return `<td>${s ? `${lat0(s.ttftP99Ms)} / ${lat0(s.tbtP99Ms)} / ${((r.sloAttainment[t] ?? 0) * 100).toFixed(1)}%` : '-'}</td>`;
    }).join('') + '</tr>');
  }
  parts.push('</table>', `<p>${results.flatMap((r) => r.notes).filter((v, i, a) => a.indexOf(v) === i).map(esc).join('<br>')}</p>`);
  // JSON in a script element: '<' escaped so no string in it can close the element
  parts.push(`<script type="application/json" id="sim-data">${JSON.stringify(chartData(results)).replace(/</g, '\\u003c')}</script>`);
  parts.push(`<script>${PAGE_SCRIPT}</script></body></html>`);
  return parts.join('\n');
}
