/**
 * The twin check: the same trace window through the live cluster and through the simulator, compared.
 * - Live: `dynamollm up --config <config>` (real nats-server, the actor processes, emulated H100s with
 *   Llama-3.1-8B, one pool of all nine types) and `replay` of the first seconds of the shipped conversation
 *   trace at --speed 1.
 * - Simulated: `simulate --fidelity step` of the same window with that cluster's shape (servers, GPUs, the TP it
 *   starts with, one pool, the instance machines' clock and emergency ladder, the pool machine's re-shard epoch
 *   where the config has one) on the same profile, its instance managers bounded as the config bounds the live ones
 *   (engine.maxInEngine, engine.maxQueued, the emergency section).
 * Two windows: this file's (deploy/replay-ci.yaml: 2 TP1 instances, clock decisions only) and
 * twin-reshard.bench.ts's (deploy/twin.yaml: 8 GPUs starting as 4xTP2, a 30-s pool epoch: re-shard decisions).
 * Reports energy, TTFT (p50, p99) and p99 TBT per type and the decision counts side by side, as ratios simulated / live. Energy on
 * both sides is modelled (emulated GPUs; the simulator's power model), never measured. Latency on the live side
 * is wall time on this machine, shared by everything else running on it.
 * The simulation takes the live data path's times measured in the same live run (debug level): from the client's send to
 * the gateway's arrival stamp (gatewayInOf), to the instance (the admissions' median age), to the engine and from it to the gateway (engineHopOf); its notes say which it took.
 * Targets (issue 16): energy within 5%, p99s within 15%, decision counts within 10%.
 * One window's per-type p99 rests on a few requests: TWIN_FROM_S moves the window into the trace and TWIN_SAMPLES
 * writes its samples, for the pooled check over several windows (twin-pool.ts, test/bench/device/quiet-host-twin.sh).
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchSection } from './types.ts';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { COUNTER_WAIT_S, replayTrace, type ReplayRequestResult } from '../../src/telemetry/replay.ts';
import { freePort } from '../helpers/net.ts';
import { loadConfig } from '../../actors/common/config.ts';
import { WindowCollector, type WindowSamples } from './twin-stats.ts';
import { seededDraw, twinSimOptions } from './twin-phases.ts';

export const TRACE = 'data/traces/AzureLLMInferenceTrace_conv.csv';

/** `dynamollm up` from source (tsx), as a user runs it; resolves with the gateway URL and a stop(). */
async function up(config: string): Promise<{ base: string; stop: () => Promise<void>; output: () => string }> {
  // TWIN_READY_S: how long the cluster has to serve its first request (default 100 s; a loaded host starts its actors slower)
  const readyS = Number(process.env.TWIN_READY_S ?? 100);
  const port = await freePort();
  const runDir = mkdtempSync(join(tmpdir(), 'dyn-twin-'));
  const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'up', '--config', config, '--port', String(port), '--run-dir', runDir, '--ready-timeout', String(Math.max(1, readyS - 10))], {
    // debug (TWIN_LOG_LEVEL, default debug): each admission, each status and each engine's first tokens, the live data
    // path's times and the instances' status schedules the simulation takes (info: the clock decisions alone, which
    // give the instances' epochs' phase; the rest left at its defaults, the notes say which); TWIN_UP_LOG=FILE keeps it
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: process.env.TWIN_LOG_LEVEL ?? 'debug' },
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const stop = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  const until = Date.now() + readyS * 1000;
  while (!out.includes('cluster ready') && Date.now() < until && p.exitCode === null) await new Promise((r) => setTimeout(r, 250));
  if (!out.includes('cluster ready')) {
    await stop();
    throw new Error(`cluster did not get ready:\n${out.slice(-2000)}`);
  }
  return { base: `http://127.0.0.1:${port}`, stop, output: () => out };
}

/** The live pool leader's re-shards as its log says them (info level): each decision, then each unit with its seconds (a stop unit is its instance's drain and stop). */
function reshardsOf(log: string): string {
  const out: string[][] = [];
  let last: number | undefined;
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('pool-')) continue;
    let j: { time?: number; msg?: string };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    const take = /: (take \S+ -> \S+):/.exec(j.msg ?? '');
    const unit = /: unit (start|stop) (TP\d+) .* done$/.exec(j.msg ?? '');
    if (take && j.time !== undefined) {
      out.push([`${take[1]}:`]);
      last = j.time;
    } else if (unit && j.time !== undefined && last !== undefined) {
      out[out.length - 1]?.push(`${unit[1]} ${unit[2]} ${((j.time - last) / 1000).toFixed(1)} s`);
      last = j.time;
    }
  }
  return out.map(([head, ...units]) => `${head} ${units.join(', ')}`).join('; ');
}

/**
 * The live instances' clock-epoch phases against the replay's start (their log, info level): each instance's first
 * epoch decision in the window (an epoch's reason is chooseClock's: 'least power ...' or 'no clock meets ...'; a rise, a
 * prefill raise, the start-up clock are not epochs), its time after the replay's start, modulo the epoch for an
 * instance up before the replay (an epoch that keeps the clock logs nothing, so the first one logged may be a later
 * one: the phase is the same). `phases`: one per instance the cluster started with (its start-up clock logged before
 * the replay's start or within one epoch after it: the readiness probe may be answered before every instance is up),
 * in the order of their ids, as the simulator makes its instances; one that logged no epoch takes the others'
 * circular mean. `epochBefore`: whether each had an epoch before the replay's start (up longer than an epoch before
 * it: it serves the trace's first requests at the clock that epoch chose, not at the start-up max clock).
 */
export function epochPhasesOf(log: string, replayStartMs: number, epochMs: number): { phases: number[]; ids: string[]; epochBefore: boolean[]; byInstance: Record<string, number> } | undefined {
  const byInstance: Record<string, number> = {};
  const before = new Set<string>();
  const after = new Set<string>();
  const epochBefore = new Set<string>();
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"event":"clock"')) continue;
    let j: { time?: number; id?: string; msg?: string };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (j.time === undefined || j.id === undefined) continue;
    if (j.time < replayStartMs) {
      before.add(j.id);
      if (/MHz \((least power|no clock meets)/.test(j.msg ?? '')) epochBefore.add(j.id);
      continue;
    }
    if (/MHz \(start-up/.test(j.msg ?? '') && j.time < replayStartMs + epochMs) after.add(j.id);
    if (j.id in byInstance || !/MHz \((least power|no clock meets)/.test(j.msg ?? '')) continue;
    const t = j.time - replayStartMs;
    byInstance[j.id] = after.has(j.id) ? t : t % epochMs || epochMs;
  }
  const initial = [...before, ...after].sort();
  const known = initial.filter((id) => id in byInstance).map((id) => byInstance[id]! % epochMs);
  if (!known.length) return undefined;
  const a = (x: number) => (2 * Math.PI * x) / epochMs;
  const mean = (Math.atan2(known.reduce((n, x) => n + Math.sin(a(x)), 0), known.reduce((n, x) => n + Math.cos(a(x)), 0)) * epochMs) / (2 * Math.PI);
  const meanMs = ((mean % epochMs) + epochMs) % epochMs || epochMs;
  return { phases: initial.map((id) => byInstance[id] ?? meanMs), ids: initial, epochBefore: initial.map((id) => epochBefore.has(id)), byInstance };
}

/**
 * The live instances' status schedules against the replay's start (their log, debug level: each status an instance
 * manager publishes): for each of `ids` (the instances the cluster started with, in the order the simulator makes
 * them), its first status after the replay's start, modulo the status interval (in (0, intervalMs]), and the interval
 * its timer kept over the window, averaged over them (a timer fires a little late each time and runs on from then; the
 * statuses it publishes on a change of state come between its firings, less than 0.8 intervals after the last one,
 * and are left out); undefined when the log has none (info level), or when an instance has none.
 */
export function statusPhasesOf(log: string, replayStartMs: number, intervalMs: number, ids: readonly string[]): { phases: number[]; intervalMs: number } | undefined {
  const timer = new Map<string, { first: number; last: number; n: number }>();
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"msg":"status"')) continue;
    let j: { time?: number; id?: string };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (j.time === undefined || j.id === undefined || j.time < replayStartMs) continue;
    const x = timer.get(j.id);
    if (!x) timer.set(j.id, { first: j.time, last: j.time, n: 0 });
    else if (j.time - x.last >= 0.8 * intervalMs) timer.set(j.id, { ...x, last: j.time, n: x.n + 1 });
  }
  const own = ids.map((id) => timer.get(id));
  if (!ids.length || own.some((x) => x === undefined)) return undefined;
  const timers = own as { first: number; last: number; n: number }[];
  const ticks = timers.reduce((a, x) => a + x.n, 0);
  const every = ticks ? timers.reduce((a, x) => a + x.last - x.first, 0) / ticks : intervalMs;
  return { phases: timers.map((x) => ((x.first - replayStartMs) % every) || every), intervalMs: every };
}

/**
 * The live data path's time from a request's arrival at the gateway to its instance (the instance managers' admission
 * log, debug level: each admission's ageMs, the instance's clock less the gateway's arrival stamp; a request started on
 * a credit is in its engine already when its instance hears of it, a hop later): the median over the admissions after
 * the replay's start, ms; undefined when the log has none (info level).
 */
export function admissionAgeOf(log: string, replayStartMs: number): number | undefined {
  const ages: number[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"msg":"admission"')) continue;
    let j: { time?: number; ageMs?: number; moves?: number };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (j.time === undefined || j.time < replayStartMs || typeof j.ageMs !== 'number' || (j.moves ?? 0) > 0) continue;
    ages.push(j.ageMs);
  }
  if (!ages.length) return undefined;
  ages.sort((a, b) => a - b);
  return ages[Math.floor((ages.length - 1) / 2)]!;
}

/**
 * The live data path's time to and from the engine (debug level), per request an instance held (matched by request id,
 * the engine's x-request-id; all on the host's clock): `toEngine`, from its gateway's arrival stamp (the instance
 * manager's 'leg first token' line: arrivalMs, the stamp the admissions' age counts from) to its engine's receipt of
 * it (the emulator's 'first token' line, relayed by its instance manager as 'engine output': receivedMs); `in`, from
 * its instance's start of it (startedMs) to that receipt, negative for a request its gateway started on a credit (in
 * its engine before its instance hears of it); `out`, from the engine's write of its first token (firstTokenMs) to its
 * gateway's read of it (the instance manager's line: the gateway's firstTokenMs); `path`, its `toEngine` less the time
 * it waited in its instance's queue (from its admission, the admission line's ageMs after the arrival stamp, to its
 * start; none for a request started on a credit), the data path's own time to the engine, which a live queue's wait
 * never joins (the simulated instance machines queue by themselves), left out for a request without an admission line.
 * The medians over the requests started after the replay's start (`path`'s undefined when none has an admission
 * line), how many of them started on a credit and how many waited in a queue; undefined when the log has none (info level).
 */
export function engineHopOf(log: string, replayStartMs: number): EngineHop | undefined {
  const legs = new Map<string, { arrivalMs: number; startedMs: number; firstTokenMs: number }>();
  const engine = new Map<string, { receivedMs: number; firstTokenMs: number }>();
  const credited = new Set<string>();
  // each request's latest admission's age (a moved request's last instance admits it oldest)
  const admittedAgeMs = new Map<string, number>();
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    const leg = line.includes('"msg":"leg first token"'), out = line.includes('"msg":"engine output"'), adm = line.includes('"msg":"admission"');
    if (!leg && !out && !adm) continue;
    let j: { rid?: unknown; arrivalMs?: unknown; startedMs?: unknown; firstTokenMs?: unknown; line?: unknown; admission?: unknown; ageMs?: unknown };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (adm && typeof j.rid === 'string') {
      if (j.admission === 'credited_start') credited.add(j.rid);
      if (typeof j.ageMs === 'number') admittedAgeMs.set(j.rid, Math.max(j.ageMs, admittedAgeMs.get(j.rid) ?? -Infinity));
    }
    if (leg && typeof j.rid === 'string' && typeof j.arrivalMs === 'number' && typeof j.startedMs === 'number' && typeof j.firstTokenMs === 'number' && j.startedMs >= replayStartMs) {
      legs.set(j.rid, { arrivalMs: j.arrivalMs, startedMs: j.startedMs, firstTokenMs: j.firstTokenMs });
    }
    if (out && typeof j.line === 'string' && j.line.includes('"event":"first_token"')) {
      let e: { rid?: unknown; receivedMs?: unknown; firstTokenMs?: unknown };
      try {
        e = JSON.parse(j.line) as typeof e;
      } catch {
        continue;
      }
      if (typeof e.rid === 'string' && typeof e.receivedMs === 'number' && typeof e.firstTokenMs === 'number') engine.set(e.rid, { receivedMs: e.receivedMs, firstTokenMs: e.firstTokenMs });
    }
  }
  const to: number[] = [], ins: number[] = [], outs: number[] = [], path: number[] = [];
  let onCredit = 0, queued = 0;
  for (const [rid, l] of legs) {
    const e = engine.get(rid);
    if (!e) continue;
    to.push(e.receivedMs - l.arrivalMs);
    ins.push(e.receivedMs - l.startedMs);
    outs.push(l.firstTokenMs - e.firstTokenMs);
    const age = admittedAgeMs.get(rid);
    const waitMs = credited.has(rid) || age === undefined ? 0 : Math.max(0, l.startedMs - (l.arrivalMs + age));
    if (age !== undefined || credited.has(rid)) path.push(e.receivedMs - l.arrivalMs - waitMs);
    if (waitMs > 0) queued++;
    if (credited.has(rid)) onCredit++;
  }
  if (!to.length) return undefined;
  const median = (xs: number[]) => {
    xs.sort((a, b) => a - b);
    return xs[Math.floor((xs.length - 1) / 2)]!;
  };
  return { toEngineMs: median(to), inMs: median(ins), outMs: median(outs), ...(path.length ? { pathMs: median(path) } : {}), n: to.length, credited: onCredit, queued };
}

/**
 * The live data path's time before the gateway's arrival stamp (debug level), per request matched by id (all on the
 * host's clock): `sendToStamp`, from the replay client's send (its TTFT's start; `sends`: the response id, the gateway's
 * request id with its 'cmpl-' or 'chatcmpl-' prefix, to its send time) to the stamp (the gateway's 'request arrival'
 * line: arrivalMs), which holds the HTTP request's transfer and parse, the body's read and the prompt's token count (a
 * text prompt's: a call to an instance's tokenizer), none of which the time from the stamp counts; `receiptToStamp`,
 * from the gateway's receipt of it (receivedMs, its HTTP head parsed) to the stamp. The medians over the requests that
 * arrived after the replay's start (`sendToStamp`'s undefined when none matches a send); undefined when the log has
 * none (info level).
 */
export function gatewayInOf(log: string, replayStartMs: number, sends: ReadonlyMap<string, number>): GatewayIn | undefined {
  const toStamp: number[] = [], receipt: number[] = [];
  const bare = new Map<string, number>();
  for (const [id, at] of sends) bare.set(id.replace(/^(chat)?cmpl-/, ''), at);
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"msg":"request arrival"')) continue;
    let j: { rid?: unknown; receivedMs?: unknown; arrivalMs?: unknown };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (typeof j.rid !== 'string' || typeof j.arrivalMs !== 'number' || typeof j.receivedMs !== 'number' || j.arrivalMs < replayStartMs) continue;
    receipt.push(j.arrivalMs - j.receivedMs);
    const sent = bare.get(j.rid);
    if (sent !== undefined) toStamp.push(j.arrivalMs - sent);
  }
  if (!receipt.length) return undefined;
  const median = (xs: number[]) => {
    xs.sort((a, b) => a - b);
    return xs[Math.floor((xs.length - 1) / 2)]!;
  };
  return { ...(toStamp.length ? { sendToStampMs: median(toStamp) } : {}), receiptToStampMs: median(receipt), n: receipt.length, matched: toStamp.length };
}

/** The live time before the gateway's arrival stamp (gatewayInOf), ms. */
export interface GatewayIn { sendToStampMs?: number; receiptToStampMs: number; n: number; matched: number }

/** The live time to and from the engine (engineHopOf), ms. */
export interface EngineHop { toEngineMs: number; inMs: number; outMs: number; pathMs?: number; n: number; credited: number; queued: number }

/**
 * The data path's time the simulation takes to the engine (SimOptions.requestPathMs), from the live admissions' median
 * age and the live time to the engine: the simulated instance machine hears of a request the data path's own time to
 * the engine after its send (hop.pathMs: a live queue's wait left out), or at the admissions' age when that is
 * earlier, and starts it into its engine the rest later. Without the engine's time (info level), the admissions' age
 * alone; without the admissions' ages, the instance's start to the engine (hop.inMs) after the admissions' age.
 */
export function simPathToEngine(toInstanceMs: number, hop: EngineHop | undefined): { toEngineMs: number; startToEngineMs: number } {
  if (!hop) return { toEngineMs: toInstanceMs, startToEngineMs: 0 };
  const pathMs = hop.pathMs ?? toInstanceMs + Math.max(0, hop.inMs);
  const toEngineMs = Math.max(0, Math.min(toInstanceMs, pathMs));
  return { toEngineMs, startToEngineMs: Math.max(0, pathMs - toEngineMs) };
}

/**
 * The live GPUs' clock change time (the instance managers' clock events, info level: inputs.applyMs, from the GPU call
 * to its answer; the emulated GPU's is its HTTP call): the median over the log's clock changes, ms; undefined when none
 * carries it.
 */
export function clockApplyOf(log: string): number | undefined {
  const ms: number[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"event":"clock"') || !line.includes('"applyMs"')) continue;
    let j: { inputs?: { applyMs?: unknown } };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (typeof j.inputs?.applyMs === 'number' && j.inputs.applyMs >= 0) ms.push(j.inputs.applyMs);
  }
  if (!ms.length) return undefined;
  ms.sort((a, b) => a - b);
  return ms[Math.floor((ms.length - 1) / 2)]!;
}

const round1 = (x: number | null | undefined) => (x == null ? '-' : Math.round(x * 10) / 10);
const ratio = (sim: number | null | undefined, live: number | null | undefined) => (sim != null && live != null && live > 0 ? (sim / live).toFixed(3) : '-');
/** a p99 over fewer requests of a type than this is not judged against its target (its tail is one or two requests) */
const P99_JUDGED_FROM = 100;
/**
 * The row's verdict against its issue-16 target (sim / live within `tol`): 'met', 'not met', or '-' where there is
 * nothing to judge (no live figure, or a p99 over fewer than P99_JUDGED_FROM requests).
 */
const verdict = (sim: number | null | undefined, live: number | null | undefined, tol: number, n = Infinity) =>
  sim == null || live == null || live <= 0 ? '-' : n < P99_JUDGED_FROM ? INFORMATIONAL : Math.abs(sim / live - 1) <= tol + 1e-9 ? 'met' : 'not met';
/** a p99 row over too few requests: shown, not judged */
const INFORMATIONAL = `informational (< ${P99_JUDGED_FROM} live)`;

/** One twin window: the live config and the simulator options of the same cluster shape. */
export interface TwinSpec {
  title: string;
  config: string;
  windowS: number;
  /** replay speed (trace time / wall time); the simulator reads the same window compressed alike. Default 1. */
  speed?: number;
  /** the cluster's shape, in words, for the notes. */
  shape: string;
  sim: Pick<SimOptions, 'profilePath' | 'servers' | 'gpusPerServer' | 'instanceTp' | 'knobs' | 'epochs' | 'asConfigured' | 'reshardExecution' | 'costs'>;
}

/** This window's spec (deploy/replay-ci.yaml, TWIN_S s of trace at speed 1). */
export const twinSpec = (): TwinSpec => ({
    title: 'Twin check: live cluster vs simulator on the same trace window',
    config: 'deploy/replay-ci.yaml',
    windowS: Number(process.env.TWIN_S ?? 60),
    shape: '1 server x 2 H100, TP1, one pool; no cluster or pool epoch in the window',
    // the config's cluster: one pool of every type, no cluster or pool epoch within the window; the instance
    // machines' clock and emergency ladder as live
    sim: { profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1, knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true } },
});

export async function bench(): Promise<BenchSection> {
  return runTwin(twinSpec());
}

export async function runTwin(spec: TwinSpec): Promise<BenchSection> {
  const windowS = spec.windowS;
  const speed = spec.speed ?? 1;
  // TWIN_FROM_S: the window starts this many seconds of trace time into the trace (both sides; default 0)
  const fromS = Number(process.env.TWIN_FROM_S ?? 0);
  // TWIN_SAMPLES=FILE: the window's per-type samples by blocks of TWIN_BLOCK_S (default 10) s of trace time, its energy
  // and decision counts, both sides, as JSON for the pooled check over several windows (twin-pool.ts, twin-stats.ts)
  const samples = process.env.TWIN_SAMPLES ? new WindowCollector(Number(process.env.TWIN_BLOCK_S ?? 10)) : undefined;
  const cluster = await up(spec.config);
  const reqLog: string[] = [];
  let live;
  // each live request's send time by its response id (gatewayInOf)
  const sends = new Map<string, number>();
  const load0 = loadavg()[0];
  try {
    // TWIN_REQ_LOG=FILE: each request's TTFT on both sides as JSON lines ({side, atMs (wall ms after the window's start), type, ttftMs})
    const onResult = (r: ReplayRequestResult) => {
      if (r.responseId !== undefined && r.sentAtMs !== undefined) sends.set(r.responseId, r.sentAtMs);
      if (process.env.TWIN_REQ_LOG) reqLog.push(JSON.stringify({ side: 'live', atMs: r.traceMs / speed, type: r.type, ttftMs: r.ttftMs ?? null, lateMs: r.lateMs }));
      // the replay's per-type quantiles are over its ok requests
      if (samples && r.outcome === 'ok' && r.ttftMs !== undefined) {
        samples.addTtft('live', r.type, r.traceMs, r.ttftMs);
        samples.addTbt('live', r.type, r.traceMs, r.tbtMs);
      }
    };
    const { slo, thresholds } = loadConfig(spec.config);
    live = await replayTrace({ trace: TRACE, url: cluster.base, speed, startS: fromS, durationS: windowS, slo: { slo, thresholds }, onResult });
  } finally {
    await cluster.stop();
    if (process.env.TWIN_UP_LOG) writeFileSync(process.env.TWIN_UP_LOG, (live ? JSON.stringify({ twin: 'replay_start', time: live.startedAtMs }) + '\n' : '') + cluster.output());
  }
  // TWIN_SIM_LOG=FILE: the simulated instance machines' admissions and decision events and the pool machine's re-shard
  // decisions with their inputs, as JSON lines (the live side's are in TWIN_UP_LOG; its first line the replay's start)
  const simEvents: string[] = [];
  // the instance managers' limits the live cluster runs with (its config's engine and emergency sections)
  const c = loadConfig(spec.config);
  // the simulated instances' epochs at the live ones' phases: which instance a clump of arrivals lands on, and so every
  // clock after, follows where in the instances' epochs it falls (the notes give the simulation at other phases)
  const epochMs = (spec.sim.epochs?.instanceS ?? c.epochs.instanceS) * 1000;
  const phase = epochPhasesOf(cluster.output(), live.startedAtMs, epochMs);
  // the live data path's own time (SimOptions.requestPathMs): to the instance, the live admissions' median age (debug
  // level) or TWIN_PATH_IN_MS; the gateway's own to the client, TWIN_PATH_OUT_MS (default 0.3 ms: from the engine's
  // first bytes to the client's first write, docs/DATAPATH.md "The first token's path")
  const toInstanceMs = process.env.TWIN_PATH_IN_MS !== undefined ? Number(process.env.TWIN_PATH_IN_MS) : admissionAgeOf(cluster.output(), live.startedAtMs) ?? 0;
  // the time to and from the engine, measured in this window (debug level; engineHopOf): the simulated engine takes a
  // request the live median time to the engine after its send; the simulated instance machine hears of it at the
  // admissions' median age, or at that time when the engine's is earlier (most requests started on a credit: in their
  // engines before their instances hear of them; the simulated machines admit and start every request, none on a
  // credit), and starts it into its engine the rest later (requestPathMs.startToEngineMs); the engine's first token
  // reaches the gateway the median `out` later, which joins the gateway's own time to the client
  const hop = engineHopOf(cluster.output(), live.startedAtMs);
  const gatewayOutMs = Number(process.env.TWIN_PATH_OUT_MS ?? 0.3);
  const toClientMs = gatewayOutMs + Math.max(0, hop?.outMs ?? 0);
  const { toEngineMs, startToEngineMs } = simPathToEngine(toInstanceMs, hop);
  // the time from the client's send to the gateway's arrival stamp (debug level; gatewayInOf), which the time from the
  // stamp leaves out: the simulated request reaches its instance that much later (requestPathMs.toGatewayMs);
  // TWIN_PATH_GATEWAY_MS sets it
  const gwIn = gatewayInOf(cluster.output(), live.startedAtMs, sends);
  const toGatewayMs = process.env.TWIN_PATH_GATEWAY_MS !== undefined ? Number(process.env.TWIN_PATH_GATEWAY_MS) : Math.max(0, gwIn?.sendToStampMs ?? gwIn?.receiptToStampMs ?? 0);
  // the live GPUs' clock change time (the clock events' applyMs, info level; TWIN_CLOCK_CHANGE_MS sets it), else the
  // simulator's default (a real H100's, costs.clockChangeMs)
  const clockChangeMs = process.env.TWIN_CLOCK_CHANGE_MS !== undefined ? Number(process.env.TWIN_CLOCK_CHANGE_MS) : clockApplyOf(cluster.output());
  // the live cluster's SLOs, thresholds and instance limits, its data path's time and clock change, the trace window, and
  // the span the live counters cover (replay reads them before its first send and COUNTER_WAIT_S after its last
  // completion: the simulation counts its decisions and energy over the same time)
  const simOpts: SimOptions = twinSimOptions(spec, { fromS, windowS, speed, requestPathMs: { toGatewayMs, toEngineMs, toClientMs, startToEngineMs }, ...(clockChangeMs !== undefined ? { clockChangeMs } : {}), untilMs: (live.wallS + COUNTER_WAIT_S) * 1000, trace: TRACE });
  // and their statuses at the live ones' schedules (debug level logs each status): which instance the dispatch picks
  // follows the load each instance's last status showed
  const statusPhases = phase ? statusPhasesOf(cluster.output(), live.startedAtMs, c.liveness.statusIntervalMs, phase.ids) : undefined;
  // the simulated requests' arrivals are the sends, trace time / speed from the window's first row
  const onRequest = {
    ...(process.env.TWIN_REQ_LOG || samples
      ? {
          onRequest: (r: { arrivalMs: number; type: string; ttftMs: number }) => {
            if (process.env.TWIN_REQ_LOG) reqLog.push(JSON.stringify({ side: 'sim', atMs: r.arrivalMs, type: r.type, ttftMs: r.ttftMs }));
            samples?.addTtft('sim', r.type, r.arrivalMs * speed, r.ttftMs);
          },
        }
      : {}),
    ...(samples ? { onTokenGap: (r: { arrivalMs: number; type: string; gapMs: number }) => samples.addTbt('sim', r.type, r.arrivalMs * speed, r.gapMs) } : {}),
  };
  const sim = await simulate({ ...simOpts, ...(phase ? { instanceEpochPhaseMs: phase.phases, instanceEpochBeforeTrace: phase.epochBefore } : {}), ...(statusPhases ? { instanceStatusPhaseMs: statusPhases.phases, instanceStatusIntervalMs: statusPhases.intervalMs } : {}) }, undefined, process.env.TWIN_SIM_LOG ? {
    ...onRequest,
    onInstanceStep: (instance, _cfg, ev, t, fx) => {
      // each admission, as the live instance manager's debug log tells it (actors/instance-manager/machine-io.ts admissionLog)
      if (ev.type === 'admit' || ev.type === 'credited_start') simEvents.push(JSON.stringify({ tMs: t, instance, admission: ev.type, rid: ev.req.id, type: ev.req.type, inputTokens: ev.req.inputTokens, moves: ev.req.moves, ageMs: t - ev.req.arrivalMs, taken: fx.some((e) => (e.kind === 'admitted' || e.kind === 'start') && e.id === ev.req.id) }));
      for (const e of fx) if (e.kind === 'event') simEvents.push(JSON.stringify({ tMs: t, instance, event: e.event, summary: e.summary, decision: e.decision, inputs: e.inputs }));
    },
    onPoolDecision: (pool, t, e) => simEvents.push(JSON.stringify({ tMs: t, pool, event: 'reshard', summary: e.summary, decision: e.decision, inputs: e.inputs })),
  } : onRequest);
  if (process.env.TWIN_SIM_LOG) writeFileSync(process.env.TWIN_SIM_LOG, simEvents.join('\n') + '\n');
  if (process.env.TWIN_REQ_LOG) writeFileSync(process.env.TWIN_REQ_LOG, reqLog.join('\n') + '\n');
  // the simulation at TWIN_PHASES other phases, evenly over the epoch, every instance at the same one (default 10; 0:
  // none): how far energy and the clock decisions move with the phase alone
  type Tails = Partial<Record<string, { ttft: number; tbt: number }>>;
  const tailsOf = (r: Awaited<ReturnType<typeof simulate>>): Tails => Object.fromEntries(Object.entries(r.latency.byType).filter(([, x]) => x?.requests).map(([t, x]) => [t, { ttft: x!.ttftP99Ms, tbt: x!.tbtP99Ms }]));
  // the same simulation with the engine's TTFT alone and a real H100's clock change (the simulator's defaults): what
  // the live path's and the live GPUs' times move
  const atLive = { ...(phase ? { instanceEpochPhaseMs: phase.phases, instanceEpochBeforeTrace: phase.epochBefore } : {}), ...(statusPhases ? { instanceStatusPhaseMs: statusPhases.phases, instanceStatusIntervalMs: statusPhases.intervalMs } : {}) };
  const noPath = await simulate({ ...simOpts, ...atLive, requestPathMs: { toEngineMs: 0, toClientMs: 0 }, ...(spec.sim.costs ? { costs: spec.sim.costs } : { costs: undefined }) });
  const scanTails: Tails[] = [];
  const scan: { phaseMs: number; J: number; clock: number }[] = [];
  const nPhases = Number(process.env.TWIN_PHASES ?? 10);
  for (let k = 1; k <= nPhases; k++) {
    const r = await simulate({ ...simOpts, instanceEpochPhaseMs: (k * epochMs) / nPhases });
    scan.push({ phaseMs: (k * epochMs) / nPhases, J: r.energyKWh * 3.6e6, clock: r.reconfigurations.clock });
    scanTails.push(tailsOf(r));
  }
  // the simulation at TWIN_STATUS_SCAN (default 5) other status schedules, each instance the cluster starts with at a
  // phase drawn over the status interval (seeded): how far energy and the clock decisions move with where the
  // instances' statuses fall against the arrivals (the dispatch reads the load of each one's last status)
  const statusScan: { J: number; clock: number }[] = [];
  const draw = seededDraw(16);
  for (let k = 0; k < Number(process.env.TWIN_STATUS_SCAN ?? 5); k++) {
    const n = phase?.ids.length ?? 1;
    const every = statusPhases?.intervalMs ?? 500;
    const r = await simulate({ ...simOpts, ...(phase ? { instanceEpochPhaseMs: phase.phases, instanceEpochBeforeTrace: phase.epochBefore } : {}), instanceStatusIntervalMs: every, instanceStatusPhaseMs: Array.from({ length: n }, () => 1 + draw() * (every - 1)) });
    statusScan.push({ J: r.energyKWh * 3.6e6, clock: r.reconfigurations.clock });
    scanTails.push(tailsOf(r));
  }
  const rows: Record<string, string | number>[] = [];
  const liveJ = live.clusterEnergyJ;
  const simJ = sim.energyKWh * 3.6e6;
  rows.push({ quantity: 'requests served', live: live.ok, simulated: Object.values(sim.latency.byType).reduce((n, x) => n + (x?.requests ?? 0), 0), 'sim / live': ratio(Object.values(sim.latency.byType).reduce((n, x) => n + (x?.requests ?? 0), 0), live.ok) });
  // the simulation's own band over its phase and status scans (sim / live), beside the one at the live phases
  const scanned = [...scan, ...statusScan];
  const bandOf = (xs: number[], live: number | null | undefined) => (xs.length && live ? `${ratio(Math.min(...xs), live)}-${ratio(Math.max(...xs), live)}` : '-');
  rows.push({ quantity: 'energy J (modelled both sides)', live: liveJ === null ? '-' : Math.round(liveJ), simulated: Math.round(simJ), 'sim / live': ratio(simJ, liveJ), target: verdict(simJ, liveJ, 0.05), 'engine only': ratio(noPath.energyKWh * 3.6e6, liveJ), scans: bandOf(scanned.map((x) => x.J), liveJ) });
  // the span each side counts energy and decisions over: live, the replay's first send to its last completion and the
  // wait before the counters' last read; simulated, the same span (SimOptions.untilMs), or to its last request's end if later
  rows.push({ quantity: 'counters\' span s (first arrival to last completion, and the wait before the last read)', live: round1(live.wallS + COUNTER_WAIT_S), simulated: round1(sim.durationS), 'sim / live': ratio(sim.durationS, live.wallS + COUNTER_WAIT_S) });
  // average power over that span (replay's avgPowerW: J over wallS + COUNTER_WAIT_S)
  const liveW = live.avgPowerW;
  rows.push({ quantity: 'average power W', live: liveW === null ? '-' : Math.round(liveW), simulated: Math.round(sim.avgPowerW), 'sim / live': ratio(sim.avgPowerW, liveW) });
  for (const t of live.perType) {
    const s = sim.latency.byType[t.type];
    if (!t.ok || !s?.requests) continue;
    rows.push({ quantity: `p50 TTFT ms ${t.type} (${t.ok} live)`, live: Math.round(t.ttftP50Ms ?? 0), simulated: Math.round(s.ttftP50Ms), 'sim / live': ratio(s.ttftP50Ms, t.ttftP50Ms), 'engine only': ratio(noPath.latency.byType[t.type]?.ttftP50Ms, t.ttftP50Ms), 'scans': '' });
    const band = (k: 'ttft' | 'tbt') => {
      const xs = scanTails.map((x) => x[t.type]?.[k]).filter((x): x is number => x !== undefined);
      const live = k === 'ttft' ? t.ttftP99Ms : t.tbtP99Ms;
      return xs.length && live ? `${ratio(Math.min(...xs), live)}-${ratio(Math.max(...xs), live)}` : '-';
    };
    rows.push({ quantity: `p99 TTFT ms ${t.type}`, live: Math.round(t.ttftP99Ms ?? 0), simulated: Math.round(s.ttftP99Ms), 'sim / live': ratio(s.ttftP99Ms, t.ttftP99Ms), target: verdict(s.ttftP99Ms, t.ttftP99Ms, 0.15, t.ok), 'engine only': ratio(noPath.latency.byType[t.type]?.ttftP99Ms, t.ttftP99Ms), 'scans': band('ttft') });
    rows.push({ quantity: `p99 TBT ms ${t.type}`, live: round1(t.tbtP99Ms), simulated: round1(s.tbtP99Ms), 'sim / live': ratio(s.tbtP99Ms, t.tbtP99Ms), target: verdict(s.tbtP99Ms, t.tbtP99Ms, 0.15, t.ok), 'engine only': '', 'scans': band('tbt') });
  }
  const lr = live.reconfigurations ?? {};
  // both sides count what src/telemetry reconfigurationOf counts (the live metric; the simulator's reconf)
  const kinds: [string, number][] = [['clock', sim.reconfigurations.clock], ['instance_start', sim.reconfigurations.instanceStart], ['reshard', sim.reconfigurations.reshard], ['emergency', sim.reconfigurations.emergency]];
  for (const [k, v] of kinds) rows.push({ quantity: `decisions: ${k}`, live: lr[k] ?? 0, simulated: v, 'sim / live': ratio(v, lr[k] ?? 0), target: (lr[k] ?? 0) === 0 && v === 0 ? '-' : verdict(v, lr[k] ?? 0, 0.1) === '-' ? 'not met' : verdict(v, lr[k] ?? 0, 0.1), ...(k === 'clock' ? { 'engine only': ratio(noPath.reconfigurations.clock, lr[k] ?? 0), scans: bandOf(scanned.map((x) => x.clock), lr[k] ?? 0) } : {}) });
  if (samples && process.env.TWIN_SAMPLES) {
    const w: WindowSamples = {
      group: `${spec.config}, ${windowS} s of trace at speed ${speed}`,
      label: `from ${fromS} s`,
      startS: fromS,
      windowS,
      speed,
      blockS: samples.blockS,
      requests: { live: live.ok, sim: Object.values(sim.latency.byType).reduce((n, x) => n + (x?.requests ?? 0), 0) },
      energyJ: { live: liveJ, sim: simJ },
      decisions: { live: Object.fromEntries(kinds.map(([k]) => [k, lr[k] ?? 0])), sim: Object.fromEntries(kinds) },
      blocks: samples.blocks(),
      requestPathMs: { toGatewayMs, toEngineMs, startToEngineMs, toClientMs, hopRequests: hop?.n ?? 0, ...(hop ? { hopToEngineMs: hop.toEngineMs, hopOutMs: hop.outMs, ...(hop.pathMs !== undefined ? { hopPathMs: hop.pathMs } : {}) } : {}) },
      // the simulation's options and the live phases, for twin-pool.ts --phases (the simulation at other phase draws)
      simulation: { options: simOpts, aligned: atLive, epochMs, statusIntervalMs: statusPhases?.intervalMs ?? c.liveness.statusIntervalMs, instances: phase?.ids.length ?? Math.floor(((spec.sim.servers ?? 1) * (spec.sim.gpusPerServer ?? 1)) / (spec.sim.instanceTp ?? 1)) },
    };
    writeFileSync(process.env.TWIN_SAMPLES, JSON.stringify(w));
  }
  // every row with every column (the table's are the first row's)
  for (const r of rows) {
    r.target ??= '';
    r['engine only'] ??= '';
    r.scans ??= '';
  }
  const judged = rows.filter((r) => r.target === 'met' || r.target === 'not met');
  const informational = live.perType.filter((t) => t.ok && t.ok < P99_JUDGED_FROM && sim.latency.byType[t.type]?.requests).map((t) => `${t.type} (${t.ok})`);
  return {
    title: spec.title,
    notes: [
      `live: \`dynamollm up --config ${spec.config}\` + \`replay --trace ${TRACE} --speed ${speed}${fromS ? ` --start ${fromS}` : ''} --duration ${windowS}\`; simulated: the same window at the same speed, step fidelity, the config's cluster shape (${spec.shape})`,
      `live requests: ${live.ok} ok, ${live.rejected} rejected, ${live.failed} failed ${JSON.stringify(live.errors)}; simulated: ${sim.rejected} rejected`,
      `live replay's sends late against the trace (the client short of CPU): ${live.sendLateMs ? `p50 ${Math.round(live.sendLateMs.p50)} ms, p99 ${Math.round(live.sendLateMs.p99)} ms, max ${Math.round(live.sendLateMs.max)} ms` : '-'}`,
      `live reconfiguration counters seen: ${JSON.stringify(lr)}; load average ${load0.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end (live latency and the live clock decisions move with it)`,
      `live pool's re-shards (its log): ${reshardsOf(cluster.output()) || '-'}`,
      `live instances' clock-epoch phases after the replay's start (their first epoch decisions): ${phase ? `${Object.entries(phase.byInstance).map(([id, p]) => `${id} ${Math.round(p)} ms`).join(', ')}; the simulated instances' in order, ${phase.phases.map((p) => Math.round(p)).join(', ')} ms; an epoch before the replay: ${phase.epochBefore.join(', ')}` : '- (simulated with an epoch at t = 0)'}`,
      `live instances' status phases after the replay's start (their first statuses, debug level): ${statusPhases ? `${statusPhases.phases.map((p) => Math.round(p)).join(', ')} ms (the simulated instances' in order), every ${statusPhases.intervalMs.toFixed(2)} ms` : '- (simulated at 500 ms)'}`,
      `simulated at ${scan.length} phases ${scan.length ? `(${Math.round(scan[0]!.phaseMs)}-${Math.round(scan[scan.length - 1]!.phaseMs)} ms): energy ${Math.round(Math.min(...scan.map((x) => x.J)))}-${Math.round(Math.max(...scan.map((x) => x.J)))} J (sim / live ${ratio(Math.min(...scan.map((x) => x.J)), liveJ)}-${ratio(Math.max(...scan.map((x) => x.J)), liveJ)}), clock decisions ${Math.min(...scan.map((x) => x.clock))}-${Math.max(...scan.map((x) => x.clock))}` : ''}`,
      `simulated at the live epoch phases and ${statusScan.length} drawn status schedules: ${statusScan.length ? `energy ${Math.round(Math.min(...statusScan.map((x) => x.J)))}-${Math.round(Math.max(...statusScan.map((x) => x.J)))} J (sim / live ${ratio(Math.min(...statusScan.map((x) => x.J)), liveJ)}-${ratio(Math.max(...statusScan.map((x) => x.J)), liveJ)}), clock decisions ${Math.min(...statusScan.map((x) => x.clock))}-${Math.max(...statusScan.map((x) => x.clock))}` : '-'}`,
      `energy is modelled on both sides (emulated GPUs, src/model), not measured; both sides count energy and decisions over the live counters' span (the replay's first send to its last completion and ${COUNTER_WAIT_S} s more; the simulation runs its timers on to it, SimOptions.untilMs); live latency is wall time on this shared machine`,
      `simulated with the live data path's time (SimOptions.requestPathMs): ${toGatewayMs.toFixed(2)} ms from the client's send to the gateway's arrival stamp (${process.env.TWIN_PATH_GATEWAY_MS !== undefined ? 'TWIN_PATH_GATEWAY_MS' : gwIn ? `the medians of the gateway's debug lines: ${gwIn.sendToStampMs?.toFixed(2) ?? '-'} ms from the send over ${gwIn.matched} requests matched to the replay's sends, ${gwIn.receiptToStampMs.toFixed(2)} ms from the gateway's receipt over ${gwIn.n}` : 'none measured: the live log has no arrival lines, debug level'}), ${toEngineMs.toFixed(2)} ms to the instance (${process.env.TWIN_PATH_IN_MS !== undefined ? 'TWIN_PATH_IN_MS' : 'the live admissions\' median age'} ${toInstanceMs.toFixed(1)} ms${toEngineMs < toInstanceMs ? `, or the path's to the engine, when earlier` : ''}), ${startToEngineMs.toFixed(2)} ms from its start to the engine and ${toClientMs.toFixed(2)} ms from the engine's first token to the client (${gatewayOutMs} ms the gateway's own, TWIN_PATH_OUT_MS${hop ? `, and the engine's write to the gateway's read); measured in this window's live run, the medians over ${hop.n} requests (${hop.credited} started on a credit, ${hop.queued} waited in a queue) of the instance managers' and the emulators' debug lines: to the engine ${hop.toEngineMs.toFixed(2)} ms from the gateway's arrival stamp, ${hop.pathMs?.toFixed(2) ?? '-'} ms less a queue's wait (the path's), ${hop.inMs.toFixed(2)} ms from the instance's start, the first token ${hop.outMs.toFixed(2)} ms from the engine's write to the gateway's read` : `; no time to or from the engine: the live log has no engine timings, debug level)`}; and the live GPUs' clock change: ${clockChangeMs === undefined ? `- (the simulator's ${simOpts.costs?.clockChangeMs ?? 65} ms)` : `${clockChangeMs.toFixed(1)} ms (${process.env.TWIN_CLOCK_CHANGE_MS !== undefined ? 'TWIN_CLOCK_CHANGE_MS' : 'the live clock events\' median applyMs'})`}; 'engine only': the same simulation with the engine's TTFT alone and a real H100's clock change (the simulator's defaults); 'scans': the simulation's band (sim / live) over the ${scanned.length} phase and status scans above, each type's p99 over its few requests`,
      `targets (issue 16): energy within 5%, p99 TTFT and TBT within 15% (a type's p99s judged from ${P99_JUDGED_FROM} live requests), decision counts within 10% (none on both sides: not judged): ${judged.filter((r) => r.target === 'met').length} of ${judged.length} judged rows met${judged.some((r) => r.target === 'not met') ? `; not met: ${judged.filter((r) => r.target === 'not met').map((r) => r.quantity).join(', ')}` : ''}`,
      `informational, not judged: the p99s of ${informational.length ? informational.join(', ') : 'no type'} (fewer than ${P99_JUDGED_FROM} live requests of the type in the window: its p99 is its largest one or two TTFTs and TBTs, a coincidence of a few requests; the pooled check over several windows, twin-pool.ts, judges them)`,
    ],
    rows,
  };
}
