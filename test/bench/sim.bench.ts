/**
 * Simulator speed: simulated requests per second of wall time, step fidelity on the Azure 2023
 * conversation hour (dynamollm) and fluid fidelity on a synthetic conversation-shaped week of 40 servers (rate-scale auto).
 * Baseline measured in the same run: streaming the trace alone (parse rate), so the ratio shows the
 * simulation's cost per request over reading it.
 */
import type { BenchSection } from './types.ts';
import { simulate } from '../../src/sim/index.ts';
import { readTrace } from '../../src/sim/trace.ts';

export async function bench(): Promise<BenchSection> {
  const path = 'data/traces/AzureLLMInferenceTrace_conv.csv';
  let t = performance.now();
  let n = 0;
  for await (const _ of readTrace(path)) n++;
  const parseRps = n / ((performance.now() - t) / 1000);
  t = performance.now();
  const s = await simulate({ policy: 'dynamollm', fidelity: 'step', model: 'llama2-70b', gpu: 'h100', servers: 12, trace: { kind: 'file', path } });
  const stepWall = (performance.now() - t) / 1000;
  t = performance.now();
  const f = await simulate({ policy: 'dynamollm', fidelity: 'fluid', model: 'llama2-70b', gpu: 'h100', servers: 40, rateScale: 'auto', trace: { kind: 'synth', shape: 'conversation', durationS: 7 * 86400, meanRps: 5, seed: 1, lengthsFromFile: path } });
  const fluidWall = (performance.now() - t) / 1000;
  const row = (name: string, reqs: number, wall: number) => ({ case: name, requests: reqs, wall_s: wall.toFixed(2), sim_req_per_s: Math.round(reqs / wall), vs_parse: (reqs / wall / parseRps).toFixed(3) });
  return {
    title: 'Simulator speed (src/sim)',
    notes: [`baseline: streaming the conversation trace, ${Math.round(parseRps)} rows/s`, 'targets (issue 7): hour trace, seven policies < 60 s; a week of 40 servers fluid < 60 s per policy'],
    rows: [row('step, conv hour, 12 servers, dynamollm', s.requests, stepWall), row(`fluid, synthetic week (rate x${f.rateScale.toFixed(2)}), 40 servers, dynamollm`, f.requests, fluidWall)],
  };
}
