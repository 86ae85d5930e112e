/**
 * Simulator speed: simulated requests per second of wall time.
 * - step fidelity on the Azure 2023 conversation hour, 12 servers, rate-scale auto, all seven policies at
 *   once (simulateMany: one comlink worker per policy, os.cpus() at a time) -- target < 60 s in all;
 * - fluid fidelity on a synthetic conversation-shaped week, 40 servers, rate-scale auto, each policy alone
 *   in this thread -- target < 60 s per policy.
 * Baseline measured in the same run: streaming the trace alone (parse rate), so the ratio shows the
 * simulation's cost per request over reading it. Energy columns are modelled (src/model profile), not measured.
 * SIM_BENCH_WEEK=name,name limits the week rows (default: all seven).
 */
import type { BenchSection } from './types.ts';
import { simulate, POLICY_NAMES, type PolicyName, type SimResult } from '../../src/sim/index.ts';
import { simulateMany } from '../../src/sim/parallel.ts';
import { readTrace } from '../../src/sim/trace.ts';

const minAtt = (r: SimResult) => Math.min(...Object.values(r.sloAttainment).map((v) => v ?? 1));

export async function bench(): Promise<BenchSection> {
  const path = 'data/traces/AzureLLMInferenceTrace_conv.csv';
  let t = performance.now();
  let n = 0;
  for await (const _ of readTrace(path)) n++;
  const parseRps = n / ((performance.now() - t) / 1000);
  const rows: Record<string, string | number>[] = [];
  const row = (name: string, r: SimResult[], wall: number, base?: number) => {
    const reqs = r.reduce((s, x) => s + x.requests, 0);
    rows.push({
      case: name, requests: reqs, wall_s: wall.toFixed(1), sim_req_per_s: Math.round(reqs / wall), vs_parse: (reqs / wall / parseRps).toFixed(3),
      energy_kWh: r.length === 1 ? r[0].energyKWh.toFixed(1) : '-',
      vs_single: r.length === 1 && base ? `${((r[0].energyKWh / base - 1) * 100).toFixed(1)}%` : '-',
      min_slo_att: r.length === 1 ? `${(minAtt(r[0]) * 100).toFixed(1)}%` : '-',
    });
  };
  t = performance.now();
  const hour = await simulateMany(POLICY_NAMES.map((policy) => ({ policy, fidelity: 'step' as const, model: 'llama2-70b', gpu: 'h100', servers: 12, rateScale: 'auto' as const, trace: { kind: 'file' as const, path } })));
  row('step, conv hour (auto), 12 servers, all 7 policies (workers)', hour, (performance.now() - t) / 1000);
  const want = (process.env.SIM_BENCH_WEEK?.split(',') ?? [...POLICY_NAMES]) as PolicyName[];
  let base: number | undefined;
  for (const policy of want) {
    t = performance.now();
    const f = await simulate({ policy, fidelity: 'fluid', model: 'llama2-70b', gpu: 'h100', servers: 40, rateScale: 'auto', trace: { kind: 'synth', shape: 'conversation', durationS: 7 * 86400, meanRps: 5, seed: 1, lengthsFromFile: path } });
    const wall = (performance.now() - t) / 1000;
    if (policy === 'single-pool') base = f.energyKWh;
    row(`fluid, synthetic week (x${f.rateScale.toFixed(2)}), 40 servers, ${policy}`, [f], wall, base);
    process.stderr.write(`week ${policy}: ${wall.toFixed(1)} s, ${f.energyKWh.toFixed(1)} kWh, reconf ${JSON.stringify(f.reconfigurations)}\n`);
  }
  return {
    title: 'Simulator speed (src/sim)',
    notes: [`baseline: streaming the conversation trace, ${Math.round(parseRps)} rows/s`, 'targets (issue 7): hour trace, seven policies < 60 s; a week of 40 servers fluid < 60 s per policy', 'energy is modelled (profiles/llama2-70b.h100.json), not measured'],
    rows,
  };
}
