/**
 * `dynamollm simulate`: trace-driven cluster simulation of one or more policies (src/sim). Energy is
 * modelled (src/model, its calibration is printed), never measured.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { inputFile, nonNegativeNum, num, positiveNum, req, UsageError, wholeNum } from '../args.ts';
import { action, jsonOption, type ExitCode } from '../program.ts';
import { POLICY_NAMES, paperFiguresFor, type Fidelity, type PolicyName, type SimOptions, type TraceSource } from '../../sim/types.ts';
import { simulateMany } from '../../sim/parallel.ts';
import { table, html } from '../../sim/report.ts';
import { detectTraceTimeUnit, TIME_UNITS, type TimeUnit } from '../../sim/trace.ts';
import { ConfigError, defaultConfig, loadConfig, type ClusterConfig } from '../../../actors/common/config.ts';
import { instanceStatusMs } from '../../policy/suspect.ts';

const DESCRIPTION = `Trace files: Azure/BurstGPT CSV or JSONL (timestamp|time|arrival_time, input_length|input_tokens|prompt_tokens,
output_length|output_tokens|completion_tokens, optional hash_ids: prefix-block hashes, e.g. Mooncake traces);
numeric timestamps in --time-unit (auto: detected from the first rows, the choice is printed).
Synthetic trace: synth:conversation|coding|flat|poisson:DAYS:MEAN_RPS (lengths from --lengths-from, default built-in).
Energy is modelled (src/model), never measured.`;

interface SimulateOptions {
  trace: string;
  policy: string;
  model: string;
  gpu: string;
  servers: string;
  fidelity: string;
  sloScale: string;
  rateScale: string;
  gpuHourPrice: string;
  carbon?: string;
  json?: boolean;
  out?: string;
  report?: string;
  durationS?: string;
  startS: string;
  lengthsFrom?: string;
  seed: string;
  profile?: string;
  serial?: boolean;
  skipBad?: boolean;
  timeUnit: string;
  maxContext?: string;
  prefixRouting?: boolean;
  prefixCache: boolean;
  prefixBlockTokens?: string;
  reshardExecution: string;
  poolPlanner: string;
  predictor: string;
  unusedServers: string;
  sleepStandby: string;
  sleepStandbyWindowS?: string;
  serverBootS?: string;
  powerReserve?: string;
  instanceStartS?: string;
  instanceStopS?: string;
  clusterEpochS?: string;
  clusterEpochFloorS?: string;
  drainMigrateS?: string;
  speed: string;
  config?: string;
  statusIntervalMs?: string;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .requiredOption('--trace <file|synth:SHAPE:DAYS:RPS>', 'trace file, or a synthetic trace')
    .requiredOption('--policy <names>', `policies, comma-separated: ${POLICY_NAMES.join(', ')}`)
    .requiredOption('--model <m>', 'model id (e.g. llama2-70b)')
    .requiredOption('--gpu <g>', 'GPU id (e.g. h100)')
    .requiredOption('--servers <n>', 'servers in the cluster')
    .option('--fidelity <f>', 'step | fluid', 'step')
    .option('--slo-scale <k>', "multiply the SLOs (--config's slo:, else Table IV's) by K", '1')
    .option('--rate-scale <k|auto>', 'multiply the arrival rate by K (auto: single-pool sized for the trace peak = --servers)', '1')
    .option('--gpu-hour-price <usd>', 'price of a GPU hour', '2.5')
    .option('--carbon <file|gCO2perKWh>', 'carbon intensity: a constant or a time series file')
    .option('--duration-s <s>', 'only S seconds of the trace (a trace file, or a synthetic trace: a window of its days)')
    .option('--start-s <s>', 'start S seconds into the trace (a trace file or a synthetic trace)', '0')
    .option('--lengths-from <file>', 'request lengths of a synthetic trace from this trace')
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--profile <file>', 'profile (default the shipped one of --model and --gpu)')
    .option('--serial', 'run the policies one after the other in one thread')
    .option('--skip-bad', 'skip malformed trace rows instead of failing')
    .option('--time-unit <u>', `unit of numeric timestamps: auto, ${TIME_UNITS.join(', ')}`, 'auto')
    .option('--max-context <tokens>', "refuse (and count apart) requests with prompt + output above it (default: the model's context, at least 8192)")
    .option('--prefix-routing', 'cache-aware dispatch (step fidelity, traces with hash_ids)')
    .option('--no-prefix-cache', 'turn the engines\' prefix cache off')
    .option('--prefix-block-tokens <n>', 'tokens per prefix-cache block')
    .option('--reshard-execution <how>', "how a pool carries out a re-shard: overlap (the paper's NVLink re-shard: the old layout serves until the new one is up after tau x Table VI) or units (the live pool's: unit by unit, an engine stopped before one starts on its GPUs, each start taking --instance-start-s)", 'overlap')
    .option('--pool-planner <how>', "the pools' re-shard planner, as a live pool's config `planner`: heuristic or milp (Eq. 1 solved by HiGHS, taken by the pool machine's rule)", 'heuristic')
    .option('--predictor <how>', "output-length prediction: proxy (the paper's BERT proxy, right 81% of the time) or online (the live gateway's: learns from completed requests, max_tokens the trace's output as replay sends it; step fidelity)", 'proxy')
    .option('--drain-migrate-s <s>', 'step fidelity: a drained instance (scale-in, re-shard) hands requests with more than this many seconds of decode left to its pool\'s peers instead of finishing them (docs/SIMULATION.md; default off)')
    .option('--cluster-epoch-floor-s <s>', 'shorten the cluster epoch while the forecast is confident, down to this many seconds (src/policy/epoch-length.ts; default off)')
    .option('--cluster-epoch-s <s>', 'the cluster plan\'s epoch, s (default 1800: the paper\'s 30 min; early re-plans at most once per epoch)')
    .option('--instance-start-s <s>', 'seconds until a new engine serves (default 300: Table V, weights cached in-cluster)')
    .option('--instance-stop-s <s>', 'seconds from a drained engine\'s stop to its GPUs free (default 5: a vLLM process exits in seconds)')
    .option('--unused-servers <how>', "servers holding no pool's grant and no instance: powered (their GPUs draw unloaded idle power) or off (the cluster machine's server power decisions, as the live cluster manager takes them with a power driver: drained servers powered off beyond a reserve, powered on a boot ahead of need; policies without the cluster machine keep every server powered)", 'powered')
    .option('--sleep-standby <on|off>', "step fidelity, dynamollm: keep the instances a pool's forecast does not need before a wake asleep through vLLM's sleep mode (level 1 or 2, woken in seconds when the forecast rises), instead of idle at their loaded idle power", 'off')
    .option('--sleep-standby-window-s <s>', 'with --sleep-standby on: how long its forecast remembers the busiest 10 s of a pool\'s arrivals, s (default 180)')
    .option('--server-boot-s <s>', 'with --unused-servers off: a server\'s boot time, s (default 120: Table V, a VM 1-2 min)')
    .option('--power-reserve <n>', 'with --unused-servers off: idle powered servers kept beyond the grants (default 1)')
    .option('--config <file>', "a cluster config (up's YAML/JSON): the requests' SLOs and classes are its slo: and thresholds:, and the simulated instances publish their statuses at its instances' status interval (liveness.instanceStatusIntervalMs) and the pools suspect a silent one after its liveness.suspectAfterMs and call it dead after its liveness.deadAfterMs (default: the config defaults, Table IV's SLOs and classes)")
    .option('--status-interval-ms <ms>', "step fidelity: the interval between two statuses of an instance, ms (default: --config's instances' status interval, liveness.instanceStatusIntervalMs, else the live default, 250)")
    .option('--speed <x>', 'time compression of a trace file, as replay --speed (the window is in trace time)', '1')
    .addOption(jsonOption())
    .option('--out <file>', 'also write every number, time series included, as JSON to FILE')
    .option('--report <dir>', 'write an HTML report to DIR/index.html')
    .addHelpText('after', `\n${DESCRIPTION}`)
    .action(action(exit, (values: SimulateOptions) => simulate(values)));
}

function poolPlannerOf(x: string): 'heuristic' | 'milp' {
  if (x !== 'heuristic' && x !== 'milp') throw new UsageError(`--pool-planner must be heuristic or milp, got '${x}'`);
  return x;
}

function reshardExecutionOf(x: string): 'units' | 'overlap' {
  if (x !== 'units' && x !== 'overlap') throw new UsageError(`--reshard-execution must be units or overlap, got '${x}'`);
  return x;
}

function predictorOf(x: string, fidelity: Fidelity): 'proxy' | 'online' {
  if (x !== 'proxy' && x !== 'online') throw new UsageError(`--predictor must be proxy or online, got '${x}'`);
  if (x === 'online' && fidelity !== 'step') throw new UsageError('--predictor online learns from completed requests: step fidelity only (--fidelity step)');
  return x;
}

function positive(x: number, flag: string): number {
  if (!(x > 0)) throw new UsageError(`--${flag} must be > 0, got ${x}`);
  return x;
}

function nonNegInt(x: number, flag: string): number {
  if (!(Number.isInteger(x) && x >= 0)) throw new UsageError(`--${flag} must be a whole number >= 0, got ${x}`);
  return x;
}

function nonNegative(x: number, flag: string): number {
  if (!(x >= 0)) throw new UsageError(`--${flag} must be >= 0, got ${x}`);
  return x;
}

function onOff(x: string, flag: string): 'on' | 'off' {
  if (x !== 'on' && x !== 'off') throw new UsageError(`--${flag} must be on or off, got '${x}'`);
  return x;
}

function unusedServersOf(x: string): 'powered' | 'off' {
  if (x !== 'powered' && x !== 'off') throw new UsageError(`--unused-servers must be powered or off, got '${x}'`);
  return x;
}

/**
 * The interval of the simulated instances' statuses to their pool's dispatch, ms: --status-interval-ms, else the
 * instances' status interval of --config (policy instanceStatusMs: liveness.instanceStatusIntervalMs, else 250 ms or its
 * liveness.statusIntervalMs where shorter), else the live cluster's default (a config without liveness), so that the
 * simulated dispatch reads statuses as old as the live cluster's would be.
 */
export function statusIntervalOf(v: Pick<SimulateOptions, 'config' | 'statusIntervalMs'>): number {
  if (v.statusIntervalMs !== undefined) {
    const ms = num(v.statusIntervalMs, 'status-interval-ms');
    if (!(ms >= 1 && Number.isFinite(ms))) throw new UsageError(`--status-interval-ms must be at least 1, got ${v.statusIntervalMs}`);
    return ms;
  }
  return instanceStatusMs((v.config === undefined ? defaultConfig() : configOf(v.config)).liveness);
}

/**
 * The cluster's SLOs and class thresholds the simulated requests get (SimOptions `slo`, `thresholds`): the `slo:` and
 * `thresholds:` of --config, as the live cluster on that config classifies its requests; none without a config (the
 * simulator's default, Table IV's, the config's defaults). --slo-scale multiplies these SLOs.
 */
export function sloSettingsOf(v: Pick<SimulateOptions, 'config'>): Pick<SimOptions, 'slo' | 'thresholds'> {
  if (v.config === undefined) return {};
  const c = configOf(v.config);
  return { slo: c.slo, thresholds: c.thresholds };
}

/**
 * The machines' liveness verdicts on a silent instance, from --config's liveness (none without a config: the live
 * defaults): `deadAfterMs` its liveness.deadAfterMs (SimOptions `deadAfterMs`: the pool machines' death verdict, the
 * instance machines' forgetting of a peer), `suspectAfterMs` its liveness.suspectAfterMs where it sets one (else the
 * simulator derives it from the status interval as the live cluster does).
 */
export function livenessSettingsOf(v: Pick<SimulateOptions, 'config'>): Pick<SimOptions, 'suspectAfterMs' | 'deadAfterMs'> {
  if (v.config === undefined) return {};
  const l = configOf(v.config).liveness;
  return { deadAfterMs: l.deadAfterMs, ...(l.suspectAfterMs !== undefined ? { suspectAfterMs: l.suspectAfterMs } : {}) };
}

function configOf(path: string): ClusterConfig {
  try {
    return loadConfig(inputFile(path, '--config'));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** Share of refused (over-context) requests above which simulate prints a warning. */
export const REFUSED_WARN_SHARE = 0.01;

/**
 * A synthetic trace (synth:SHAPE:DAYS:RPS) as its source: its DAYS drawn whole, then --start-s and --duration-s
 * window it as they window a trace file (the window's requests are those of the whole days; a run of hours 9-12
 * starts with no forecast history). --speed is for a trace file only, and refused here rather than ignored.
 */
export function synthTraceOf(traceArg: string, v: Pick<SimulateOptions, 'durationS' | 'startS' | 'speed' | 'lengthsFrom'>, seed: number): TraceSource {
  const [, shape, days, rps] = traceArg.split(':');
  if (!['conversation', 'coding', 'flat', 'poisson'].includes(shape)) throw new UsageError(`synthetic shape must be conversation|coding|flat|poisson`);
  if (num(v.speed, 'speed') !== 1) throw new UsageError('--speed: for a trace file only; a synthetic trace runs at its own rate (synth:SHAPE:DAYS:RPS)');
  const nDays = num(days, 'trace days');
  if (!(nDays > 0)) throw new UsageError(`synthetic trace '${traceArg}': DAYS must be > 0 (synth:SHAPE:DAYS:RPS, e.g. synth:${shape}:1:5), got ${days}`);
  const meanRps = num(rps, 'trace rps');
  if (!(meanRps > 0)) throw new UsageError(`synthetic trace '${traceArg}': RPS must be > 0 (synth:SHAPE:DAYS:RPS, e.g. synth:${shape}:1:5), got ${rps}`);
  const durationS = nDays * 86400;
  const startS = num(v.startS, 'start-s');
  if (!(startS >= 0 && startS < durationS)) throw new UsageError(`--start-s must be >= 0 and within the trace's ${durationS} s, got ${v.startS}`);
  const windowS = v.durationS !== undefined ? num(v.durationS, 'duration-s') : undefined;
  if (windowS !== undefined && !(windowS > 0)) throw new UsageError(`--duration-s must be > 0, got ${v.durationS}`);
  return {
    kind: 'synth', shape: shape as 'conversation', durationS, meanRps, seed,
    lengthsFromFile: v.lengthsFrom !== undefined ? inputFile(v.lengthsFrom, '--lengths-from') : undefined,
    ...(startS > 0 ? { startMs: startS * 1000 } : {}), ...(windowS !== undefined ? { durationMs: windowS * 1000 } : {}),
  };
}

async function simulate(v: SimulateOptions): Promise<number> {
  // the text report goes to stdout, or to stderr with --json (stdout then carries the JSON alone)
  const say = (text: string) => (v.json ? process.stderr : process.stdout).write(text);
  const policies = req(v.policy, 'policy').split(',').map((s) => s.trim()) as PolicyName[];
  for (const p of policies) if (!(POLICY_NAMES as readonly string[]).includes(p)) throw new UsageError(`unknown policy '${p}'; known: ${POLICY_NAMES.join(', ')}`);
  const fidelity = v.fidelity as Fidelity;
  if (fidelity !== 'step' && fidelity !== 'fluid') throw new UsageError(`--fidelity must be step or fluid`);
  const traceArg = req(v.trace, 'trace');
  const seed = num(v.seed, 'seed');
  let trace: TraceSource;
  if (traceArg.startsWith('synth:')) {
    trace = synthTraceOf(traceArg, v, seed);
  } else {
    inputFile(traceArg, '--trace');
    const dur = v.durationS !== undefined ? num(v.durationS, 'duration-s') * 1000 : undefined;
    const tu = v.timeUnit;
    if (tu !== 'auto' && !(TIME_UNITS as readonly string[]).includes(tu)) throw new UsageError(`--time-unit must be auto, ${TIME_UNITS.join(', ')}`);
    let timeUnit = tu as TimeUnit | 'auto';
    if (timeUnit === 'auto') {
      // decided once here, printed, and passed to every policy's run explicitly
      const d = await detectTraceTimeUnit(traceArg);
      if (d) {
        timeUnit = d.unit;
        say(`time unit: ${d.unit} (${d.reason}; --time-unit overrides)\n`);
      }
    }
    const speed = num(v.speed, 'speed');
    if (!(speed > 0)) throw new UsageError(`--speed must be > 0, got ${v.speed}`);
    trace = { kind: 'file', path: traceArg, startMs: num(v.startS, 'start-s') * 1000, durationMs: dur, skipBad: v.skipBad, timeUnit, speed };
  }
  const carbon = v.carbon === undefined ? undefined : Number.isFinite(Number(v.carbon)) ? Number(v.carbon) : v.carbon;
  const base: Omit<SimOptions, 'policy'> = {
    trace, model: req(v.model, 'model'), gpu: req(v.gpu, 'gpu'), servers: wholeNum(v.servers, 'servers', 1), fidelity,
    ...sloSettingsOf(v), sloScale: positiveNum(v.sloScale, 'slo-scale'), rateScale: v.rateScale === 'auto' ? 'auto' : positiveNum(v.rateScale, 'rate-scale'),
    gpuHourPrice: nonNegativeNum(v.gpuHourPrice, 'gpu-hour-price'), carbon, seed, profilePath: v.profile !== undefined ? inputFile(v.profile, '--profile') : undefined,
    maxContext: v.maxContext === undefined ? undefined : num(v.maxContext, 'max-context'),
    prefixRouting: v.prefixRouting ?? false, prefixCaching: v.prefixCache,
    prefixBlockTokens: v.prefixBlockTokens === undefined ? undefined : num(v.prefixBlockTokens, 'prefix-block-tokens'),
    reshardExecution: reshardExecutionOf(v.reshardExecution),
    poolPlanner: poolPlannerOf(v.poolPlanner),
    predictor: predictorOf(v.predictor, fidelity),
    unusedServers: unusedServersOf(v.unusedServers),
    instanceStatusIntervalMs: statusIntervalOf(v), ...livenessSettingsOf(v),
    sleepStandby: onOff(v.sleepStandby, 'sleep-standby'),
    ...(v.sleepStandbyWindowS !== undefined ? { sleepStandbyWindow: { windowMs: positive(num(v.sleepStandbyWindowS, 'sleep-standby-window-s'), 'sleep-standby-window-s') * 1000 } } : {}),
    ...(v.serverBootS !== undefined ? { serverBootS: positive(num(v.serverBootS, 'server-boot-s'), 'server-boot-s') } : {}),
    ...(v.powerReserve !== undefined ? { powerReserve: nonNegInt(num(v.powerReserve, 'power-reserve'), 'power-reserve') } : {}),
    ...(v.instanceStartS !== undefined || v.instanceStopS !== undefined ? {
      costs: {
        ...(v.instanceStartS !== undefined ? { instanceStartS: num(v.instanceStartS, 'instance-start-s') } : {}),
        ...(v.instanceStopS !== undefined ? { instanceStopS: nonNegative(num(v.instanceStopS, 'instance-stop-s'), 'instance-stop-s') } : {}),
      },
    } : {}),
    ...(v.drainMigrateS !== undefined ? { drainMigration: { minRemainingS: nonNegative(num(v.drainMigrateS, 'drain-migrate-s'), 'drain-migrate-s') } } : {}),
    ...(v.clusterEpochFloorS !== undefined ? { clusterEpochFloorS: positive(num(v.clusterEpochFloorS, 'cluster-epoch-floor-s'), 'cluster-epoch-floor-s') } : {}),
    ...(v.clusterEpochS !== undefined ? { epochs: { clusterS: positive(num(v.clusterEpochS, 'cluster-epoch-s'), 'cluster-epoch-s') } } : {}),
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
  say(table(results, paper.figures) + '\n');
  say(`${paper.source}\n`);
  say(`rate scale: x${(results[0]?.rateScale ?? 1).toFixed(3)}${base.rateScale === 'auto' ? ' (auto: single-pool sized for the trace peak = --servers)' : ''}\n`);
  const r0 = results[0];
  if (r0 && r0.refusedOverContext > 0) {
    const share = r0.refusedOverContext / Math.max(1, r0.requests);
    say(`${share >= REFUSED_WARN_SHARE ? 'WARNING: ' : ''}refused ${r0.refusedOverContext} of ${r0.requests} requests (${(share * 100).toFixed(1)}%): prompt + output over the ${r0.maxContext}-token context of ${base.model}${share >= REFUSED_WARN_SHARE ? '; pick a longer-context --model or --max-context' : ''}\n`);
  }
  say(`simulated ${results[0]?.requests ?? 0} requests x ${results.length} policies in ${((performance.now() - t0) / 1000).toFixed(1)} s wall (fidelity ${fidelity})\n`);
  const doc = { command: process.argv.slice(2).join(' '), results };
  if (v.json) process.stdout.write(JSON.stringify(doc) + '\n');
  if (v.out) writeFileSync(v.out, JSON.stringify(doc, null, 1));
  if (v.report) {
    mkdirSync(v.report, { recursive: true });
    writeFileSync(join(v.report, 'index.html'), html(results, `dynamollm simulate: ${traceArg}`));
  }
  return 0;
}
