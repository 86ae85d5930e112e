/**
 * The engine twin: one engine, no cluster. A fixed list of requests (a window of a trace: arrival times, prompt and
 * output lengths) goes through one emulated engine in real time and through the simulator's step model of one
 * instance on its virtual clock (`simulate --fidelity step`: one server, one instance of the same TP at the max
 * clock, no clock policy, no emergency, no admission bound), and each request's TTFT and mean TBT are compared, side
 * against side. Both sides run the same batching core (src/engine/core.ts) on the same performance model, so what
 * parts them is how each drives it: when a step starts, when a request joins, when its tokens reach the client.
 *
 * Live sides (`--live`):
 * - `driver`: the emulator's RealtimeDriver in this process (src/engine/emulator/driver.ts), each request submitted
 *   at its arrival's wall time, its tokens timed as the driver delivers them (wall time x timeScale);
 * - `http`: the emulator as its own process (`dynamollm engine-emulator`, as an instance manager starts it), each
 *   request a streaming /v1/completions as `replay` sends it (token ids, min_tokens = max_tokens, ignore_eos), its
 *   TTFT the first text event's arrival after the send, its TBTs the gaps between text events.
 *   node --import tsx test/bench/engine-twin.ts [--live driver|http] [--start S] [--duration S] [--speed X]
 *     [--time-scale X] [--tp N] [--profile FILE] [--trace FILE] [--rate-scale K] [--json FILE]
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { RealtimeDriver } from '../../src/engine/emulator/driver.ts';
import { parseProfile, perfModelOfProfile, engineOfProfile, type Profile } from '../../src/model/index.ts';
import { readTrace, simulate, type SimOptions } from '../../src/sim/index.ts';

export interface EngineTwinRequest {
  /** arrival, ms after the window's first row (trace time / speed). */
  arrivalMs: number;
  /** the live side's send, ms after the window's first send on the same clock (filled by the live side). */
  sentMs?: number;
  promptTokens: number;
  outputTokens: number;
}

/** One request's outcome on one side: TTFT, and its token gaps' mean and largest, ms. */
export interface RequestTiming {
  ttftMs: number;
  /** live driver only: the TTFT on the engine's own timeline (its first token's step end less its arrival), and the send's lateness against the schedule, ms. */
  coreTtftMs?: number;
  /** live driver only: the mean token gap on the engine's own timeline, ms. */
  coreTbtMeanMs?: number;
  lateMs?: number;
  tbtMeanMs: number;
  tbtMaxMs: number;
  gaps: number;
}

export interface EngineTwinOptions {
  trace: string;
  profile: string;
  /** the window: from startS s of trace time, durationS s of it, at speed (trace s per wall s). */
  startS: number;
  durationS: number;
  speed: number;
  tp: 1 | 2 | 4 | 8;
  /** the live engine's time scale (virtual ms per wall ms); its latencies are scaled back. */
  timeScale: number;
  live: 'driver' | 'http';
}

/** The window's requests as both sides read them (the simulator's reader: rebased, compressed by speed). */
export async function windowRequests(o: Pick<EngineTwinOptions, 'trace' | 'startS' | 'durationS' | 'speed'>): Promise<EngineTwinRequest[]> {
  const out: EngineTwinRequest[] = [];
  for await (const r of readTrace(o.trace, { startMs: o.startS * 1000, durationMs: o.durationS * 1000, rebase: true, speed: o.speed })) {
    out.push({ arrivalMs: r.tMs, promptTokens: Math.max(1, r.inputTokens), outputTokens: Math.max(1, r.outputTokens) });
  }
  return out;
}

function loadProfile(path: string): Profile {
  return parseProfile(JSON.parse(readFileSync(path, 'utf8')));
}

/** The simulated side: the simulator's step model of one instance, each request's TTFT and token gaps by its arrival. */
export async function simSide(o: EngineTwinOptions, reqs: readonly EngineTwinRequest[], trace: SimOptions['trace'] = { kind: 'file', path: o.trace, startMs: o.startS * 1000, durationMs: o.durationS * 1000, speed: o.speed }): Promise<Map<number, RequestTiming[]>> {
  const p = loadProfile(o.profile);
  const gaps = new Map<number, number[][]>();
  const ttfts = new Map<number, number[]>();
  const opts: SimOptions = {
    policy: 'dynamollm', fidelity: 'step', model: p.model, gpu: p.gpu, profilePath: o.profile, rateScale: 1,
    servers: 1, gpusPerServer: o.tp, instanceTp: o.tp, asConfigured: true,
    knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: false, emergency: false },
    dispatch: 'policy', requestPathMs: { toEngineMs: 0, toClientMs: 0 },
    // no admission bound before the engine: every request goes to the engine at its arrival, as the emulator takes it
    instanceLimits: { maxInEngine: 1 << 20, maxQueued: 1 << 20 },
    trace,
  };
  // a request's gaps arrive in order, one request's after another's interleaved: gather them by arrival, then split
  // them among the requests of one arrival time by the order of their TTFTs (every gap belongs to a request not done)
  const open = new Map<number, number[][]>();
  await simulate(opts, undefined, {
    onTokenGap: (g) => {
      let xs = open.get(g.arrivalMs);
      if (!xs) open.set(g.arrivalMs, (xs = [[]]));
      xs[xs.length - 1]!.push(g.gapMs);
    },
    onRequest: (r) => {
      (ttfts.get(r.arrivalMs) ?? ttfts.set(r.arrivalMs, []).get(r.arrivalMs)!).push(r.ttftMs);
      const xs = open.get(r.arrivalMs) ?? [[]];
      (gaps.get(r.arrivalMs) ?? gaps.set(r.arrivalMs, []).get(r.arrivalMs)!).push(xs[xs.length - 1]!);
      open.set(r.arrivalMs, [...xs.slice(0, -1), []]);
    },
  });
  const out = new Map<number, RequestTiming[]>();
  for (const [at, ts] of ttfts) out.set(at, ts.map((t, i) => timing(t, gaps.get(at)?.[i] ?? [])));
  if ([...out.values()].reduce((n, x) => n + x.length, 0) !== reqs.length) throw new Error(`simulated ${[...out.values()].reduce((n, x) => n + x.length, 0)} of ${reqs.length} requests`);
  return out;
}

function timing(ttftMs: number, gaps: readonly number[]): RequestTiming {
  return { ttftMs, tbtMeanMs: gaps.length ? gaps.reduce((a, b) => a + b, 0) / gaps.length : 0, tbtMaxMs: gaps.length ? Math.max(...gaps) : 0, gaps: gaps.length };
}

/** Runs `f(i)` at each request's arrival (wall ms = arrivalMs / timeScale after now); resolves when every `done` has been called. */
function schedule(reqs: readonly EngineTwinRequest[], timeScale: number, f: (i: number, done: () => void, lateMs: number) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    let left = reqs.length;
    const done = () => --left === 0 && resolve();
    if (!left) resolve();
    const t0 = performance.now();
    let next = 0;
    const tick = () => {
      const now = (performance.now() - t0) * timeScale;
      while (next < reqs.length && reqs[next]!.arrivalMs <= now) f(next, done, now - reqs[next++]!.arrivalMs);
      if (next < reqs.length) setTimeout(tick, Math.max(0, (reqs[next]!.arrivalMs - (performance.now() - t0) * timeScale) / timeScale));
    };
    tick();
  });
}

/** The live side in this process: the emulator's driver, each request's tokens timed at their delivery. */
export async function driverSide(o: EngineTwinOptions, reqs: readonly EngineTwinRequest[], pulled: { count: number; ms: number } = { count: 0, ms: 0 }): Promise<Map<number, RequestTiming[]>> {
  const p = loadProfile(o.profile);
  const driver = new RealtimeDriver({ perf: perfModelOfProfile(p), tp: o.tp, timeScale: o.timeScale, maxNumBatchedTokens: p.scheduler?.maxNumBatchedTokens, maxNumSeqs: p.scheduler?.maxNumSeqs });
  const out = new Map<number, RequestTiming[]>();
  try {
    await schedule(reqs, o.timeScale, (i, done, late) => {
      const r = reqs[i]!;
      r.sentMs = r.arrivalMs + late;
      const sent = performance.now();
      let first = -1;
      let last = 0;
      let core = NaN;
      let coreLast = 0;
      let coreGaps = 0;
      const gaps: number[] = [];
      // the send as the engine timed it (its clock: the simulation replays the requests at these times)
      const at = driver.submit({ id: `q${i}`, promptTokens: r.promptTokens, outputTokens: r.outputTokens }, (ev) => {
        const t = performance.now();
        if (ev.kind === 'first_token') {
          first = last = t;
          core = ev.atMs - at;
          coreLast = ev.atMs;
        }
        else if (ev.kind === 'token') {
          gaps.push((t - last) * o.timeScale);
          last = t;
          coreGaps += ev.atMs - coreLast;
          coreLast = ev.atMs;
        } else if (ev.kind === 'finished') {
          (out.get(r.arrivalMs) ?? out.set(r.arrivalMs, []).get(r.arrivalMs)!).push({ ...timing((first - sent) * o.timeScale, gaps), coreTtftMs: core, coreTbtMeanMs: gaps.length ? coreGaps / gaps.length : 0, lateMs: late });
          done();
        }
      });
      r.sentMs = at;
    });
    pulled.count = driver.pulls;
    pulled.ms = driver.pulledMs;
  } finally {
    driver.close();
  }
  return out;
}

/** The live side over HTTP: the emulator's own process, each request streamed as replay streams it. */
export async function httpSide(o: EngineTwinOptions, reqs: readonly EngineTwinRequest[]): Promise<Map<number, RequestTiming[]>> {
  const p = loadProfile(o.profile);
  const engine = engineOfProfile(p);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'engine-emulator', '--model', p.model, '--gpu', p.gpu, '--tp', String(o.tp), '--port', '0',
    '--time-scale', String(o.timeScale), ...(engine ? ['--calibration-engine', engine] : []),
    ...(p.scheduler ? ['--max-num-batched-tokens', String(p.scheduler.maxNumBatchedTokens), '--max-num-seqs', String(p.scheduler.maxNumSeqs)] : [])], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /"event":"listening","port":(\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (c) => reject(new Error(`engine-emulator exited (${c}) before listening`)));
      setTimeout(() => reject(new Error('engine-emulator did not listen within 60 s')), 60_000).unref();
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    const out = new Map<number, RequestTiming[]>();
    const model = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/v1/models', agent }, (rs) => {
        let b = '';
        rs.on('data', (d: Buffer) => (b += d.toString()));
        rs.on('end', () => resolve((JSON.parse(b) as { data: { id: string }[] }).data[0]!.id));
      }).on('error', reject);
    });
    await schedule(reqs, o.timeScale, (i, done, late) => {
      const r = reqs[i]!;
      r.sentMs = r.arrivalMs + late;
      const body = JSON.stringify({ model, prompt: Array.from({ length: r.promptTokens }, (_, k) => 100 + (k % 30000)), max_tokens: r.outputTokens, min_tokens: r.outputTokens, ignore_eos: true, stream: true });
      const sent = performance.now();
      let first = -1;
      let last = 0;
      const gaps: number[] = [];
      const rq = http.request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (rs) => {
        rs.setEncoding('utf8');
        let buf = '';
        rs.on('data', (d: string) => {
          buf += d;
          const now = performance.now();
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, k);
            buf = buf.slice(k + 2);
            if (!ev.startsWith('data: {')) continue;
            const j = JSON.parse(ev.slice(6)) as { choices?: { text?: string }[] };
            if (!j.choices?.length || j.choices[0]!.text === undefined) continue;
            if (first < 0) first = last = now;
            else {
              gaps.push((now - last) * o.timeScale);
              last = now;
            }
          }
        });
        rs.on('end', () => {
          (out.get(r.arrivalMs) ?? out.set(r.arrivalMs, []).get(r.arrivalMs)!).push(timing((first - sent) * o.timeScale, gaps));
          done();
        });
      });
      rq.on('error', (e) => {
        throw e;
      });
      rq.end(body);
    });
    agent.destroy();
    return out;
  } finally {
    child.stdin.end();
    child.kill('SIGTERM');
  }
}

/**
 * Per request, sim against live: pairs the two sides' timings by arrival key (the nearest simulated key within 0.01 ms:
 * a trace file's timestamps are read back to a tenth of a microsecond), within one key by TTFT order.
 */
export function pairUp(live: Map<number, RequestTiming[]>, sim: Map<number, RequestTiming[]>): { live: RequestTiming; sim: RequestTiming; arrivalMs: number }[] {
  const out: { live: RequestTiming; sim: RequestTiming; arrivalMs: number }[] = [];
  const keys = [...sim.keys()].sort((a, b) => a - b);
  const nearest = (x: number) => {
    let lo = 0;
    let hi = keys.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (keys[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    const c = [keys[lo - 1], keys[lo]].filter((k): k is number => k !== undefined && Math.abs(k - x) <= 0.01);
    return c.sort((a, b) => Math.abs(a - x) - Math.abs(b - x))[0];
  };
  for (const [at, ls] of live) {
    const k = nearest(at);
    const ss = k === undefined ? [] : sim.get(k)!;
    const a = [...ls].sort((x, y) => x.ttftMs - y.ttftMs);
    const b = [...ss].sort((x, y) => x.ttftMs - y.ttftMs);
    for (let i = 0; i < Math.min(a.length, b.length); i++) out.push({ live: a[i]!, sim: b[i]!, arrivalMs: at });
  }
  return out.sort((x, y) => x.arrivalMs - y.arrivalMs);
}

const q = (xs: number[], p: number) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? a[Math.min(a.length - 1, Math.max(0, Math.ceil(p * a.length) - 1))]! : NaN;
};

export interface EngineTwinReport {
  requests: number;
  paired: number;
  /** per request |sim - live|: median and p90, ms; and sim - live (signed) median, ms. */
  ttftAbsDiffP50Ms: number;
  ttftAbsDiffP90Ms: number;
  ttftDiffP50Ms: number;
  tbtMeanAbsDiffP50Ms: number;
  tbtMeanDiffP50Ms: number;
  /** live driver only: requests whose TTFT on the engine's timeline is off the simulated by more than 1 ms (a step early or late), and their largest |sim - live|, ms. */
  engineTtftOff?: { requests: number; maxMs: number };
  /** live driver only: times its timeline was pulled forward (its process starved past the driver's lag bound), and the ms skipped. */
  driverPulls?: { count: number; ms: number };
  /** each side's TTFT p50 / p99 and per-token TBT (request means) p50 / p99 and largest gaps' p99, ms. */
  live: { ttftP50: number; ttftP99: number; tbtMeanP50: number; tbtMeanP99: number; tbtMaxP99: number };
  sim: { ttftP50: number; ttftP99: number; tbtMeanP50: number; tbtMeanP99: number; tbtMaxP99: number };
}

export function compare(reqs: number, pairs: ReturnType<typeof pairUp>): EngineTwinReport {
  const side = (k: 'live' | 'sim') => ({
    ttftP50: q(pairs.map((x) => x[k].ttftMs), 0.5), ttftP99: q(pairs.map((x) => x[k].ttftMs), 0.99),
    tbtMeanP50: q(pairs.filter((x) => x[k].gaps).map((x) => x[k].tbtMeanMs), 0.5), tbtMeanP99: q(pairs.filter((x) => x[k].gaps).map((x) => x[k].tbtMeanMs), 0.99),
    tbtMaxP99: q(pairs.filter((x) => x[k].gaps).map((x) => x[k].tbtMaxMs), 0.99),
  });
  const withGaps = pairs.filter((x) => x.live.gaps && x.sim.gaps);
  return {
    requests: reqs, paired: pairs.length,
    ttftAbsDiffP50Ms: q(pairs.map((x) => Math.abs(x.sim.ttftMs - x.live.ttftMs)), 0.5),
    ttftAbsDiffP90Ms: q(pairs.map((x) => Math.abs(x.sim.ttftMs - x.live.ttftMs)), 0.9),
    ttftDiffP50Ms: q(pairs.map((x) => x.sim.ttftMs - x.live.ttftMs), 0.5),
    tbtMeanAbsDiffP50Ms: q(withGaps.map((x) => Math.abs(x.sim.tbtMeanMs - x.live.tbtMeanMs)), 0.5),
    tbtMeanDiffP50Ms: q(withGaps.map((x) => x.sim.tbtMeanMs - x.live.tbtMeanMs), 0.5),
    live: side('live'), sim: side('sim'),
    ...(pairs.some((x) => x.live.coreTtftMs !== undefined)
      ? { engineTtftOff: ((d) => ({ requests: d.filter((x) => x > 1).length, maxMs: Math.max(0, ...d) }))(pairs.map((x) => Math.abs(x.sim.ttftMs - x.live.coreTtftMs!))) }
      : {}),
  };
}

/** The engine twin over a window: both sides, paired and compared. */
export async function engineTwin(o: EngineTwinOptions): Promise<{ report: EngineTwinReport; pairs: ReturnType<typeof pairUp> }> {
  const reqs = await windowRequests(o);
  const pulled = { count: 0, ms: 0 };
  const live = o.live === 'http' ? await httpSide(o, reqs) : await driverSide(o, reqs, pulled);
  // the simulation of the requests as the live side sent them (its sends a little late against the trace: a request
  // sent later finds the engine's steps at another phase), so that the two sides differ by the engine alone
  const dir = mkdtempSync(join(tmpdir(), 'engine-twin-'));
  try {
    const path = join(dir, 'sends.csv');
    writeFileSync(path, sendsTrace(reqs));
    const sim = await simSide(o, reqs, { kind: 'file', path, speed: 1 });
    // the live side's timings by the same key: its send
    const bySend = new Map<number, RequestTiming[]>();
    for (const [at, ts] of live) {
      const rs = reqs.filter((r) => r.arrivalMs === at);
      ts.forEach((t, i) => {
        const k = sendKey(rs[Math.min(i, rs.length - 1)]!.sentMs!);
        (bySend.get(k) ?? bySend.set(k, []).get(k)!).push(t);
      });
    }
    const pairs = pairUp(bySend, sim);
    return { report: { ...compare(reqs.length, pairs), ...(o.live === 'driver' ? { driverPulls: pulled } : {}) }, pairs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A send's time as the simulator reads it back from sendsTrace (tenths of a microsecond, rebased on the first). */
const sendKey = (ms: number) => Math.round(ms * 1e4) / 1e4;

/** The requests at their live sends, as a trace file of the conversation trace's format (rows in send order). */
export function sendsTrace(reqs: readonly EngineTwinRequest[]): string {
  const base = Date.UTC(2023, 10, 16);
  const rows = reqs.filter((r) => r.sentMs !== undefined).sort((a, b) => a.sentMs! - b.sentMs!);
  const t0 = rows[0]?.sentMs ?? 0;
  const stamp = (ms: number) => {
    const whole = Math.floor(ms);
    const d = new Date(base + whole);
    const frac = String(Math.round((ms - whole) * 1e4)).padStart(4, '0');
    return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 23)}${frac}`;
  };
  // each send rebased on the first (the simulator rebases its window on its first row)
  for (const r of rows) r.sentMs = sendKey(r.sentMs! - t0);
  return ['TIMESTAMP,ContextTokens,GeneratedTokens', ...rows.map((r) => `${stamp(r.sentMs!)},${r.promptTokens},${r.outputTokens}`)].join('\n') + '\n';
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: {
    live: { type: 'string', default: 'driver' }, start: { type: 'string', default: '0' }, duration: { type: 'string', default: '60' }, speed: { type: 'string', default: '1' },
    'time-scale': { type: 'string', default: '1' }, tp: { type: 'string', default: '1' }, profile: { type: 'string', default: 'profiles/llama3.1-8b.h100.tp1.json' },
    trace: { type: 'string', default: 'data/traces/AzureLLMInferenceTrace_conv.csv' }, json: { type: 'string' },
  } });
  const o: EngineTwinOptions = { trace: values.trace, profile: values.profile, startS: Number(values.start), durationS: Number(values.duration), speed: Number(values.speed), tp: Number(values.tp) as 1, timeScale: Number(values['time-scale']), live: values.live === 'http' ? 'http' : 'driver' };
  const { report, pairs } = await engineTwin(o);
  process.stdout.write(JSON.stringify({ options: o, ...report }, null, 1) + '\n');
  if (values.json) writeFileSync(values.json, JSON.stringify(pairs));
  process.exit(0);
}
