/**
 * `dynamollm simulate`: trace-driven cluster simulation of one or more policies (src/sim). Energy is
 * modelled (src/model, its calibration is printed), never measured.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, num, req, UsageError } from '../args.ts';
import { POLICY_NAMES, paperFiguresFor, type Fidelity, type PolicyName, type SimOptions, type TraceSource } from '../../sim/types.ts';
import { simulateMany } from '../../sim/parallel.ts';
import { table, html } from '../../sim/report.ts';
import { detectTraceTimeUnit, TIME_UNITS, type TimeUnit } from '../../sim/trace.ts';

export const summary = 'trace-driven cluster simulation: energy, power, latency and SLOs per policy';

const USAGE = `usage: dynamollm simulate --trace FILE|synth:SHAPE:DAYS:RPS --policy NAME[,NAME...] --model M --gpu G --servers N
  [--fidelity step|fluid] [--slo-scale K] [--rate-scale K|auto] [--gpu-hour-price USD] [--carbon FILE|gCO2perKWh]
  [--duration-s S] [--start-s S] [--lengths-from FILE] [--seed N] [--serial] [--json OUT] [--report DIR]
  [--time-unit auto|s|ms|us] [--max-context TOKENS] [--prefix-routing] [--no-prefix-cache] [--prefix-block-tokens N]
trace files: Azure/BurstGPT CSV or JSONL (timestamp|time|arrival_time, input_length|input_tokens|prompt_tokens,
  output_length|output_tokens|completion_tokens, optional hash_ids: prefix-block hashes, e.g. Mooncake traces);
  numeric timestamps in --time-unit (auto: detected from the first rows, the choice is printed)
--max-context: requests with prompt + output above it are refused and counted apart (default: the model's
  context, at least 8192); --prefix-routing: cache-aware dispatch (step fidelity, traces with hash_ids)
policies: ${POLICY_NAMES.join(', ')}
synthetic trace: synth:conversation|coding|flat|poisson:DAYS:MEAN_RPS (lengths from --lengths-from, default built-in)`;

/** Share of refused (over-context) requests above which simulate prints a warning. */
export const REFUSED_WARN_SHARE = 0.01;

export async function run(argv: string[]): Promise<number | undefined> {
  const { values: v } = parse(argv, {
    trace: { type: 'string' }, policy: { type: 'string' }, model: { type: 'string' }, gpu: { type: 'string' },
    servers: { type: 'string' }, fidelity: { type: 'string' }, 'slo-scale': { type: 'string' }, 'rate-scale': { type: 'string' },
    'gpu-hour-price': { type: 'string' }, carbon: { type: 'string' }, json: { type: 'string' }, report: { type: 'string' },
    'duration-s': { type: 'string' }, 'start-s': { type: 'string' }, 'lengths-from': { type: 'string' }, seed: { type: 'string' },
    profile: { type: 'string' }, serial: { type: 'boolean' }, 'skip-bad': { type: 'boolean' }, help: { type: 'boolean' },
    'time-unit': { type: 'string' }, 'max-context': { type: 'string' }, 'prefix-routing': { type: 'boolean' },
    'no-prefix-cache': { type: 'boolean' }, 'prefix-block-tokens': { type: 'string' },
  });
  if (v.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const policies = req(v.policy, 'policy').split(',').map((s) => s.trim()) as PolicyName[];
  for (const p of policies) if (!(POLICY_NAMES as readonly string[]).includes(p)) throw new UsageError(`unknown policy '${p}'; known: ${POLICY_NAMES.join(', ')}`);
  const fidelity = (v.fidelity ?? 'step') as Fidelity;
  if (fidelity !== 'step' && fidelity !== 'fluid') throw new UsageError(`--fidelity must be step or fluid`);
  const traceArg = req(v.trace, 'trace');
  const seed = num(v.seed, 'seed', 1);
  let trace: TraceSource;
  if (traceArg.startsWith('synth:')) {
    const [, shape, days, rps] = traceArg.split(':');
    if (!['conversation', 'coding', 'flat', 'poisson'].includes(shape)) throw new UsageError(`synthetic shape must be conversation|coding|flat|poisson`);
    trace = { kind: 'synth', shape: shape as 'conversation', durationS: num(days, 'trace days') * 86400, meanRps: num(rps, 'trace rps'), seed, lengthsFromFile: v['lengths-from'] };
  } else {
    const dur = v['duration-s'] !== undefined ? num(v['duration-s'], 'duration-s') * 1000 : undefined;
    const tu = v['time-unit'] ?? 'auto';
    if (tu !== 'auto' && !(TIME_UNITS as readonly string[]).includes(tu)) throw new UsageError(`--time-unit must be auto, ${TIME_UNITS.join(', ')}`);
    let timeUnit = tu as TimeUnit | 'auto';
    if (timeUnit === 'auto') {
      // decided once here, printed, and passed to every policy's run explicitly
      const d = await detectTraceTimeUnit(traceArg);
      if (d) {
        timeUnit = d.unit;
        process.stdout.write(`time unit: ${d.unit} (${d.reason}; --time-unit overrides)\n`);
      }
    }
    trace = { kind: 'file', path: traceArg, startMs: num(v['start-s'], 'start-s', 0) * 1000, durationMs: dur, skipBad: v['skip-bad'], timeUnit };
  }
  const carbon = v.carbon === undefined ? undefined : Number.isFinite(Number(v.carbon)) ? Number(v.carbon) : v.carbon;
  const base: Omit<SimOptions, 'policy'> = {
    trace, model: req(v.model, 'model'), gpu: req(v.gpu, 'gpu'), servers: num(v.servers, 'servers'), fidelity,
    sloScale: num(v['slo-scale'], 'slo-scale', 1), rateScale: v['rate-scale'] === 'auto' ? 'auto' : num(v['rate-scale'], 'rate-scale', 1),
    gpuHourPrice: num(v['gpu-hour-price'], 'gpu-hour-price', 2.5), carbon, seed, profilePath: v.profile,
    maxContext: v['max-context'] === undefined ? undefined : num(v['max-context'], 'max-context'),
    prefixRouting: v['prefix-routing'] ?? false, prefixCaching: !v['no-prefix-cache'],
    prefixBlockTokens: v['prefix-block-tokens'] === undefined ? undefined : num(v['prefix-block-tokens'], 'prefix-block-tokens'),
  };
  const prog = new Array<number>(policies.length).fill(0);
  const tty = process.stderr.isTTY;
  const draw = () => {
    if (!tty) return;
    const f = prog.reduce((a, b) => a + b, 0) / prog.length;
    const n = Math.round(f * 30);
    process.stderr.write(`\r[${'#'.repeat(n)}${'.'.repeat(30 - n)}] ${(f * 100).toFixed(0)}%  ${policies.map((p, i) => `${p} ${(prog[i] * 100).toFixed(0)}%`).join(' ')}`);
  };
  const t0 = performance.now();
  const results = await simulateMany(policies.map((policy) => ({ ...base, policy })), (i, f) => {
    prog[i] = f;
    draw();
  }, policies.length > 1 && !v.serial);
  if (tty) process.stderr.write('\n');
  const paper = paperFiguresFor(trace, results[0]?.durationS ?? 0);
  process.stdout.write(table(results, paper.figures) + '\n');
  process.stdout.write(`${paper.source}\n`);
  process.stdout.write(`rate scale: x${(results[0]?.rateScale ?? 1).toFixed(3)}${base.rateScale === 'auto' ? ' (auto: single-pool sized for the trace peak = --servers)' : ''}\n`);
  const r0 = results[0];
  if (r0 && r0.refusedOverContext > 0) {
    const share = r0.refusedOverContext / Math.max(1, r0.requests);
    process.stdout.write(`${share >= REFUSED_WARN_SHARE ? 'WARNING: ' : ''}refused ${r0.refusedOverContext} of ${r0.requests} requests (${(share * 100).toFixed(1)}%): prompt + output over the ${r0.maxContext}-token context of ${base.model}${share >= REFUSED_WARN_SHARE ? '; pick a longer-context --model or --max-context' : ''}\n`);
  }
  process.stdout.write(`simulated ${results[0]?.requests ?? 0} requests x ${results.length} policies in ${((performance.now() - t0) / 1000).toFixed(1)} s wall (fidelity ${fidelity})\n`);
  if (v.json) writeFileSync(v.json, JSON.stringify({ command: ['simulate', ...argv].join(' '), results }, null, 1));
  if (v.report) {
    mkdirSync(v.report, { recursive: true });
    writeFileSync(join(v.report, 'index.html'), html(results, `dynamollm simulate: ${traceArg}`));
  }
  return 0;
}
