/**
 * The paper's profiler (DynamoLLM section on profiling): for each SM clock and request type, offer open-loop
 * Poisson load at rising rates to one instance for a fixed window, measure TTFT/TBT percentiles from the
 * token stream and energy from the GPU's own counter, stop a type's sweep at a clock once its p99 misses the
 * SLO, and write the result in the profile format (src/model/profile-types.ts, source.kind = 'measured').
 *
 * The endpoint is OpenAI-compatible (vLLM or the engine emulator): POST {endpoint}/v1/completions with
 * stream=true, the prompt as token ids of the type's input length, max_tokens = its output length and
 * ignore_eos=true, so every request of a type has exactly its representative shape.
 *
 * Time scale: an emulator started with --time-scale X runs X times faster than real time. Latencies read on
 * the wall clock are multiplied by X, offered rates in wall terms are load x X, windows last windowS / X of
 * wall time; the emulator's energy counter already runs in its own (virtual) time. Use 1 for a real engine.
 *
 * Clocks are always reset when the run ends, fails or is aborted: a profiler never leaves a GPU slow.
 */
import { rng } from '../sim/trace.ts';
import type { GpuControl } from '../gpu/types.ts';
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { PROFILE_VERSION, type MaxLoadEntry, type Profile, type ProfileCell } from '../model/profile-types.ts';
import type { RequestTypeSpec } from '../model/types.ts';
import type { RequestType } from '../../protocols/request-types.ts';

/** latencies of cells that were never measured (above a clock's first SLO miss), ms; as src/model does. */
export const UNMEASURED_MS = 1e6;

export class ProfilerError extends Error {
  override name = 'ProfilerError';
  readonly retryable: boolean;
  constructor(message: string, retryable = false, options?: { cause?: unknown }) {
    super(message, options);
    this.retryable = retryable;
  }
}

export interface ProfilerOptions {
  /** base URL of the OpenAI-compatible engine, e.g. http://127.0.0.1:8000 */
  endpoint: string;
  /** the 'model' field of requests (the engine's served model name). */
  servedModel: string;
  /** model and GPU ids written into the profile (src/model catalog ids). */
  modelId: string;
  gpuId: string;
  /** tensor-parallel degree of the instance under test. */
  tp: number;
  /** SM clocks to profile, MHz (each is clamped to a supported clock by GpuControl). */
  clocksMhz: number[];
  requestTypes: RequestTypeSpec[];
  /** offered loads to try in order, req/s to this instance; 0 = lone requests one after another. */
  loads: number[];
  /** measuring window per (clock, type, load), seconds of engine time. Default 30 (the paper's runs). */
  windowS?: number;
  /** warm-up before each window's measurement starts, seconds of engine time. Default windowS / 5. */
  warmupS?: number;
  /** idle span measured per clock for loaded-idle power, seconds of engine time. Default min(5, windowS / 5). */
  idleS?: number;
  /** engine time / wall time (an emulator's --time-scale); default 1. */
  timeScale?: number;
  /** seed of the arrival process; default 1. */
  seed?: number;
  /** deadline of one request, seconds of engine time. Default 120. */
  requestTimeoutS?: number;
  gpu: GpuControl;
  /** aborts the run (Ctrl-C); clocks are still reset. */
  signal?: AbortSignal;
  onProgress?: (p: ProfilerProgress) => void;
  /** provenance notes added to the profile. */
  notes?: string;
}

export interface ProfilerProgress {
  done: number;
  total: number;
  clockMhz: number;
  type: RequestType;
  load: number;
  cell?: ProfileCell;
}

/** One request's stream as observed by the client, in engine ms. */
export interface RequestSample {
  ok: boolean;
  ttftMs: number;
  tbtMs: number[];
  error?: string;
}

export interface WindowResult {
  samples: RequestSample[];
  /** instance energy over the measured span (all its GPUs), J. */
  energyJ: number;
  /** measured span, s of engine time. */
  spanS: number;
  /** requests that arrived within the measured span and completed. */
  completedInSpan: number;
}

/** Percentile by nearest rank on a sorted copy; NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

/** The project's deterministic PRNG (mulberry32, src/sim/trace.ts): a profile run's arrivals are reproducible from its seed. */
export { rng };

/** Poisson arrival times (s) at `rate` req/s over [0, durationS). */
export function poissonArrivals(rate: number, durationS: number, rand: () => number): number[] {
  if (!(rate > 0)) return [];
  const out: number[] = [];
  for (let t = -Math.log(1 - rand()) / rate; t < durationS; t += -Math.log(1 - rand()) / rate) out.push(t);
  return out;
}

/**
 * Arrival times (s) over [fromS, toS) of a Poisson process at `rate` req/s conditioned on its expected count:
 * round(rate x span) times drawn iid uniform, sorted (given its count, a Poisson process's arrivals are exactly
 * that). A short window then offers exactly its load: with a few dozen requests, the count's own Poisson noise
 * (1/sqrt(n)) would otherwise dominate the measured power.
 */
export function conditionedArrivals(rate: number, fromS: number, toS: number, rand: () => number): number[] {
  if (!(rate > 0) || !(toS > fromS)) return [];
  const n = Math.round(rate * (toS - fromS));
  return Array.from({ length: n }, () => fromS + rand() * (toS - fromS)).sort((a, b) => a - b);
}

/** The profile cell of one measured window. */
export function cellOf(type: RequestTypeSpec, tp: number, clockMhz: number, load: number, w: WindowResult, idlePowerW: number): ProfileCell {
  const ok = w.samples.filter((s) => s.ok);
  const failed = w.samples.length - ok.length;
  const ttft = ok.map((s) => s.ttftMs);
  const tbt = ok.flatMap((s) => s.tbtMs);
  const r = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)) : UNMEASURED_MS);
  const powerW = load === 0 ? idlePowerW : w.spanS > 0 ? w.energyJ / w.spanS : 0;
  // per request: the window's energy over the requests it served. Under load, the number that arrived in a
  // short window is a noisy draw of load x span, so the expected count is used (the model's definition too).
  const served = load === 0 ? w.completedInSpan : load * w.spanS;
  const energyPerRequestJ = served > 0 ? w.energyJ / served : 0;
  const c: ProfileCell = {
    type: type.type,
    tp,
    clockMhz,
    load,
    powerW: r(powerW),
    energyPerRequestJ: r(energyPerRequestJ),
    ttftP50Ms: r(percentile(ttft, 50)),
    ttftP99Ms: r(percentile(ttft, 99)),
    tbtP50Ms: r(tbt.length ? percentile(tbt, 50) : NaN),
    tbtP99Ms: r(tbt.length ? percentile(tbt, 99) : NaN),
    meetsSlo: false,
  };
  c.meetsSlo = ok.length > 0 && failed === 0 && c.ttftP99Ms <= type.ttftSloMs && c.tbtP99Ms <= type.tbtSloMs;
  return c;
}

/** keep-alive agents, so a request does not pay a TCP handshake inside its TTFT. */
const agents = { http: new http.Agent({ keepAlive: true, maxSockets: Infinity }), https: new https.Agent({ keepAlive: true, maxSockets: Infinity }) };

/**
 * Streams one completion and times it on the wall clock (scaled to engine ms by `scale`). Uses node:http
 * directly and scans the SSE bytes without a JSON parse per token, so the client adds as little as possible
 * to what it measures. Never throws: a failed request is a sample with ok=false (it counts against the SLO).
 */
export function timedCompletion(endpoint: string, body: Record<string, unknown>, scale: number, timeoutMs: number, signal?: AbortSignal): Promise<RequestSample & { endWallMs: number }> {
  return new Promise((resolve) => {
    const url = new URL(`${endpoint}/v1/completions`);
    const payload = JSON.stringify(body);
    const tokens: number[] = [];
    let settled = false;
    let buf = '';
    const finish = (r: RequestSample & { endWallMs: number }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(r);
    };
    const fail = (error: string) => {
      req.destroy();
      finish({ ok: false, ttftMs: NaN, tbtMs: [], error, endWallMs: performance.now() });
    };
    const onAbort = () => fail('aborted');
    const mod = url.protocol === 'https:' ? https : http;
    const t0 = performance.now();
    const req = mod.request(
      url,
      { method: 'POST', agent: url.protocol === 'https:' ? agents.https : agents.http, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        res.setEncoding('utf8');
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (d: string) => (text += d));
          res.on('end', () => fail(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          return;
        }
        res.on('data', (d: string) => {
          const now = performance.now();
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (!ev.startsWith('data:')) continue;
            if (ev.includes('[DONE]')) continue;
            if (ev.includes('"error"')) return fail(`stream error: ${ev.slice(0, 200)}`);
            // one chunk per engine step per request carries that step's token; the usage chunk has no choices
            if (!ev.includes('"choices":[]')) tokens.push(now);
          }
        });
        res.on('end', () => {
          if (tokens.length === 0) return fail('stream ended without tokens');
          const tbt: number[] = [];
          for (let k = 1; k < tokens.length; k++) tbt.push((tokens[k] - tokens[k - 1]) * scale);
          finish({ ok: true, ttftMs: (tokens[0] - t0) * scale, tbtMs: tbt, endWallMs: tokens[tokens.length - 1] });
        });
        res.on('error', (e) => fail(e.message));
      },
    );
    const timer = setTimeout(() => fail(`no completion within ${Math.round(timeoutMs)} ms (wall)`), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => fail(e.message));
    req.end(payload);
  });
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

const sumOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** The whole sweep. Locks each clock, measures, and always resets the clocks at the end. */
export async function runProfile(o: ProfilerOptions): Promise<Profile> {
  const windowS = o.windowS ?? 30;
  const warmupS = o.warmupS ?? windowS / 5;
  const idleS = o.idleS ?? Math.min(5, windowS / 5);
  const scale = o.timeScale ?? 1;
  const timeoutWallMs = ((o.requestTimeoutS ?? 120) * 1000) / scale;
  if (!(windowS > 0) || !(warmupS >= 0) || !(scale > 0)) throw new ProfilerError('window must be > 0 s, warm-up >= 0 s, time scale > 0');
  if (o.clocksMhz.length === 0 || o.requestTypes.length === 0) throw new ProfilerError('nothing to profile: no clocks or no request types');
  const loads = [...new Set([0, ...o.loads])].sort((a, b) => a - b);
  if (loads.some((l) => !(l >= 0) || !Number.isFinite(l))) throw new ProfilerError(`loads must be finite and >= 0, got ${o.loads.join(',')}`);
  const endpoint = o.endpoint.replace(/\/+$/, '');
  // every in-flight request listens for the abort: as many listeners as requests in flight
  if (o.signal) setMaxListeners(0, o.signal);
  const rand = rng(o.seed ?? 1);
  const measured = new Map<string, ProfileCell>(); // type|clock|load
  const idle: { tp: number; clockMhz: number; powerW: number }[] = [];
  const appliedClocks: number[] = [];
  const total = o.clocksMhz.length * o.requestTypes.length * loads.length;
  let done = 0;

  const energyJ = async () => sumOf(await o.gpu.readEnergyMj()) / 1000;
  const bodyOf = (t: RequestTypeSpec) => ({
    model: o.servedModel,
    // token ids of the type's input length; any valid id will do, vLLM does not look at meaning
    prompt: Array.from({ length: t.inputTokens }, (_, i) => 100 + (i % 1000)),
    max_tokens: t.outputTokens,
    ignore_eos: true,
    stream: true,
    temperature: 0,
  });

  /** One window at one load: open-loop Poisson arrivals (or lone requests back to back at load 0). */
  const measure = async (t: RequestTypeSpec, load: number): Promise<WindowResult> => {
    const body = bodyOf(t);
    const wall0 = performance.now();
    const measureFromWall = wall0 + (warmupS * 1000) / scale;
    const endWall = wall0 + ((warmupS + windowS) * 1000) / scale;
    const inSpan: Promise<RequestSample & { endWallMs: number }>[] = [];
    const warm: Promise<unknown>[] = [];
    let e0 = NaN;
    let e0Wall = NaN;
    const startMeasuring = async () => {
      e0Wall = performance.now();
      e0 = await energyJ();
    };
    if (load === 0) {
      // the unloaded system: one request at a time (no warm-up needed), at least two samples
      await startMeasuring();
      while (!o.signal?.aborted && (inSpan.length < 2 || performance.now() < e0Wall + (windowS * 1000) / scale)) {
        const p = timedCompletion(endpoint, body, scale, timeoutWallMs, o.signal);
        inSpan.push(p);
        const s = await p;
        if (!s.ok) break;
      }
    } else {
      // warm-up and measured span each get exactly their expected count (conditionedArrivals)
      const warmWallS = warmupS / scale, endWallS = (warmupS + windowS) / scale;
      const arrivals = [...conditionedArrivals(load * scale, 0, warmWallS, rand), ...conditionedArrivals(load * scale, warmWallS, endWallS, rand)];
      let measuring = false;
      for (const a of arrivals) {
        const at = wall0 + a * 1000;
        if (o.signal?.aborted) break;
        if (!measuring && at >= measureFromWall) {
          await sleep(measureFromWall - performance.now(), o.signal);
          await startMeasuring();
          measuring = true;
        }
        await sleep(at - performance.now(), o.signal);
        const p = timedCompletion(endpoint, body, scale, timeoutWallMs, o.signal);
        (measuring ? inSpan : warm).push(p);
      }
      if (!measuring) {
        await sleep(measureFromWall - performance.now(), o.signal);
        await startMeasuring();
      }
      await sleep(endWall - performance.now(), o.signal);
    }
    // energy over exactly the window; latency samples of every request that arrived in it
    const spanEndWall = load === 0 ? performance.now() : Math.max(performance.now(), endWall);
    const e1 = await energyJ();
    const samples = await Promise.all(inSpan);
    await Promise.all(warm); // drain, so the next window starts from an empty engine
    // in steady state as many requests complete as arrive: count those that arrived in the span and finished
    const completedInSpan = samples.filter((s) => s.ok).length;
    return { samples, energyJ: e1 - e0, spanS: ((spanEndWall - e0Wall) * scale) / 1000, completedInSpan };
  };

  try {
    // a few unmeasured requests first: connections, JIT and the engine's first-request costs out of the way
    for (let i = 0; i < 3 && !o.signal?.aborted; i++) await timedCompletion(endpoint, { ...bodyOf(o.requestTypes[0]), max_tokens: 2 }, scale, timeoutWallMs, o.signal);
    for (const req of o.clocksMhz) {
      if (o.signal?.aborted) break;
      const applied = await o.gpu.lockClocks(req, req);
      const clock = applied.maxMhz;
      if (appliedClocks.includes(clock)) throw new ProfilerError(`clocks ${o.clocksMhz.join(',')} MHz clamp to the same supported clock ${clock} MHz twice`);
      appliedClocks.push(clock);
      // loaded-idle power at this clock: the engine holds its weights and serves nothing
      const i0 = await energyJ();
      const iw0 = performance.now();
      await sleep((idleS * 1000) / scale, o.signal);
      const idleW = (await energyJ()) - i0;
      const idleInstanceW = idleW / (((performance.now() - iw0) * scale) / 1000);
      idle.push({ tp: o.tp, clockMhz: clock, powerW: Number((idleInstanceW / o.tp).toPrecision(4)) });
      for (const t of o.requestTypes) {
        for (const load of loads) {
          if (o.signal?.aborted) break;
          const w = await measure(t, load);
          if (o.signal?.aborted) break;
          const cell = cellOf(t, o.tp, clock, load, w, idleInstanceW);
          measured.set(`${t.type}|${clock}|${load}`, cell);
          done++;
          o.onProgress?.({ done, total, clockMhz: clock, type: t.type, load, cell });
          if (!cell.meetsSlo) {
            done += loads.length - 1 - loads.indexOf(load);
            break; // the paper's sweep: higher loads only miss more
          }
        }
      }
    }
  } finally {
    // never leave the GPU locked, whatever happened above
    await o.gpu.resetClocks();
  }
  if (o.signal?.aborted) throw new ProfilerError('profiling aborted; GPU clocks were reset', true);
  return assembleProfile(o, windowS, scale, appliedClocks, loads, measured, idle);
}

/** Puts the measured cells into the profile format; cells above a clock's first SLO miss are marked unmeasured. */
export function assembleProfile(
  o: Pick<ProfilerOptions, 'modelId' | 'gpuId' | 'tp' | 'requestTypes' | 'endpoint' | 'notes' | 'gpu'>,
  windowS: number,
  scale: number,
  appliedClocks: number[],
  loads: number[],
  measured: Map<string, ProfileCell>,
  idle: { tp: number; clockMhz: number; powerW: number }[],
): Profile {
  const clocks = [...appliedClocks].sort((a, b) => a - b);
  const cells: ProfileCell[] = [];
  const maxLoad: MaxLoadEntry[] = [];
  const grid: Partial<Record<RequestType, number[]>> = {};
  for (const t of o.requestTypes) {
    const used = loads.filter((l) => clocks.some((f) => measured.has(`${t.type}|${f}|${l}`)));
    grid[t.type] = used.length ? used : [0];
    for (const f of clocks) {
      let best = 0;
      let last: ProfileCell | undefined;
      for (const l of grid[t.type]!) {
        const c = measured.get(`${t.type}|${f}|${l}`);
        if (c) {
          cells.push(c);
          last = c;
          if (c.meetsSlo && l > best) best = l;
        } else {
          cells.push({
            type: t.type, tp: o.tp, clockMhz: f, load: l,
            powerW: last?.powerW ?? 0, energyPerRequestJ: last?.energyPerRequestJ ?? 0,
            ttftP50Ms: UNMEASURED_MS, ttftP99Ms: UNMEASURED_MS, tbtP50Ms: UNMEASURED_MS, tbtP99Ms: UNMEASURED_MS,
            meetsSlo: false,
          });
        }
      }
      // the highest load of an unbroken run of SLO-meeting loads from the bottom of the grid
      let ml = 0;
      for (const l of grid[t.type]!) {
        const c = measured.get(`${t.type}|${f}|${l}`);
        if (!c?.meetsSlo) break;
        ml = l;
      }
      maxLoad.push({ type: t.type, tp: o.tp, clockMhz: f, maxLoad: Math.min(ml, best) });
    }
  }
  const energySource = o.gpu.kind === 'emulated' ? 'the emulated GPU (modelled energy, src/model)' : `the GPU energy counter via ${o.gpu.kind} (measured)`;
  return {
    version: PROFILE_VERSION,
    model: o.modelId,
    gpu: o.gpuId,
    source: {
      kind: 'measured',
      generatedBy: `dynamollm profile run: open-loop Poisson load (count-conditioned per window), ${windowS} s windows, p50/p99 from the token stream of ${o.endpoint}` + (scale !== 1 ? `, engine time scale ${scale}` : ''),
      date: new Date().toISOString().slice(0, 10),
      notes: [
        `energy from ${energySource}; load 0 = lone requests back to back (powerW there = loaded-idle power)`,
        `latencies of ${UNMEASURED_MS} ms mark cells above a clock's first SLO miss, which were not measured`,
        o.notes,
      ]
        .filter(Boolean)
        .join('; '),
    },
    tpDegrees: [o.tp],
    clocksMhz: clocks,
    requestTypes: o.requestTypes.map((t) => ({ ...t })),
    loads: grid,
    cells,
    maxLoad,
    idlePowerW: idle.sort((a, b) => a.clockMhz - b.clockMhz),
  };
}
