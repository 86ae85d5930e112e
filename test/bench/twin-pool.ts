/**
 * The pooled twin check: reads the samples files of several twin windows (twin.bench.ts / twin-reshard.bench.ts run
 * with TWIN_SAMPLES=FILE, each at its own TWIN_FROM_S), pools each group's windows (one config, speed and length)
 * and prints, per group, energy and the decision counts (sim / live of the sums, and the windows' own range) and per
 * type the p50 and p99 TTFT and the p99 TBT sim / live with their 95% paired block-bootstrap intervals
 * (twin-stats.ts), each p99 judged against the 15% target by its interval. With --phases K (default 8; 0: none) it
 * re-simulates each window at K seeded phase draws of its instances' clock epochs and status reports with the options
 * its live run recorded (twin-phases.ts) and adds, per type, the pooled p99 TTFT of each draw, their median (the
 * simulator's point prediction) sim / live judged against 15%, and that median's paired block-bootstrap interval judged
 * as the others, and each decision kind's count per draw (summed over the windows) and their median judged against
 * 10%. Samples files without their simulation's options are rebuilt from their spec with --clock-change-ms MS.
 *   node --import tsx test/bench/twin-pool.ts [--phases K] [--clock-change-ms MS] FILE...
 *   (TWIN_RESAMPLES, default 1000; TWIN_MIN_P99_N, default 100)
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { poolTypes, pooledSum, ttftQuantile, verdict, type WindowSamples } from './twin-stats.ts';
import { legacySimulation, phaseDraws, phaseMedianDecisions, phaseMedianTypes, simulateDraws, type DrawBlocks, type DrawDecisions } from './twin-phases.ts';

const TARGET = { energy: 0.05, p99: 0.15, decisions: 0.1 };
/**
 * The fewest requests of a type on a side for its p99 to be judged: 100 (the single window's rule too, twin.bench.ts),
 * so that its p99 is not its largest sample. Between 100 and 500 the p99 is one of the 2-5 largest and its interval,
 * drawn from those few, is narrow on its upper side (a bootstrap cannot draw past the largest): such a type is judged,
 * its row says on how few it rests. A type with fewer is listed as informational, with the reason.
 */
export const MIN_P99_N = 100;

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-');
const span = (lo: number, hi: number) => (Number.isFinite(lo) ? `${f3(lo)}-${f3(hi)}` : '-');
const within = (ratio: number, tol: number) => (Number.isFinite(ratio) ? (Math.abs(ratio - 1) <= tol ? 'within' : 'outside') : '-');

/** The pooled report of windows (any groups), as markdown. */
export function poolReport(windows: readonly WindowSamples[], opts: { resamples?: number; minP99N?: number; draws?: readonly (readonly DrawBlocks[])[]; drawDecisions?: readonly (readonly DrawDecisions[])[] } = {}): string {
  const groups = new Map<string, WindowSamples[]>();
  for (const w of windows) groups.set(w.group, [...(groups.get(w.group) ?? []), w]);
  const out: string[] = [];
  for (const [group, ws] of groups) {
    out.push(`## Pooled twin: ${group}`, '');
    out.push(`${ws.length} window${ws.length === 1 ? '' : 's'} (${ws.map((w) => w.label).join('; ')}); requests served live ${ws.reduce((a, w) => a + w.requests.live, 0)}, simulated ${ws.reduce((a, w) => a + w.requests.sim, 0)}; blocks of ${ws[0]!.blockS} s of trace time; intervals: 95%, paired block bootstrap within each window (${opts.resamples ?? 1000} resamples)`, '');
    out.push('| quantity | live | simulated | sim / live | 95% interval | each window | target | judged |', '|---|---|---|---|---|---|---|---|');
    const withLive = ws.filter((w) => w.energyJ.live !== null);
    const e = pooledSum(withLive.map((w) => ({ live: w.energyJ.live!, sim: w.energyJ.sim })));
    out.push(`| energy J (modelled both sides, ${withLive.length} window${withLive.length === 1 ? '' : 's'}) | ${Math.round(e.live)} | ${Math.round(e.sim)} | ${f3(e.ratio)} | | ${span(e.min, e.max)} | 5% | ${within(e.ratio, TARGET.energy)} |`);
    const kinds = [...new Set(ws.flatMap((w) => [...Object.keys(w.decisions.live), ...Object.keys(w.decisions.sim)]))].sort();
    for (const k of kinds) {
      const d = pooledSum(ws.map((w) => ({ live: w.decisions.live[k] ?? 0, sim: w.decisions.sim[k] ?? 0 })));
      // none live and some simulated: no ratio, and not within any tolerance
      out.push(`| decisions: ${k} | ${d.live} | ${d.sim} | ${f3(d.ratio)} | | ${span(d.min, d.max)} | 10% | ${d.live === 0 ? (d.sim === 0 ? 'within' : 'outside') : within(d.ratio, TARGET.decisions)} |`);
    }
    const tally = { ttft: { within: 0, outside: 0, undecided: 0, few: 0 }, tbt: { within: 0, outside: 0, undecided: 0, few: 0 } };
    const minN = opts.minP99N ?? MIN_P99_N;
    const informational: string[] = [];
    for (const t of poolTypes(ws, opts)) {
      const few = Math.min(t.n.live, t.n.sim) < minN;
      if (few) informational.push(`${t.type} (${t.n.live} live, ${t.n.sim} sim)`);
      const vt = few ? 'few' : verdict(t.ttftP99, TARGET.p99);
      const vb = few ? 'few' : verdict(t.tbtP99, TARGET.p99);
      tally.ttft[vt]++;
      tally.tbt[vb]++;
      out.push(`| p50 TTFT ms ${t.type} (${t.n.live} live, ${t.n.sim} sim) | ${Math.round(t.ttftP50.live)} | ${Math.round(t.ttftP50.sim)} | ${f3(t.ttftP50.ratio)} | ${f3(t.ttftP50.lo)}-${f3(t.ttftP50.hi)} | | | |`);
      out.push(`| p99 TTFT ms ${t.type} | ${Math.round(t.ttftP99.live)} | ${Math.round(t.ttftP99.sim)} | ${f3(t.ttftP99.ratio)} | ${f3(t.ttftP99.lo)}-${f3(t.ttftP99.hi)} | | 15% | ${vt === 'few' ? `informational (< ${minN} requests)` : vt} |`);
      out.push(`| p99 TBT ms ${t.type} | ${t.tbtP99.live.toFixed(1)} | ${t.tbtP99.sim.toFixed(1)} | ${f3(t.tbtP99.ratio)} | ${f3(t.tbtP99.lo)}-${f3(t.tbtP99.hi)} | | 15% | ${vb === 'few' ? `informational (< ${minN} requests)` : vb} |`);
    }
    out.push('');
    const paths = ws.filter((w) => w.requestPathMs);
    out.push(`the data path's time each window's simulation took (SimOptions.requestPathMs, ms, measured in its own live run): ${paths.length ? paths.map((w) => `${w.label}: ${w.requestPathMs!.toGatewayMs?.toFixed(2) ?? '-'} from the client's send to the gateway's arrival stamp, ${w.requestPathMs!.toEngineMs.toFixed(1)} to the instance, ${w.requestPathMs!.startToEngineMs.toFixed(2)} from its start to the engine, ${w.requestPathMs!.toClientMs.toFixed(2)} from the engine to the client (${w.requestPathMs!.hopRequests ? `medians over ${w.requestPathMs!.hopRequests} live requests: ${w.requestPathMs!.hopToEngineMs?.toFixed(2) ?? '-'} from the gateway's arrival stamp to the engine, ${w.requestPathMs!.hopPathMs?.toFixed(2) ?? '-'} less a queue's wait, ${w.requestPathMs!.hopOutMs?.toFixed(2) ?? '-'} from the engine's first token to the gateway` : 'no engine hop measured'})`).join('; ') : '- (samples without it)'}`, '');
    out.push(`p99 TTFT by its interval: within 15% ${tally.ttft.within}, outside ${tally.ttft.outside}, undecided ${tally.ttft.undecided} (interval across a bound: more requests needed), informational ${tally.ttft.few} (too few requests); p99 TBT: within ${tally.tbt.within}, outside ${tally.tbt.outside}, undecided ${tally.tbt.undecided}, informational ${tally.tbt.few}`, '');
    out.push(`informational, not judged: the p99s of ${informational.length ? informational.join(', ') : 'no type'} (fewer than ${minN} requests of the type on a side over the pooled windows: its p99 would be its largest TTFT and TBT, one request's coincidence)`, '');
    out.push(`a p99's judgement is its interval's: 'within' when it lies inside [0.85, 1.15], 'outside' when wholly outside, 'undecided' otherwise; a type with fewer than ${minN} requests on a side is informational; energy and decisions are judged by the pooled sums`, '');
    if (opts.draws) out.push(...phaseSection(ws, ws.map((w) => opts.draws![windows.indexOf(w)]!), { resamples: opts.resamples ?? 1000, minN }));
    if (opts.drawDecisions) out.push(...decisionSection(ws, ws.map((w) => opts.drawDecisions![windows.indexOf(w)]!)));
  }
  return out.join('\n');
}

/** The phase-median rows of one group: `draws[i]`, window i's K draws. */
function phaseSection(ws: readonly WindowSamples[], draws: readonly (readonly DrawBlocks[])[], o: { resamples: number; minN: number }): string[] {
  const K = draws[0]?.length ?? 0;
  const out = [`### p99 TTFT over ${K} phase draws`, '', `each window re-simulated with the options its live run recorded at ${K} seeded phase draws (each instance's clock epoch uniform over its epoch, its status schedule over its status interval; seed 16 + the window's start s); a draw's p99 pools its run of every window; the simulator's point prediction is the median over the draws; the interval: the paired block bootstrap of that median against the live p99 (${o.resamples} resamples, the same blocks live and in every draw)`, ''];
  out.push('| type (live, sim per draw) | live p99 ms | sim at the live phases / live | each draw / live (min-max) | median over draws ms | sim / live | point (15%) | 95% interval | interval judged |', '|---|---|---|---|---|---|---|---|---|');
  const tally = { point: { within: 0, outside: 0 }, interval: { within: 0, outside: 0, undecided: 0 } };
  for (const t of phaseMedianTypes(ws, draws, { resamples: o.resamples })) {
    const aligned = ttftQuantile(ws.flatMap((w) => Object.values(w.blocks.sim[t.type] ?? {})), 0.99);
    const few = Math.min(t.n.live, t.n.sim) < o.minN;
    const point = within(t.ci.ratio, TARGET.p99);
    const iv = verdict(t.ci, TARGET.p99);
    if (!few && point !== '-') tally.point[point]++;
    if (!few) tally.interval[iv]++;
    const each = t.perDraw.map((x) => x / t.ci.live);
    out.push(`| ${t.type} (${t.n.live}, ${t.n.sim}) | ${Math.round(t.ci.live)} | ${f3(aligned / t.ci.live)} | ${span(Math.min(...each), Math.max(...each))} | ${Math.round(t.ci.sim)} | ${f3(t.ci.ratio)} | ${few ? 'informational' : point} | ${span(t.ci.lo, t.ci.hi)} | ${few ? `informational (< ${o.minN} requests)` : iv} |`);
  }
  out.push('', `phase-median p99 TTFT by its point estimate: within 15% ${tally.point.within}, outside ${tally.point.outside}; by its interval: within ${tally.interval.within}, outside ${tally.interval.outside}, undecided ${tally.interval.undecided}`, '');
  return out;
}

/** The phase-median decision counts of one group: `draws[i]`, window i's K draws. */
function decisionSection(ws: readonly WindowSamples[], draws: readonly (readonly DrawDecisions[])[]): string[] {
  const K = draws[0]?.length ?? 0;
  const out = [`### decisions over ${K} phase draws`, '', `the same draws' decision counts: a draw's count sums its run of every window; the simulator's point prediction is the median over the draws (as the p99 TTFT's), judged against 10%; the row 'decisions' above is the simulation at the live phases, one draw`, ''];
  out.push('| decisions | live | sim at the live phases / live | each draw / live (min-max) | median over draws | sim / live | point (10%) |', '|---|---|---|---|---|---|---|');
  for (const d of phaseMedianDecisions(ws, draws)) {
    const aligned = ws.reduce((a, w) => a + (w.decisions.sim[d.kind] ?? 0), 0);
    const r = (x: number) => (d.live ? x / d.live : NaN);
    const point = d.live === 0 ? (d.median === 0 ? 'within' : 'outside') : within(r(d.median), TARGET.decisions);
    out.push(`| ${d.kind} | ${d.live} | ${f3(r(aligned))} | ${span(r(Math.min(...d.perDraw)), r(Math.max(...d.perDraw)))} | ${d.median} | ${f3(r(d.median))} | ${point} |`);
  }
  out.push('');
  return out;
}

/** `--name value` from argv (removed from it), else undefined. */
function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || !Number.isFinite(Number(v))) throw new Error(`${name} takes a number`);
  argv.splice(i, 2);
  return v;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const files = process.argv.slice(2);
  const K = Number(option(files, '--phases') ?? 8);
  const clock = option(files, '--clock-change-ms');
  if (!files.length || !Number.isInteger(K) || K < 0) {
    process.stderr.write('usage: node --import tsx test/bench/twin-pool.ts [--phases K] [--clock-change-ms MS] SAMPLES.json...\n');
    process.exit(2);
  }
  const windows = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as WindowSamples);
  let draws: DrawBlocks[][] | undefined;
  let drawDecisions: DrawDecisions[][] | undefined;
  if (K > 0) {
    const { simulate } = await import('../../src/sim/index.ts');
    const { TRACE, twinSpec } = await import('./twin.bench.ts');
    const { reshardSpec } = await import('./twin-reshard.bench.ts');
    const sims = windows.map((w) => w.simulation ?? legacySimulation(w, [twinSpec(), reshardSpec()], clock === undefined ? undefined : Number(clock), TRACE));
    draws = [];
    drawDecisions = [];
    for (const [i, w] of windows.entries()) {
      const t0 = Date.now();
      const decisions: DrawDecisions[] = [];
      draws.push(await simulateDraws(w, sims[i]!, phaseDraws(K, sims[i]!, 16 + w.startS), simulate, decisions));
      drawDecisions.push(decisions);
      process.stderr.write(`${files[i]}: ${K} phase draws simulated in ${((Date.now() - t0) / 1000).toFixed(1)} s${w.simulation ? '' : ' (options rebuilt from its spec)'}\n`);
    }
  }
  process.stdout.write(poolReport(windows, { resamples: Number(process.env.TWIN_RESAMPLES ?? 1000), minP99N: Number(process.env.TWIN_MIN_P99_N ?? MIN_P99_N), ...(draws ? { draws } : {}), ...(drawDecisions ? { drawDecisions } : {}) }) + '\n');
}
