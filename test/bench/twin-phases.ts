/**
 * The simulator's prediction of a twin window over the phases (test/bench/twin-pool.ts --phases K).
 *
 * A simulated type's p99 TTFT moves with the phase of the instances' clock epochs and status reports against the
 * trace (where a burst lands in an epoch, which instance's last status the dispatch reads). The live run is one draw
 * of an unknown phase; the simulator's prediction of a window is its distribution over phases, and its point
 * prediction the median over phase draws. This module draws the phases (seeded), re-simulates a window at each draw
 * with the options its live run recorded (WindowSamples.simulation), and pools the draws: per type, the pooled p99
 * of each draw (the draw k of every window together), their median, and its paired block-bootstrap interval against
 * the live samples.
 */
import type { SimOptions } from '../../src/sim/types.ts';
import { loadConfig } from '../../actors/common/config.ts';
import { bootstrapRatio, ttftQuantile, WindowCollector, type BlockSamples, type Paired, type PhaseOptions, type RatioCI, type TwinSimulation, type WindowSamples } from './twin-stats.ts';

/** A seeded uniform draw in [0, 1) (Park-Miller): the twin check's phase draws. */
export function seededDraw(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 48271) % 2147483647) / 2147483647;
}

/**
 * `k` phase draws, seeded: in each, every instance's clock epoch at its own phase uniform over (0, epochMs] and its
 * status schedule at its own phase uniform over [1, statusIntervalMs) (the status phase's range twin.bench.ts's
 * status scan draws), at the window's status interval.
 */
export function phaseDraws(k: number, s: Pick<TwinSimulation, 'epochMs' | 'statusIntervalMs' | 'instances'>, seed: number): PhaseOptions[] {
  const draw = seededDraw(seed);
  return Array.from({ length: k }, () => ({
    instanceEpochPhaseMs: Array.from({ length: s.instances }, () => s.epochMs * (1 - draw())),
    instanceStatusPhaseMs: Array.from({ length: s.instances }, () => 1 + draw() * (s.statusIntervalMs - 1)),
    instanceStatusIntervalMs: s.statusIntervalMs,
  }));
}

/** The median: the middle value, or the mean of the two middle ones; NaN for none. */
export function median(xs: readonly number[]): number {
  const a = xs.filter(Number.isFinite).sort((x, y) => x - y);
  if (!a.length) return NaN;
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

/** A window's simulated TTFTs at one phase draw, by type and block of trace time (as WindowSamples.blocks.sim). */
export type DrawBlocks = Record<string, Record<string, BlockSamples>>;

/** A simulation's decision counts (SimResult.reconfigurations, the live counter's kinds as src/telemetry reconfigurationOf counts them). */
interface Reconfigurations { clock: number; instanceStart: number; reshard: number; emergency: number }

type Simulate = (opts: SimOptions, profile: undefined, hooks: { onRequest: (r: { arrivalMs: number; type: string; ttftMs: number }) => void }) => Promise<unknown>;

/** A window's decision counts at one phase draw, by the live counter's kind (as WindowSamples.decisions.sim). */
export type DrawDecisions = Record<string, number>;

/**
 * Re-simulates a window at each draw, collecting its TTFTs in the window's blocks (arrival in trace time: sim time x
 * speed); `decisions`, when given, gets each draw's decision counts in draw order.
 */
export async function simulateDraws(w: WindowSamples, sim: TwinSimulation, draws: readonly PhaseOptions[], simulate: Simulate, decisions?: DrawDecisions[]): Promise<DrawBlocks[]> {
  const out: DrawBlocks[] = [];
  for (const d of draws) {
    const c = new WindowCollector(w.blockS);
    const r = await simulate({ ...sim.options, ...d }, undefined, { onRequest: (x) => c.addTtft('sim', x.type, x.arrivalMs * w.speed, x.ttftMs) });
    out.push(c.blocks().sim);
    const k = typeof r === 'object' && r !== null && 'reconfigurations' in r ? (r.reconfigurations as Reconfigurations) : undefined;
    if (decisions && k) decisions.push({ clock: k.clock, instance_start: k.instanceStart, reshard: k.reshard, emergency: k.emergency });
  }
  return out;
}

/**
 * Each decision kind's count over the phase draws: per draw, the sum over the windows of that draw's count (window
 * i's draw k in `draws[i][k]`), and the median over the draws (the simulator's point prediction, as the p99 TTFT's),
 * against the windows' live sum. A decision count moves with the phases as a type's p99 does: where in its epoch a
 * burst lands decides whether an instance's clock changes then.
 */
export function phaseMedianDecisions(windows: readonly WindowSamples[], draws: readonly (readonly DrawDecisions[])[]): { kind: string; live: number; perDraw: number[]; median: number }[] {
  const K = draws[0]?.length ?? 0;
  if (draws.length !== windows.length || draws.some((d) => d.length !== K)) throw new Error('phaseMedianDecisions: one list of draws per window, every window the same number');
  const kinds = [...new Set(windows.flatMap((w, i) => [...Object.keys(w.decisions.live), ...draws[i]!.flatMap((d) => Object.keys(d))]))].sort();
  return kinds.map((kind) => {
    const perDraw = Array.from({ length: K }, (_, k) => draws.reduce((a, d) => a + (d[k]![kind] ?? 0), 0));
    return { kind, live: windows.reduce((a, w) => a + (w.decisions.live[kind] ?? 0), 0), perDraw, median: median(perDraw) };
  });
}

export interface PhaseMedianType {
  type: string;
  /** live requests of the type, and each draw's simulated ones (their median). */
  n: { live: number; sim: number };
  /** the pooled p99 TTFT of each draw (every window's draw k together), ms. */
  perDraw: number[];
  /** the live p99, the median of perDraw, their ratio, and its 95% paired block-bootstrap interval. */
  ci: RatioCI;
}

const EMPTY: BlockSamples = { ttft: [], tbt: [] };

/**
 * Each type's pooled p99 TTFT (quantile `q`) per phase draw, their median, sim / live. `draws[i][k]`: window i's draw
 * k (every window the same number of draws). The interval: a resample draws, within each window, as many blocks as it
 * has, with replacement, the same block indices on the live side and in every draw (the draws run the same trace
 * requests), and takes the median over the draws of each draw's p99 over the resampled blocks, against the live p99
 * over them: the bootstrap of the point estimate itself, so its interval holds the block sampling of both sides and
 * not the spread over phases (perDraw shows that).
 */
export function phaseMedianTypes(windows: readonly WindowSamples[], draws: readonly (readonly DrawBlocks[])[], opts: { resamples?: number; level?: number; seed?: number; q?: number } = {}): PhaseMedianType[] {
  const K = draws[0]?.length ?? 0;
  if (draws.length !== windows.length || draws.some((d) => d.length !== K)) throw new Error('phaseMedianTypes: one list of draws per window, every window the same number');
  const q = opts.q ?? 0.99;
  const types = [...new Set(windows.flatMap((w, i) => [...Object.keys(w.blocks.live), ...draws[i]!.flatMap((d) => Object.keys(d))]))].sort();
  // a side's blocks: one list per block, each a list of samples per draw (the live side: one)
  const stat = (bs: BlockSamples[][]) => median(Array.from({ length: bs[0]?.length ?? 0 }, (_, k) => ttftQuantile(bs.map((b) => b[k]!), q)));
  return types.map((type) => {
    const strata: Paired<BlockSamples[]>[][] = windows.map((w, i) => {
      const n = Math.max(1, Math.ceil(w.windowS / w.blockS));
      return Array.from({ length: n }, (_, b) => ({ live: [w.blocks.live[type]?.[b] ?? EMPTY], sim: draws[i]!.map((d) => d[type]?.[b] ?? EMPTY) }));
    });
    const all = strata.flat();
    const perDraw = Array.from({ length: K }, (_, k) => ttftQuantile(all.map((b) => b.sim[k]!), q));
    const simN = Array.from({ length: K }, (_, k) => all.reduce((a, b) => a + b.sim[k]!.ttft.length, 0));
    return { type, n: { live: all.reduce((a, b) => a + b.live[0]!.ttft.length, 0), sim: Math.round(median(simN)) }, perDraw, ci: bootstrapRatio(strata, stat, opts) };
  });
}

/** The spec a twin window was run with: its config, shape and the simulation's knobs (twin.bench.ts TwinSpec). */
export interface TwinSimSpec {
  config: string;
  sim: Pick<SimOptions, 'profilePath' | 'servers' | 'gpusPerServer' | 'instanceTp' | 'knobs' | 'epochs' | 'asConfigured' | 'reshardExecution' | 'costs'>;
}

/**
 * The simulation's options of a twin window (twin.bench.ts runTwin), without phases and callbacks: the spec's cluster,
 * the config's SLOs, thresholds and instance limits, the live data path's time and clock change, the trace window.
 */
export function twinSimOptions(spec: TwinSimSpec, w: { fromS: number; windowS: number; speed: number; requestPathMs: SimOptions['requestPathMs']; clockChangeMs?: number; untilMs?: number; trace: string }): SimOptions {
  const c = loadConfig(spec.config);
  return {
    requestPathMs: w.requestPathMs,
    policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, ...spec.sim,
    ...(w.clockChangeMs !== undefined ? { costs: { ...spec.sim.costs, clockChangeMs: w.clockChangeMs } } : {}),
    // the live cluster's SLOs and class thresholds (its config's slo: and thresholds:)
    slo: c.slo, thresholds: c.thresholds,
    instanceLimits: { maxInEngine: c.engine.maxInEngine, maxQueued: c.engine.maxQueued, rejectAfterMs: c.emergency.rejectAfterMs, moveQueueAbove: c.emergency.moveQueueAbove, retryAfterS: c.emergency.retryAfterS },
    // the live intake's classifier (the gateway's online output predictor, max_tokens the trace's output as replay sends it)
    dispatch: 'policy', predictor: 'online',
    trace: { kind: 'file', path: w.trace, startMs: w.fromS * 1000, durationMs: w.windowS * 1000, speed: w.speed },
    // the span the live counters cover (replay reads them before its first send and COUNTER_WAIT_S after its last completion):
    // the simulation counts its decisions and energy over the same time (its timers run on past its last request)
    ...(w.untilMs !== undefined ? { untilMs: w.untilMs } : {}),
  };
}

/**
 * A samples file written without its simulation (WindowSamples.simulation): rebuilt from the spec whose config the
 * window's group names, its requestPathMs and the live clock change the caller gives (its report's notes say it),
 * at the config's status interval and no aligned phases; its energy span (untilMs) is left out (it moves no TTFT).
 */
export function legacySimulation(w: WindowSamples, specs: readonly TwinSimSpec[], clockChangeMs: number | undefined, trace: string): TwinSimulation {
  const spec = specs.find((s) => w.group.startsWith(`${s.config},`));
  const why = !spec ? `no twin spec has the config its group names (${w.group})` : !w.requestPathMs ? 'it has no requestPathMs' : clockChangeMs === undefined ? 'no --clock-change-ms was given (its report\'s notes give the live clock change)' : '';
  if (why) throw new Error(`samples of ${w.group} ${w.label} carry no simulation options (written by an older twin.bench.ts) and cannot be rebuilt: ${why}; rerun the window with TWIN_SAMPLES, or pass --phases 0`);
  const c = loadConfig(spec!.config);
  const p = w.requestPathMs!;
  return {
    options: twinSimOptions(spec!, { fromS: w.startS, windowS: w.windowS, speed: w.speed, requestPathMs: { ...(p.toGatewayMs !== undefined ? { toGatewayMs: p.toGatewayMs } : {}), toEngineMs: p.toEngineMs, toClientMs: p.toClientMs, startToEngineMs: p.startToEngineMs }, clockChangeMs, trace }),
    aligned: {},
    epochMs: (spec!.sim.epochs?.instanceS ?? c.epochs.instanceS) * 1000,
    statusIntervalMs: c.liveness.statusIntervalMs,
    instances: Math.floor(((spec!.sim.servers ?? 1) * (spec!.sim.gpusPerServer ?? 1)) / (spec!.sim.instanceTp ?? 1)),
  };
}
