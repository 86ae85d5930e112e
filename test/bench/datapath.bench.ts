/**
 * The data path's own cost: gateway -> NATS -> cluster manager -> pool manager -> instance manager ->
 * engine, against the same emulated engine called directly, in the same run. The engine runs with
 * --zero-delay (steps take no wall time), so what is measured is the path itself: added TTFT (p50/p99 of
 * sequential streaming requests, time to the first SSE token), max throughput (closed loop, C concurrent
 * clients, short completions) and the CPU the control path spends per streamed token (long completions;
 * every process of the cluster but the engines, NATS included, from /proc). Three paths run: `direct` (the
 * defaults: the gateway routes the request itself and asks the instance for admission, one round trip, then
 * streams from the engine after the instance's grant), `intake` (the same token path, every request admitted
 * through the cluster intake and the pool leader) and `nats` (the gateway's routing, the instance relays every
 * token over NATS). With the direct path, the same path again with the emulator stepping in wall time and the
 * replay's requests (token-id prompts, usage on every event): each token its own socket read and client write,
 * the per-event cost the zero-delay runs (many tokens per read) hide; CPU per token of the control path and of
 * the gateway alone, and as ratios against the same emulator serving the same load alone (its baseline, run first);
 * the serving gateway's CPU per token by thread (its main thread, the native plane's dp-relay, V8's and libuv's
 * threads) and the engine alone's, with each thread's context switches per token (test/bench/thread-cpu.ts).
 * The engine alone's closed loop runs before the paths and again after them; the throughput ratios are against the
 * mean of the two, with a warning when they differ by over 20% (a host that was not quiet). Every closed loop reports
 * each process role's cores busy and CPU per request (test/bench/datapath-cpu.ts: the gateway's workers and primary
 * apart, each manager kind, the node agent, nats-server, the engine and this bench's own process, the load generator,
 * its client threads included), with each role's busiest process and busiest thread, so that the thread at a core shows.
 * The 4-token closed loop and its warm-up run in DYN_BENCH_CLIENT_THREADS worker threads (test/bench/closed-loop.ts,
 * the lean HTTP/1.1 client of src/engine/http1.ts), so that the load generator is not the loop's bound; the sequential
 * TTFT requests run one at a time in the main thread (fetch).
 * Env: DYN_BENCH_PATHS, DYN_BENCH_REALTIME, DYN_BENCH_DATAPLANE, DYN_BENCH_GATEWAY_WORKERS (gateway.workers, default 1),
 * DYN_BENCH_CLIENTS (closed-loop clients of the 4-token throughput run and its warm-up, default 16),
 * DYN_BENCH_CLIENT_THREADS (the worker threads they are spread over, default 4), DYN_BENCH_SEQ,
 * DYN_BENCH_WARM_S and DYN_BENCH_RT_* (each at its constant below).
 */
import { freePort } from '../helpers/net.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './types.ts';
import { percentile } from '../../src/sim/metrics.ts';
import { clientTail, one, readTrace, traceBreakdown, type ClientSample } from './ttft-trace.ts';
import { completionBody } from './closed-loop-client.ts';
import { LoopThreads } from './closed-loop.ts';
import { cpuSnapshot, engineBaseline, hostCpuMs, loadTable, msByRole, roleLoads, sum, tree, wakes, type ProcTree, type WindowLoad } from './datapath-cpu.ts';
import { threadCounters, threadRows, threadTable } from './thread-cpu.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO, 'bin', 'dynamollm.js');
const MODEL = 'llama3.1-8b';
/** sequential streaming requests for TTFT (DYN_BENCH_SEQ); default 3,000 a side, so that the p99 is the 30th largest: one run on this VM read the p99 of three consecutive 1,000s of one target 10.27, 4.63 and 4.67 ms (docs/DATAPATH.md "Issue 19's targets"). */
const SEQUENTIAL = Number(process.env.DYN_BENCH_SEQ ?? 3000);
/** closed-loop clients of the 4-token throughput run and its warm-up (DYN_BENCH_CLIENTS). Default 16. */
const CONCURRENCY = Number(process.env.DYN_BENCH_CLIENTS ?? 16);
const THROUGHPUT_S = 8;
/**
 * worker threads of the 4-token closed loop and its warm-up (DYN_BENCH_CLIENT_THREADS), CONCURRENCY clients spread
 * over them (test/bench/closed-loop.ts), so that the load generator is not the loop's bound. Default 4.
 */
const CLIENT_THREADS = Number(process.env.DYN_BENCH_CLIENT_THREADS ?? 4);
/** gateway worker processes of every cluster run (DYN_BENCH_GATEWAY_WORKERS: gateway.workers). Default 1. */
const GATEWAY_WORKERS = Number(process.env.DYN_BENCH_GATEWAY_WORKERS ?? 1);
/** seconds of closed-loop warm-up before the TTFT and throughput measurements (DYN_BENCH_WARM_S). Default 20. */
const WARM_S = Number(process.env.DYN_BENCH_WARM_S ?? 20);
/** DYN_BENCH_TRACE_TTFT=1: the gateway traces each request's first token's path (DYN_TRACE_FIRST_TOKEN), joined with the sequential requests' client-side times (ttft-trace.ts). */
const TRACE_TTFT = process.env.DYN_BENCH_TRACE_TTFT === '1';
/** CPU per token: C_TOK closed-loop clients streaming TOK_LEN-token completions for TOK_S seconds. */
const C_TOK = 16;
const TOK_LEN = 256;
const TOK_S = 6;
/** seconds of an idle cluster measured first. */
const IDLE_S = 3;

/** Closed-loop long streams; CPU of `pids()` over the window, per token. */
async function cpuPerToken(base: string, model: string, pids: () => { engines: number[]; control: number[] }): Promise<{ controlUs: number; marginalUs: number; idleMsPerS: number; engineUs: number; tokensPerS: number }> {
  const p = pids();
  // the idle cluster's own CPU (heartbeats, status, telemetry, epochs), to tell it from the per-token cost
  const i0 = sum(p.control), it0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const idleMsPerS = (sum(p.control) - i0) / ((performance.now() - it0) / 1000);
  const c0 = sum(p.control), e0 = sum(p.engines);
  const t0 = performance.now();
  const until = t0 + TOK_S * 1000;
  let tokens = 0;
  const refused = { n: 0 };
  await Promise.all(Array.from({ length: C_TOK }, async () => {
    while (performance.now() < until) {
      if (await oneOrRefused(base, model, TOK_LEN, refused)) tokens += TOK_LEN;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const controlMs = sum(p.control) - c0;
  return {
    controlUs: (controlMs * 1000) / tokens, marginalUs: (Math.max(0, controlMs - idleMsPerS * wall) * 1000) / tokens, idleMsPerS,
    engineUs: ((sum(p.engines) - e0) * 1000) / tokens, tokensPerS: tokens / wall,
  };
}


async function waitFor(out: () => string, needle: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!out().includes(needle)) {
    if (Date.now() > until) throw new Error(`timed out waiting for '${needle}':\n${out().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** one() that counts a refusal (HTTP 429/503: the cluster at capacity) instead of failing the section. */
async function oneOrRefused(base: string, model: string, maxTokens: number, refused: { n: number }): Promise<boolean> {
  try {
    await one(base, model, maxTokens);
    return true;
  } catch (err) {
    if (!/HTTP (429|503)/.test((err as Error).message)) throw err;
    refused.n++;
    await new Promise((r) => setTimeout(r, 50));
    return false;
  }
}

/** The replay's requests (src/telemetry/replay.ts): token-id prompts, min_tokens = max_tokens, usage on every event. */
export const RT_CLIENTS = 32;
const RT_PROMPT = 2000;
export const RT_LEN = 200;
/** seconds of the real-time run's measured window (DYN_BENCH_RT_S). Default 12. */
const RT_S = Number(process.env.DYN_BENCH_RT_S ?? 12);
/** seconds of closed-loop warm-up of the real-time run before its idle and measured windows (DYN_BENCH_RT_WARM_S): what is measured is a warmed gateway's per-event cost, not V8 compiling it. Default 6. */
const RT_WARM_S = Number(process.env.DYN_BENCH_RT_WARM_S ?? 6);
/**
 * seconds of the real-time run's idle window (DYN_BENCH_RT_IDLE_S, default 10): each process's idle rate, taken out of
 * its measured window, is read over it. The managers' idle work comes in periods of 1-2 s (statuses, heartbeats,
 * telemetry, lease renewals, garbage collection) and /proc counts CPU in 10-ms ticks, so a window of a few seconds
 * misreads a process's idle rate by a period's work: over 3 s, by up to ~5 us per token of each manager at ~900
 * tokens/s, more than what a manager spends per token.
 */
const RT_IDLE_S = Number(process.env.DYN_BENCH_RT_IDLE_S ?? 10);

/** One replay-shaped request; false when refused (429/503: the emulated cluster at its capacity, as in the replay). */
export async function replayShaped(base: string, model: string): Promise<boolean> {
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model, prompt: Array.from({ length: RT_PROMPT }, (_, i) => 100 + i), max_tokens: RT_LEN, min_tokens: RT_LEN, ignore_eos: true,
      stream: true, stream_options: { include_usage: true, continuous_usage_stats: true },
    }),
  });
  const text = await r.text();
  if (r.status === 429 || r.status === 503) {
    await new Promise((res) => setTimeout(res, 50));
    return false;
  }
  if (!r.ok || !text.includes('[DONE]')) throw new Error(`HTTP ${r.status}: ${text.slice(-400)}`);
  return true;
}

/**
 * CPU per streamed token of the control path and of the gateway alone while RT_CLIENTS closed-loop clients stream
 * replay-shaped requests; `marginal`: less the idle cluster's own CPU (heartbeats, statuses, telemetry), measured
 * for RT_IDLE_S first: at ~1,000 tokens/s the idle cluster's ~100 ms per second is ~100 us per token by itself.
 * `byRole`: each process kind's marginal CPU per token, signed; `idleByRole`: its idle CPU, ms per s.
 */
async function realtimeCpu(base: string, model: string, pids: () => { control: number[]; gateway: number[]; engines?: number[]; roles: Map<number, string> }): Promise<{ controlUs: number; gatewayUs: number; marginalUs: number; gatewayMarginalUs: number; engineUs: number; tokensPerS: number; byRole: Record<string, number>; idleByRole: Record<string, number>; gatewayWakesPerToken: number; threads: string }> {
  const p = pids();
  for (let i = 0; i < 4; i++) await replayShaped(base, model); // warm-up: a few alone, then the closed loop
  const warmUntil = performance.now() + RT_WARM_S * 1000;
  await Promise.all(Array.from({ length: RT_CLIENTS }, async () => {
    while (performance.now() < warmUntil) await replayShaped(base, model);
  }));
  // each role's CPU (the gateway's, the instance manager's, nats-server's, ...), idle and in the window
  const byRole = () => msByRole(cpuSnapshot(p.control), p.roles);
  // each thread of the gateway's processes (of the engine's, for the engine alone): the busiest process's split by thread
  const split = p.gateway.length ? p.gateway : p.control;
  const threads = () => new Map(split.map((q) => [q, threadCounters(q)]));
  const th0 = threads(), i0 = sum(p.control), ig0 = sum(p.gateway), ir0 = byRole(), it0 = performance.now();
  await new Promise((r) => setTimeout(r, RT_IDLE_S * 1000));
  const idleS = (performance.now() - it0) / 1000;
  const idle = (sum(p.control) - i0) / idleS, idleGw = (sum(p.gateway) - ig0) / idleS, ir1 = byRole(), th1 = threads();
  const th2 = threads(), c0 = sum(p.control), g0 = sum(p.gateway), e0 = sum(p.engines ?? []), r0 = byRole(), w0 = p.gateway.reduce((a, q) => a + wakes(q), 0), t0 = performance.now();
  const until = t0 + RT_S * 1000;
  let tokens = 0;
  await Promise.all(Array.from({ length: RT_CLIENTS }, async () => {
    while (performance.now() < until) {
      if (await replayShaped(base, model)) tokens += RT_LEN;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const control = sum(p.control) - c0, gateway = sum(p.gateway) - g0, engine = sum(p.engines ?? []) - e0, r1 = byRole(), th3 = threads();
  const busiest = split.map((q) => ({ q, rows: threadRows(q, { i0: th0.get(q)!, i1: th1.get(q)!, l0: th2.get(q)!, l1: th3.get(q)! }, idleS, wall, tokens) }))
    .sort((x, y) => y.rows.reduce((a, r) => a + r.us, 0) - x.rows.reduce((a, r) => a + r.us, 0))[0];
  const threadNote = busiest ? threadTable(`By thread, the busiest ${p.gateway.length ? 'gateway process (the serving one)' : 'process'} (pid ${busiest.q}; /proc/<pid>/task/*: schedstat, utime, stime, context switches; idle over ${idleS.toFixed(1)} s, loaded over ${wall.toFixed(1)} s, ${tokens} tokens):`, busiest.rows) : '';
  const gatewayWakes = p.gateway.reduce((a, q) => a + wakes(q), 0) - w0;
  // marginal CPU per token of each role: its window's CPU less its idle rate over the window
  const roles: Record<string, number> = {};
  // (signed: a process with no per-token work comes out within its idle rate's error of 0, on either side)
  const idleByRole: Record<string, number> = {};
  for (const k of Object.keys(r1)) {
    idleByRole[k] = (ir1[k]! - ir0[k]!) / idleS;
    roles[k] = ((r1[k]! - r0[k]! - idleByRole[k] * wall) * 1000) / tokens;
  }
  return {
    controlUs: (control * 1000) / tokens, gatewayUs: (gateway * 1000) / tokens, tokensPerS: tokens / wall,
    marginalUs: (Math.max(0, control - idle * wall) * 1000) / tokens, gatewayMarginalUs: (Math.max(0, gateway - idleGw * wall) * 1000) / tokens,
    engineUs: (engine * 1000) / tokens, byRole: roles, idleByRole, gatewayWakesPerToken: gatewayWakes / tokens, threads: threadNote,
  };
}

/** A counter of the gateway's /metrics (NaN when absent: a gateway without it). */
async function gatewayCount(port: number, name: string): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
}

/**
 * TTFT of sequential requests, then closed-loop throughput; the CPU of the gateway and of the engine per completed
 * request over the closed loop, less each one's idle CPU (us): what one request costs each; and `load`: every
 * process's CPU over the closed loop by role, this bench's own process (`client`, the load generator) among them.
 */
async function measure(base: string, model: string, pids: () => ProcTree, loop: LoopThreads): Promise<{ p50: number; p99: number; rps: number; refused: number; gatewayUsPerReq: number; engineUsPerReq: number; load: WindowLoad; samples: ClientSample[] }> {
  for (let i = 0; i < 20; i++) await one(base, model, 4); // warm-up
  // and a closed loop of WARM_S first: the gateway's CPU per request falls 3-4x over its first minute of load
  // (V8 compiling it; docs/DATAPATH.md), and what is measured is a long-running gateway's, not its start's
  const body = completionBody(model, 4);
  await loop.run(base, body, CONCURRENCY, WARM_S);
  const samples: ClientSample[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const { sendMono, ttftMs, id } = await one(base, model, 4);
    samples.push({ sendMono, ttftMs, id });
  }
  const ttfts = samples.map((x) => x.ttftMs);
  const p = pids();
  const all = [...p.control, ...p.engines, process.pid], roles = new Map([...p.roles, [process.pid, 'client (this bench)']]);
  // each process's own idle CPU first (heartbeats, statuses), taken out of its per-request figure
  const ig0 = sum(p.gateway), ie0 = sum(p.engines), it0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const idleS = (performance.now() - it0) / 1000;
  const idleGw = (sum(p.gateway) - ig0) / idleS, idleEng = (sum(p.engines) - ie0) / idleS;
  const g0 = sum(p.gateway), e0 = sum(p.engines), s0 = cpuSnapshot(all), h0 = hostCpuMs();
  const t0 = performance.now();
  const { done, refused } = await loop.run(base, body, CONCURRENCY, THROUGHPUT_S);
  const wall = (performance.now() - t0) / 1000;
  const s1 = cpuSnapshot(all), h1 = hostCpuMs();
  const load = { wallS: wall, requests: done, hostCores: (h1.busyMs - h0.busyMs) / ((h1.allMs - h0.allMs) / os.cpus().length), hostCpus: os.cpus().length, roles: roleLoads(s0, s1, roles, wall, done) };
  return {
    p50: percentile(ttfts, 0.5), p99: percentile(ttfts, 0.99), rps: done / wall, refused, load, samples,
    gatewayUsPerReq: (Math.max(0, sum(p.gateway) - g0 - idleGw * wall) * 1000) / done, engineUsPerReq: (Math.max(0, sum(p.engines) - e0 - idleEng * wall) * 1000) / done,
  };
}

export async function bench(): Promise<BenchSection> {
  const procs: ChildProcess[] = [];
  const loop = new LoopThreads(CLIENT_THREADS);
  let upOut = '';
  try {
    // DYN_BENCH_PATHS=direct (a comma list) measures only those paths against the engine alone (A/B runs on a noisy
    // machine); DYN_BENCH_PATHS=direct-realtime only the real-time run (the gateway's per-event cost; no engine-alone baseline)
    const only = process.env.DYN_BENCH_PATHS?.split(',');
    const realtimeOnly = only !== undefined && only.every((k) => k === 'direct-realtime');
    // 1. the engine alone: measured before the paths and again after them (its closed-loop throughput only), the
    // ratios' baseline the mean of the two, the pair's spread telling a host that was not quiet
    const engineAlone = async (perToken: boolean) => {
      const emuPort = await freePort();
      let out = '';
      const emu = spawn(process.execPath, [BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(emuPort), '--zero-delay', '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(emu);
      emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out, '"listening"', 30_000);
      const alone: ProcTree = { engines: [emu.pid!], control: [], gateway: [], roles: new Map([[emu.pid!, 'engine']]) };
      const m = await measure(`http://127.0.0.1:${emuPort}`, MODEL, () => alone, loop);
      const cpu = perToken ? await cpuPerToken(`http://127.0.0.1:${emuPort}`, MODEL, () => alone) : undefined;
      emu.kill('SIGTERM');
      return { m, cpu };
    };
    let direct: Awaited<ReturnType<typeof measure>> = { p50: NaN, p99: NaN, rps: NaN, refused: 0, gatewayUsPerReq: NaN, engineUsPerReq: NaN, load: { wallS: NaN, requests: 0, hostCores: NaN, hostCpus: 0, roles: [] }, samples: [] };
    let directCpu: Awaited<ReturnType<typeof cpuPerToken>> = { controlUs: NaN, marginalUs: NaN, idleMsPerS: NaN, engineUs: NaN, tokensPerS: NaN };
    if (!realtimeOnly) {
      const r = await engineAlone(true);
      direct = r.m;
      directCpu = r.cpu!;
    }

    // 2. the whole path, one instance with the same zero-delay engine, for each token path
    const paths: Record<string, Awaited<ReturnType<typeof measure>> & { cpu: Awaited<ReturnType<typeof cpuPerToken>>; routed: number; credited: number; viaIntake: number }> = {};
    const traceNotes: string[] = [];
    if (TRACE_TTFT && direct.samples.length) traceNotes.push(clientTail('engine alone', direct.samples));
    const runs = [
      { key: 'direct', dataPath: 'direct', requestPlane: 'direct', realtime: false },
      { key: 'intake', dataPath: 'direct', requestPlane: 'intake', realtime: false },
      { key: 'nats', dataPath: 'nats', requestPlane: 'direct', realtime: false },
      // the direct path again with the emulator stepping in wall time (a token every ~28 ms per stream, each its
      // own socket read and client write, as in the replay) and the replay's request shape; DYN_BENCH_REALTIME=0 leaves it out
      { key: 'direct-realtime', dataPath: 'direct', requestPlane: 'direct', realtime: true },
    ] as const;
    // DYN_BENCH_DATAPLANE=native (or js,native: both in this run, alternating from the first) runs the real-time run with
    // gateway.dataPlane set so (docs/DATAPATH.md "Native data plane"; needs dist/native/relay.so from npm run build)
    const planes = (process.env.DYN_BENCH_DATAPLANE ?? 'js').split(',') as ('js' | 'native' | 'auto')[];
    const rts = new Map<string, Awaited<ReturnType<typeof realtimeCpu>> & { credited: number }>();
    const wanted = (r: (typeof runs)[number]) => (r.realtime ? process.env.DYN_BENCH_REALTIME !== '0' && (!only || only.includes('direct') || realtimeOnly) : !only || only.includes(r.key));
    // the real-time run's baseline: the same emulator stepping in wall time, alone, under the same load (its own
    // socket read and write per token per stream, its batching model): the CPU per token a client of the engine
    // alone costs it, against which the control path's figure is a ratio
    let rtAlone: Awaited<ReturnType<typeof realtimeCpu>> | undefined;
    if (runs.some((r) => r.realtime && wanted(r))) {
      const emuPort = await freePort();
      let out = '';
      const emu = spawn(process.execPath, [BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(emuPort), '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(emu);
      emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out, '"listening"', 30_000);
      rtAlone = await realtimeCpu(`http://127.0.0.1:${emuPort}`, MODEL, () => ({ control: [emu.pid!], gateway: [], roles: new Map([[emu.pid!, 'engine']]) }));
      emu.kill('SIGTERM');
    }
    for (const { key, dataPath, requestPlane, realtime, plane } of runs.filter(wanted).flatMap((r) => (r.realtime ? planes : ['js' as const]).map((plane) => ({ ...r, plane })))) {
      const dir = mkdtempSync(join(tmpdir(), 'dyn-bench-'));
      const cfg = join(dir, 'bench.json');
      writeFileSync(cfg, JSON.stringify({
        model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
        servers: [{ id: 'n0', gpus: 1 }],
        pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
        epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
        engine: {
          kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000,
          // appended to the emulator's own command line
          args: realtime ? [] : ['--zero-delay'],
        },
        // DYN_BENCH_GATEWAY_WORKERS=N runs the gateway as N worker processes behind its port (gateway.workers)
        gateway: { maxInflight: 4096, dataPath, requestPlane, workers: GATEWAY_WORKERS, dataPlane: plane },
      }));
      const gp = await freePort();
      upOut = '';
      // up starts its own private NATS (per-actor credentials)
      const traceFile = TRACE_TTFT && !realtime ? join(dir, 'first-token.jsonl') : undefined;
      const up = spawn(process.execPath, [BIN, 'up', '--config', cfg, '--port', String(gp), '--run-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', ...(traceFile ? { DYN_TRACE_FIRST_TOKEN: traceFile } : {}) } });
      procs.push(up);
      up.stdout!.on('data', (d: Buffer) => (upOut += d.toString()));
      up.stderr!.on('data', (d: Buffer) => (upOut += d.toString()));
      await waitFor(() => upOut, 'cluster ready', 90_000);
      if (realtime) {
        rts.set(plane, { ...(await realtimeCpu(`http://127.0.0.1:${gp}`, MODEL, () => tree(up.pid!))), credited: await gatewayCount(gp, 'dynamollm_gateway_credited_total') });
        const exited = new Promise((r) => up.once('exit', r));
        up.kill('SIGINT');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
        continue;
      }
      const m = await measure(`http://127.0.0.1:${gp}`, MODEL, () => tree(up.pid!), loop);
      if (traceFile) {
        // the client's side kept next to the gateway's trace, for a look at single requests
        writeFileSync(join(dir, 'client-ttft.jsonl'), m.samples.map((x) => JSON.stringify(x)).join('\n') + '\n');
        traceNotes.push(clientTail(key, m.samples), ...traceBreakdown(m.samples, readTrace(traceFile)).map((t) => `${key}: ${t}`), `${key}: the trace ${traceFile}, the client's ${join(dir, 'client-ttft.jsonl')}`);
      }
      const cpu = await cpuPerToken(`http://127.0.0.1:${gp}`, MODEL, () => tree(up.pid!));
      // how the gateway admitted the requests: its own routing (one round trip, or none on a credit) or the cluster intake
      const count = (name: string) => gatewayCount(gp, name);
      paths[key] = { ...m, cpu, routed: await count('dynamollm_gateway_routed_total'), credited: await count('dynamollm_gateway_credited_total'), viaIntake: await count('dynamollm_gateway_intake_total') };
      const exited = new Promise((r) => up.once('exit', r));
      up.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }

    // 3. the engine alone again, the same measurement after the paths
    const after = realtimeOnly ? undefined : (await engineAlone(false)).m;
    const base = engineBaseline(direct.rps, after?.rps ?? NaN);
    if (base.warning) process.stderr.write(`${base.warning}\n`);
    const baseRps = base.mean;
    const f = (x: number) => x.toFixed(2);
    // each closed loop's CPU by role (which process is at a core), and the baseline's two measurements
    const loadNotes = realtimeOnly ? [] : [
      `The engine alone's closed-loop throughput (${CONCURRENCY} clients, ${THROUGHPUT_S} s, each after ${WARM_S} s of warm-up in a fresh emulator): ${f(direct.rps)} req/s before the paths, ${f(after!.rps)} after (they differ by ${f(base.spread * 100)}%); the throughput ratios are against their mean, ${f(baseRps)} req/s.${base.warning ? ` ${base.warning}.` : ''}`,
      loadTable('the engine alone, before the paths', direct.load),
      ...Object.entries(paths).map(([key, p]) => loadTable(`${key} path${key === 'direct' ? ` (${GATEWAY_WORKERS} gateway worker${GATEWAY_WORKERS > 1 ? 's' : ''})` : ''}`, p.load)),
      loadTable('the engine alone, after the paths', after!.load),
    ];
    const rtNote = [...rts].flatMap(([plane, rt]) => [`direct, real-time engine${planes.length > 1 || plane !== 'js' ? `, gateway.dataPlane ${plane}` : ''}, the replay's requests (${RT_CLIENTS} closed-loop clients, ${RT_PROMPT}-token-id prompts, ${RT_LEN} tokens, usage on every event, ${RT_S} s after ${RT_WARM_S} s of warm-up): control path ${f(rt.controlUs)} us CPU per streamed token (marginal ${f(rt.marginalUs)}), the gateway ${f(rt.gatewayUs)} us (marginal ${f(rt.gatewayMarginalUs)}); ${f(rt.tokensPerS)} tokens/s; ${rt.credited} requests started on admission credits; marginal us per token by process (its window's CPU less its idle rate, signed): ${Object.entries(rt.byRole).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${f(v)}`).join(', ')}; idle CPU ms per s over ${RT_IDLE_S} s: ${Object.entries(rt.idleByRole).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${f(v)}`).join(', ')}; the gateway's main thread slept and woke ${f(rt.gatewayWakesPerToken)} times per token${rtAlone ? `; the engine alone under the same load (the baseline): ${f(rtAlone.controlUs)} us CPU per token (marginal ${f(rtAlone.marginalUs)}), ${f(rtAlone.tokensPerS)} tokens/s; its engine through the path ${f(rt.engineUs)} us; x the engine alone's CPU per token: the control path ${f(rt.controlUs / rtAlone.controlUs)} (marginal ${f(rt.marginalUs / rtAlone.marginalUs)}), the gateway ${f(rt.gatewayUs / rtAlone.controlUs)} (marginal ${f(rt.gatewayMarginalUs / rtAlone.marginalUs)}); tokens/s x the engine alone ${f(rt.tokensPerS / rtAlone.tokensPerS)}` : ''}`, rt.threads]);
    if (rtAlone) rtNote.push(rtAlone.threads.replace('By thread,', 'The engine alone under the same load, by thread:'));
    if (only) {
      return {
        title: `Data path (${only.join(', ')} only) vs the engine alone (${realtimeOnly ? 'the emulator stepping in wall time' : 'zero-delay emulator; the real-time run: the emulator stepping in wall time'})`,
        notes: [...Object.entries(paths).map(([key, p]) => `${key}: added TTFT p50 ${f(p.p50 - direct.p50)} ms, p99 ${f(p.p99 - direct.p99)} ms; req/s ${f(p.rps)} vs ${f(baseRps)} (ratio ${f(p.rps / baseRps)}); long-stream tokens/s ratio ${f(p.cpu.tokensPerS / directCpu.tokensPerS)}; control path ${f(p.cpu.controlUs)} us CPU per streamed token (marginal ${f(p.cpu.marginalUs)}); routed ${p.routed} (on credits ${p.credited}), via intake ${p.viaIntake}; CPU per closed-loop 4-token request (less each process's idle CPU, after ${WARM_S} s of closed-loop warm-up): gateway ${f(p.gatewayUsPerReq ?? NaN)} us, its engine ${f(p.engineUsPerReq ?? NaN)} us (the engine alone: ${f(direct.engineUsPerReq ?? NaN)} us)`), ...loadNotes, ...rtNote, ...traceNotes],
        rows: [],
      };
    }
    const d = paths.direct!, n = paths.nats!, k = paths.intake!;
    return {
      title: 'Data path: gateway -> NATS -> managers -> engine vs the engine alone (zero-delay emulator)',
      notes: [
        `After ${WARM_S} s of closed-loop warm-up, ${SEQUENTIAL} sequential streaming completions (8-token prompt, 4 output tokens) for TTFT; ${CONCURRENCY} closed-loop clients for ${THROUGHPUT_S} s for throughput; for CPU per token ${C_TOK} closed-loop clients streaming ${TOK_LEN}-token completions for ${TOK_S} s, CPU (utime+stime from /proc) of every process of the cluster but the engine (gateway, cluster/pool/instance managers, node agent, nats-server, up) per streamed token. Same emulator binary with --zero-delay everywhere; client, NATS and all actors share this machine's cores. direct (the defaults): the gateway routes each request itself and asks the instance for admission (gateway.requestPlane: direct, one round trip), then streams from the engine after the instance's grant (gateway.dataPath: direct); intake: the same token path, admission through the cluster intake -> pool leader -> instance (requestPlane: intake, three round trips); nats: the gateway's routing, the instance relays every token over NATS (dataPath: nats).`,
        `The idle cluster's own CPU (heartbeats, status, telemetry) is measured for ${IDLE_S} s first; "marginal" subtracts it from the window. Cluster processes' CPU ms per wall second when idle: direct ${f(d.cpu.idleMsPerS)}, intake ${f(k.cpu.idleMsPerS)}, nats ${f(n.cpu.idleMsPerS)}. Requests the gateway admitted through its own routing (of them on admission credits) / through the cluster intake (its metrics): direct ${d.routed} (${d.credited}) / ${d.viaIntake}, intake ${k.routed} (${k.credited}) / ${k.viaIntake}, nats ${n.routed} (${n.credited}) / ${n.viaIntake}. CPU per closed-loop 4-token request (less each process's idle CPU): the engine alone ${f(direct.engineUsPerReq ?? NaN)} us; direct: the gateway ${f(d.gatewayUsPerReq ?? NaN)} us, its engine ${f(d.engineUsPerReq ?? NaN)} us.`,
        `direct: added TTFT p50 ${f(d.p50 - direct.p50)} ms, p99 ${f(d.p99 - direct.p99)} ms; throughput ratio path/engine ${f(d.rps / baseRps)}; control path ${f(d.cpu.controlUs)} us CPU per streamed token (marginal ${f(d.cpu.marginalUs)}; ${f(d.cpu.controlUs / directCpu.engineUs)}x the engine's own ${f(directCpu.engineUs)} us when called alone)`,
        `intake: added TTFT p50 ${f(k.p50 - direct.p50)} ms, p99 ${f(k.p99 - direct.p99)} ms; throughput ratio path/engine ${f(k.rps / baseRps)}; control path ${f(k.cpu.controlUs)} us CPU per streamed token (marginal ${f(k.cpu.marginalUs)}); long-stream tokens/s ratio path/engine: direct ${f(d.cpu.tokensPerS / directCpu.tokensPerS)}, intake ${f(k.cpu.tokensPerS / directCpu.tokensPerS)}, nats ${f(n.cpu.tokensPerS / directCpu.tokensPerS)}`,
        `nats: added TTFT p50 ${f(n.p50 - direct.p50)} ms, p99 ${f(n.p99 - direct.p99)} ms; throughput ratio path/engine ${f(n.rps / baseRps)}; control path ${f(n.cpu.controlUs)} us CPU per streamed token (marginal ${f(n.cpu.marginalUs)}); direct/nats CPU per token ${f(d.cpu.controlUs / n.cpu.controlUs)}`,
        ...loadNotes,
        ...rtNote,
        ...traceNotes,
      ],
      rows: [
        { path: 'engine alone', 'TTFT p50 ms': f(direct.p50), 'TTFT p99 ms': f(direct.p99), 'max req/s': f(baseRps), refused: direct.refused, 'control CPU us/token': '-', 'marginal us/token': '-', 'engine CPU us/token': f(directCpu.engineUs), 'tokens/s (long streams)': f(directCpu.tokensPerS) },
        { path: 'gateway -> instance admit -> grant; gateway <- engine (direct)', 'TTFT p50 ms': f(d.p50), 'TTFT p99 ms': f(d.p99), 'max req/s': f(d.rps), refused: d.refused, 'control CPU us/token': f(d.cpu.controlUs), 'marginal us/token': f(d.cpu.marginalUs), 'engine CPU us/token': f(d.cpu.engineUs), 'tokens/s (long streams)': f(d.cpu.tokensPerS) },
        { path: 'gateway -> intake -> pool -> instance -> grant; gateway <- engine (intake)', 'TTFT p50 ms': f(k.p50), 'TTFT p99 ms': f(k.p99), 'max req/s': f(k.rps), refused: k.refused, 'control CPU us/token': f(k.cpu.controlUs), 'marginal us/token': f(k.cpu.marginalUs), 'engine CPU us/token': f(k.cpu.engineUs), 'tokens/s (long streams)': f(k.cpu.tokensPerS) },
        { path: 'gateway -> instance admit -> engine, tokens over NATS (nats)', 'TTFT p50 ms': f(n.p50), 'TTFT p99 ms': f(n.p99), 'max req/s': f(n.rps), refused: n.refused, 'control CPU us/token': f(n.cpu.controlUs), 'marginal us/token': f(n.cpu.marginalUs), 'engine CPU us/token': f(n.cpu.engineUs), 'tokens/s (long streams)': f(n.cpu.tokensPerS) },
      ],
    };
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    await loop.close();
  }
}
