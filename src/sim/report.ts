/** Terminal table and self-contained HTML report (inline SVG) of simulation results. */
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { PAPER_ENERGY_VS_SINGLE, type SimResult } from './types.ts';

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');

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
      `${f0(r.latency.ttftP50Ms)}/${f0(r.latency.ttftP99Ms)}`, `${f0(r.latency.tbtP50Ms)}/${f0(r.latency.tbtP99Ms)}`,
      att.length ? (Math.min(...att) * 100).toFixed(1) + '%' : '-', r.p99WithinSlo ? 'yes' : 'no',
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
  out.push('', `energy is modelled: ${results[0]?.energySource.profile ?? ''}; calibration: ${results[0]?.energySource.calibration ?? ''}`);
  return out.join('\n');
}

function svgLines(title: string, xs: number[], series: Record<string, number[]>, yLabel: string, logX = false): string {
  const W = 640, H = 260, L = 60, B = 30, T = 24, R = 130;
  const all = Object.values(series).flat().filter(Number.isFinite);
  const ymax = Math.max(1e-9, ...all);
  const xv = logX ? xs.map((x) => Math.log10(Math.max(x, 1e-3))) : xs;
  const xmin = Math.min(...xv), xmax = Math.max(...xv);
  const sx = (x: number) => L + ((x - xmin) / Math.max(1e-9, xmax - xmin)) * (W - L - R);
  const sy = (y: number) => H - B - (y / ymax) * (H - B - T);
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  let i = 0;
  const paths = Object.entries(series).map(([name, ys]) => {
    const c = colors[i++ % colors.length];
    const d = ys.map((y, k) => `${k ? 'L' : 'M'}${sx(xv[k]).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    return `<path d="${d}" fill="none" stroke="${c}" stroke-width="1.5"/><text x="${W - R + 8}" y="${T + 14 * i}" font-size="11" fill="${c}">${name}</text>`;
  });
  return `<figure><figcaption>${title}</figcaption><svg width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg">` +
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>` +
    `<text x="4" y="${T}" font-size="11">${ymax.toPrecision(3)}</text><text x="4" y="${H - B}" font-size="11">0</text>` +
    `<text x="${L}" y="${H - 8}" font-size="11">${logX ? '10^' + xmin.toFixed(1) : xmin.toFixed(0)}</text><text x="${W - R - 40}" y="${H - 8}" font-size="11">${logX ? '10^' + xmax.toFixed(1) : xmax.toFixed(0)}</text>` +
    `<text x="${L + 4}" y="${T - 8}" font-size="11">${yLabel}</text>${paths.join('')}</svg></figure>`;
}

export function html(results: SimResult[], title: string): string {
  const esc = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
  const parts: string[] = [`<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>`,
    '<style>body{font-family:sans-serif;margin:24px}pre{background:#f6f6f6;padding:8px}figure{display:inline-block;margin:8px}</style></head><body>',
    `<h1>${esc(title)}</h1><p>Energy is modelled (not measured): ${esc(results[0]?.energySource.profile ?? '')}, calibration ${esc(results[0]?.energySource.calibration ?? '')}. Fidelity per policy is in the table.</p>`,
    `<pre>${esc(table(results))}</pre>`];
  const byPolicy = (pick: (r: SimResult) => number[]) => Object.fromEntries(results.map((r) => [r.policy, pick(r)]));
  const xs = results[0]?.series.tS.map((t) => t / 60) ?? [];
  parts.push(svgLines('Cluster power over time (kW) vs minutes', xs, byPolicy((r) => r.series.powerW.map((w) => w / 1000).slice(0, xs.length)), 'kW'));
  parts.push(svgLines('Cumulative energy (kWh) vs minutes', xs, byPolicy((r) => r.series.energyKWh.slice(0, xs.length)), 'kWh'));
  for (const r of results) {
    const x = r.series.tS.map((t) => t / 60);
    parts.push(`<h2>${esc(r.policy)} (${r.fidelity})</h2>`);
    parts.push(svgLines(`${r.policy}: GPUs per pool`, x, r.series.gpusByPool, 'GPUs'));
    parts.push(svgLines(`${r.policy}: mean clock per pool (MHz)`, x, r.series.clockByPool, 'MHz'));
  }
  const cdfX = results[0]?.cdf.ttft.map((c) => c.p) ?? [];
  void cdfX;
  parts.push('<h2>Latency CDFs</h2>');
  for (const kind of ['ttft', 'tbt'] as const) {
    // plot percentile (y) against latency (x, log) per policy; x differs per policy, so draw per-policy p-series on a common p grid
    const ps = results[0]?.cdf[kind].map((c) => c.p * 100) ?? [];
    parts.push(svgLines(`${kind.toUpperCase()} latency (ms) by percentile`, ps, byPolicy((r) => r.cdf[kind].map((c) => c.ms)), 'ms'));
  }
  parts.push('<h2>Per type</h2><table border="1" cellpadding="3"><tr><th>policy</th>' + REQUEST_TYPES.map((t) => `<th>${t} TTFT p99 / TBT p99 / SLO att.</th>`).join('') + '</tr>');
  for (const r of results) {
    parts.push(`<tr><td>${r.policy}</td>` + REQUEST_TYPES.map((t) => {
      const s = r.latency.byType[t];
      return `<td>${s ? `${f0(s.ttftP99Ms)} / ${f0(s.tbtP99Ms)} / ${((r.sloAttainment[t] ?? 0) * 100).toFixed(1)}%` : '-'}</td>`;
    }).join('') + '</tr>');
  }
  parts.push('</table>', `<p>${results.flatMap((r) => r.notes).filter((v, i, a) => a.indexOf(v) === i).map(esc).join('<br>')}</p></body></html>`);
  return parts.join('\n');
}
