/**
 * Trace replay against an OpenAI-compatible endpoint (the gateway, or any vLLM): open-loop arrivals at
 * the trace's timestamps divided by `speed`, each request a streaming completion with exactly the trace's
 * prompt length (token ids) and output length (max_tokens + ignore_eos), measuring TTFT and the time
 * between tokens at the client. The summary accounts for every request (ok + rejected + failed = sent) and
 * reports p50/p99 TTFT and TBT and SLO attainment per request type, energy (from the responses' usage and
 * from the cluster's /metrics counters when the endpoint is a dynamollm gateway), average power and
 * reconfigurations.
 */
import http from 'node:http';
import https from 'node:https';
import { readTrace, type TraceRecord } from '../sim/trace.ts';
import { classifyLengths } from '../model/request-types.ts';
import { DEFAULT_SLO_SETTINGS, requestSloOf, sloOf, thresholdsOf, type SloSettings } from '../policy/slo.ts';
import { percentile } from '../sim/metrics.ts';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { parsePrometheusText } from './prom-parse.ts';

export interface ReplayOptions {
  /** trace file: Azure LLM inference CSV or JSONL (src/sim/trace.ts). */
  trace: string;
  /** endpoint base URL, e.g. http://127.0.0.1:8000 (no /v1). */
  url: string;
  apiKey?: string;
  /** model id; default the first of GET /v1/models. */
  model?: string;
  /** trace-time compression: 10 = ten times the trace's arrival rate. Default 1. */
  speed?: number;
  /** at most this many requests. */
  limit?: number;
  /** skip the trace's first startS seconds (trace time from its first row): the window starts there. Default 0. */
  startS?: number;
  /** only durationS seconds of trace time (from startS). */
  durationS?: number;
  /**
   * the SLOs and class thresholds the requests are typed and judged by: the cluster config's `slo:` and
   * `thresholds:`, as its gateway types and its instances schedule them. Default Table IV.
   */
  slo?: SloSettings;
  /** cluster engines' time-scale: measured latencies are multiplied by it before SLO comparison. Default 1. */
  timeScale?: number;
  /** a request gets this long end to end, ms. Default 300000. */
  requestTimeoutMs?: number;
  /** client-side bound on requests in flight (open loop: beyond it a request counts as failed). Default 4096. */
  maxInflight?: number;
  /** called about twice a second. */
  onProgress?: (p: ReplayProgress) => void;
  /** called as each request ends (a look at single requests: the twin check's per-request log). */
  onResult?: (r: ReplayRequestResult) => void;
  signal?: AbortSignal;
}

export interface ReplayProgress {
  sent: number;
  done: number;
  inflight: number;
  ok: number;
  rejected: number;
  failed: number;
  traceMs: number;
  elapsedMs: number;
}

/** One request's outcome, as measured by the client. */
export interface ReplayRequestResult {
  /** its offset in the trace window (from the window's first row), trace ms. */
  traceMs: number;
  type: RequestType;
  inputTokens: number;
  outcome: 'ok' | 'rejected' | 'failed';
  /** time to its first token, ms (x timeScale); undefined when none came. */
  ttftMs?: number;
  /** the gaps between its tokens after the first, ms (x timeScale); empty when it streamed one token or none. */
  tbtMs: number[];
  /** how late it was sent against its due time, ms (wall). */
  lateMs: number;
  /** when it was sent (its TTFT's start), ms since the Unix epoch, sub-ms (the process's wall-clock origin + its monotonic time). */
  sentAtMs?: number;
  /** its response's id (the stream's first event's `id`: the gateway's request id, prefixed); undefined when none came. */
  responseId?: string;
}

export interface TypeStats {
  type: RequestType;
  ok: number;
  rejected: number;
  failed: number;
  ttftP50Ms: number | null;
  ttftP99Ms: number | null;
  tbtP50Ms: number | null;
  tbtP99Ms: number | null;
  ttftSloMs: number;
  tbtSloMs: number;
  /** fraction of ok requests whose TTFT and p99-of-own-TBT met the SLOs. */
  sloAttainment: number | null;
  /**
   * p99 TTFT and p99 TBT of the type within their SLOs: the TTFT as the p99 of each request's TTFT over its own SLO
   * (a prompt past 8,192 tokens has a longer one than its type's `ttftSloMs`), at most 1.
   */
  p99MeetsSlo: boolean | null;
}

export interface ReplaySummary {
  trace: string;
  url: string;
  model: string;
  speed: number;
  timeScale: number;
  sent: number;
  ok: number;
  rejected: number;
  failed: number;
  /** rows not sent: input longer than the longest request type (8192 tokens). */
  skipped: number;
  wallS: number;
  /** when the replay's clock started (its first request is due then), ms since the Unix epoch. */
  startedAtMs: number;
  traceSpanS: number;
  perType: TypeStats[];
  /** energy reported in the responses' usage (requests' own share), J, with its sources. */
  requestEnergyJ: number;
  requestEnergySources: string[];
  /** whole-cluster energy over the replay from the gateway's /metrics (every GPU: instances, idle or busy, and GPUs no instance holds), J; null if unavailable. */
  clusterEnergyJ: number | null;
  clusterEnergyKWh: number | null;
  clusterEnergySources: string[];
  avgPowerW: number | null;
  reconfigurations: Record<string, number> | null;
  errors: Record<string, number>;
  /**
   * how late the sends left against their due times (the trace's offsets / speed), ms: a client short of CPU sends
   * the trace's requests later, and bunched, than the trace has them. null when nothing was sent.
   */
  sendLateMs: { p50: number; p99: number; max: number } | null;
}

interface Result {
  type: RequestType;
  outcome: 'ok' | 'rejected' | 'failed';
  ttftMs?: number;
  tbtMs: number[];
  energyJ: number;
  energySource?: string;
  error?: string;
  sentAtMs?: number;
  responseId?: string;
}

/** How long the replay waits after its last completion before its last read of the cluster's counters, s (telemetry lags by one status period). */
export const COUNTER_WAIT_S = 1.5;

const REJECT_STATUS = new Set([429, 503]);
const REJECT_CODES = new Set(['overloaded', 'rejected', 'mailbox_full', 'unavailable', 'no_responders', 'timeout']);

async function metricsSnapshot(url: string, apiKey?: string): Promise<{ energyJ: number; sources: string[]; reconf: Record<string, number> } | null> {
  try {
    const r = await fetch(`${url}/metrics`, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(5000) });
    if (!r.ok) return null;
    const fams = parsePrometheusText(await r.text());
    const e = fams.get('dynamollm_energy_joules_total');
    if (!e) return null;
    // the cluster's GPUs: the instances' counters and the GPUs no instance held (node agents)
    const samples = [...e.samples, ...(fams.get('dynamollm_unallocated_gpu_energy_joules_total')?.samples ?? [])];
    const reconf: Record<string, number> = {};
    for (const s of fams.get('dynamollm_reconfigurations_total')?.samples ?? []) reconf[s.labels.kind ?? '?'] = (reconf[s.labels.kind ?? '?'] ?? 0) + s.value;
    return { energyJ: samples.reduce((a, s) => a + s.value, 0), sources: [...new Set(samples.map((s) => s.labels.source ?? '?'))], reconf };
  } catch {
    return null;
  }
}

async function firstModel(url: string, apiKey?: string): Promise<string> {
  const r = await fetch(`${url}/v1/models`, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`GET ${url}/v1/models answered ${r.status}: ${(await r.text()).slice(0, 200)}`);
  const j = (await r.json()) as { data?: { id: string }[] };
  const id = j.data?.[0]?.id;
  if (!id) throw new Error(`GET ${url}/v1/models lists no model`);
  return id;
}

// keep-alive sockets without a pool limit: open-loop arrivals must not queue behind a socket pool
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });

/**
 * One streaming completion over node:http (cheaper per event than fetch's web streams: at 10x the shipped
 * trace the client parses ~12k events/s on the same cores as the cluster); never throws (every outcome is a
 * Result). TTFT = first event with text - request start; TBT = gap between events with text, per token: an
 * event carrying k > 1 tokens (a coalesced chunk, or vLLM's --stream-interval; k from the growth of
 * completion_tokens in the usage that stream_options.continuous_usage_stats puts on every event, as vLLM
 * does) adds its gap for its first token and k-1 gaps of 0 (those tokens reached the client together).
 * Latencies are multiplied by timeScale.
 */
function oneRequest(o: { url: string; apiKey?: string; model: string; rec: TraceRecord; type: RequestType; timeoutMs: number; timeScale: number; signal?: AbortSignal }): Promise<Result> {
  const res: Result = { type: o.type, outcome: 'failed', tbtMs: [], energyJ: 0 };
  const body = JSON.stringify({
    model: o.model,
    // token ids give the engine exactly the trace's prompt length (no tokenizer guesswork)
    prompt: Array.from({ length: Math.max(1, o.rec.inputTokens) }, (_, i) => 100 + (i % 30000)),
    max_tokens: Math.max(1, o.rec.outputTokens),
    min_tokens: Math.max(1, o.rec.outputTokens),
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
  });
  return new Promise<Result>((resolve) => {
    let settled = false;
    const t0 = performance.now();
    res.sentAtMs = performance.timeOrigin + t0;
    let last = 0;
    let sawDone = false;
    let completionTokens = 0;
    const finish = (outcome: Result['outcome'] | null, error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (outcome) res.outcome = outcome;
      if (error) res.error = error;
      resolve(res);
    };
    const u = new URL(`${o.url}/v1/completions`);
    const tls = u.protocol === 'https:';
    const rq = (tls ? https : http).request(
      { host: u.hostname, port: u.port || (tls ? 443 : 80), path: u.pathname, method: 'POST', agent: tls ? tlsAgent : agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}) } },
      (rs) => {
        rs.setEncoding('utf8');
        let buf = '';
        if ((rs.statusCode ?? 0) !== 200) {
          rs.on('data', (d: string) => (buf += d));
          rs.on('end', () => {
            // the cause: the gateway's x-dynamollm-error-code header (its body is vLLM's, whose code is the status),
            // else a string code of another server's body
            let code = typeof rs.headers['x-dynamollm-error-code'] === 'string' ? rs.headers['x-dynamollm-error-code'] : '';
            if (!code) {
              try {
                const c = (JSON.parse(buf) as { error?: { code?: unknown } }).error?.code;
                if (typeof c === 'string') code = c;
              } catch {
                /* not JSON */
              }
            }
            finish(REJECT_STATUS.has(rs.statusCode!) ? 'rejected' : 'failed', `http_${rs.statusCode}${code ? `_${code}` : ''}`);
          });
          rs.on('error', () => finish('failed', `http_${rs.statusCode}`));
          return;
        }
        rs.on('data', (d: string) => {
          if (settled) return;
          buf += d;
          const now = performance.now();
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = ev.startsWith('data:') && !ev.includes('\n') ? ev.slice(5).trim() : ev.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
            if (!data) continue;
            if (data === '[DONE]') {
              sawDone = true;
              continue;
            }
            let j: { id?: unknown; error?: { code?: string | number; retryable?: boolean }; choices?: { text?: string }[]; usage?: { completion_tokens?: number; energy_joules?: number; energy_source?: string } };
            try {
              j = JSON.parse(data) as typeof j;
            } catch {
              rq.destroy();
              return finish('failed', 'stream_bad_json');
            }
            if (j.error) {
              rq.destroy();
              // vLLM's error event (code: the status; the gateway adds `retryable`), or a cause's name in `code`
              const c = j.error.code;
              const rejected = j.error.retryable === true || (typeof c === 'number' ? REJECT_STATUS.has(c) : REJECT_CODES.has(c ?? ''));
              return finish(rejected ? 'rejected' : 'failed', `stream_${c ?? 'error'}`);
            }
            if (res.responseId === undefined && typeof j.id === 'string') res.responseId = j.id;
            // tokens this event brought: the growth of the running completion count (1 without usage)
            const total = j.usage?.completion_tokens;
            const k = total !== undefined ? total - completionTokens : 1;
            if (total !== undefined) completionTokens = total;
            if (j.choices?.[0]?.text) {
              if (res.ttftMs === undefined) res.ttftMs = (now - t0) * o.timeScale;
              else res.tbtMs.push((now - last) * o.timeScale);
              for (let x = 1; x < k; x++) res.tbtMs.push(0);
              last = now;
            }
            if (j.usage) {
              res.energyJ = j.usage.energy_joules ?? 0;
              res.energySource = j.usage.energy_source;
            }
          }
        });
        rs.on('end', () => (sawDone ? finish('ok') : finish('failed', 'stream_incomplete')));
        rs.on('error', () => finish('failed', 'stream_incomplete'));
        rs.on('aborted', () => finish('failed', 'stream_incomplete'));
      },
    );
    const timer = setTimeout(() => {
      rq.destroy();
      finish('failed', 'client_timeout');
    }, o.timeoutMs);
    const onAbort = () => {
      rq.destroy();
      finish('failed', 'aborted');
    };
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    rq.on('error', (e: NodeJS.ErrnoException) => finish('failed', `network_${e.code ?? e.name}`));
    rq.end(body);
  });
}

export async function replayTrace(opts: ReplayOptions): Promise<ReplaySummary> {
  const speed = opts.speed ?? 1;
  if (!(speed > 0)) throw new RangeError(`speed must be > 0, got ${speed}`);
  const timeScale = opts.timeScale ?? 1;
  const url = opts.url.replace(/\/+$/, '').replace(/\/v1$/, '');
  const model = opts.model ?? (await firstModel(url, opts.apiKey));
  const maxInflight = opts.maxInflight ?? 4096;
  const settings = opts.slo ?? DEFAULT_SLO_SETTINGS;
  const thresholds = thresholdsOf(settings);
  const before = await metricsSnapshot(url, opts.apiKey);
  const results: Promise<Result & { ttftSloMs: number }>[] = [];
  const errors: Record<string, number> = {};
  const prog: ReplayProgress = { sent: 0, done: 0, inflight: 0, ok: 0, rejected: 0, failed: 0, traceMs: 0, elapsedMs: 0 };
  let skipped = 0;
  const start = performance.now();
  const startedAtMs = Date.now();
  let firstT: number | null = null;
  let lastT = 0;
  const late: number[] = [];
  const timer = opts.onProgress
    ? setInterval(() => {
        prog.elapsedMs = performance.now() - start;
        opts.onProgress!({ ...prog });
      }, 500)
    : null;
  try {
    for await (const rec of readTrace(opts.trace, { limit: opts.limit, ...(opts.startS ? { startMs: opts.startS * 1000 } : {}), durationMs: opts.durationS !== undefined ? opts.durationS * 1000 : undefined })) {
      if (opts.signal?.aborted) break;
      firstT ??= rec.tMs;
      lastT = rec.tMs;
      let type: RequestType;
      try {
        type = classifyLengths(rec.inputTokens, rec.outputTokens, thresholds);
      } catch {
        skipped++;
        continue;
      }
      const due = (rec.tMs - firstT) / speed;
      const wait = due - (performance.now() - start);
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      late.push(Math.max(0, performance.now() - start - due));
      prog.traceMs = rec.tMs - firstT;
      prog.sent++;
      if (prog.inflight >= maxInflight) {
        prog.failed++;
        prog.done++;
        errors.client_inflight_limit = (errors.client_inflight_limit ?? 0) + 1;
        results.push(Promise.resolve({ type, outcome: 'failed', tbtMs: [], energyJ: 0, error: 'client_inflight_limit', ttftSloMs: 0 }));
        continue;
      }
      prog.inflight++;
      const sent = { traceMs: prog.traceMs, lateMs: late[late.length - 1]! };
      // the request's own TTFT SLO, as its instance schedules it (a prompt past 8,192 tokens: the L class's pace)
      const ttftSloMs = requestSloOf(type, rec.inputTokens, settings).ttftMs;
      results.push(
        oneRequest({ url, apiKey: opts.apiKey, model, rec, type, timeoutMs: opts.requestTimeoutMs ?? 300_000, timeScale, signal: opts.signal }).then((r) => {
          prog.inflight--;
          prog.done++;
          prog[r.outcome]++;
          if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
          // the caller's callback runs after the counters; a throw from it is counted, not left as a request in flight
          try {
            opts.onResult?.({ ...sent, type, inputTokens: rec.inputTokens, outcome: r.outcome, ...(r.ttftMs !== undefined ? { ttftMs: r.ttftMs } : {}), tbtMs: r.tbtMs, ...(r.sentAtMs !== undefined ? { sentAtMs: r.sentAtMs } : {}), ...(r.responseId !== undefined ? { responseId: r.responseId } : {}) });
          } catch {
            errors.on_result_callback = (errors.on_result_callback ?? 0) + 1;
          }
          return { ...r, ttftSloMs };
        }),
      );
    }
    const all = await Promise.all(results);
    prog.elapsedMs = performance.now() - start;
    opts.onProgress?.({ ...prog });
    const wallS = (performance.now() - start) / 1000;
    // telemetry lags by one status period: give the counters a moment before the final read
    await new Promise((r) => setTimeout(r, COUNTER_WAIT_S * 1000));
    const after = before ? await metricsSnapshot(url, opts.apiKey) : null;
    const perType: TypeStats[] = [];
    for (const t of REQUEST_TYPES) {
      const rs = all.filter((r) => r.type === t);
      if (!rs.length) continue;
      const ok = rs.filter((r) => r.outcome === 'ok');
      const ttfts = ok.map((r) => r.ttftMs!).filter((x) => x !== undefined);
      const tbts = ok.flatMap((r) => r.tbtMs);
      const { ttftMs: ttftSlo, tbtMs: tbtSlo } = sloOf(t, settings);
      const met = ok.filter((r) => r.ttftMs! <= r.ttftSloMs && (r.tbtMs.length === 0 || percentile(r.tbtMs, 0.99) <= tbtSlo)).length;
      const p99ttft = ttfts.length ? percentile(ttfts, 0.99) : null;
      const p99tbt = tbts.length ? percentile(tbts, 0.99) : null;
      perType.push({
        type: t,
        ok: ok.length,
        rejected: rs.filter((r) => r.outcome === 'rejected').length,
        failed: rs.filter((r) => r.outcome === 'failed').length,
        ttftP50Ms: ttfts.length ? percentile(ttfts, 0.5) : null,
        ttftP99Ms: p99ttft,
        tbtP50Ms: tbts.length ? percentile(tbts, 0.5) : null,
        tbtP99Ms: p99tbt,
        ttftSloMs: ttftSlo,
        tbtSloMs: tbtSlo,
        sloAttainment: ok.length ? met / ok.length : null,
        p99MeetsSlo: p99ttft === null ? null : percentile(ok.filter((r) => r.ttftMs !== undefined).map((r) => r.ttftMs! / r.ttftSloMs), 0.99) <= 1 && (p99tbt === null || p99tbt <= tbtSlo),
      });
    }
    const clusterEnergyJ = before && after ? Math.max(0, after.energyJ - before.energyJ) : null;
    let reconfigurations: Record<string, number> | null = null;
    if (before && after) {
      reconfigurations = {};
      for (const [k, v] of Object.entries(after.reconf)) {
        const d = v - (before.reconf[k] ?? 0);
        if (d > 0) reconfigurations[k] = d;
      }
    }
    const sources = new Set(all.map((r) => r.energySource).filter((s): s is string => !!s));
    return {
      trace: opts.trace,
      url,
      model,
      speed,
      timeScale,
      sent: prog.sent,
      ok: all.filter((r) => r.outcome === 'ok').length,
      rejected: all.filter((r) => r.outcome === 'rejected').length,
      failed: all.filter((r) => r.outcome === 'failed').length,
      skipped,
      wallS,
      startedAtMs,
      traceSpanS: firstT === null ? 0 : (lastT - firstT) / 1000,
      perType,
      requestEnergyJ: all.reduce((a, r) => a + r.energyJ, 0),
      requestEnergySources: [...sources],
      clusterEnergyJ,
      clusterEnergyKWh: clusterEnergyJ === null ? null : clusterEnergyJ / 3.6e6,
      clusterEnergySources: after?.sources ?? [],
      avgPowerW: clusterEnergyJ === null ? null : clusterEnergyJ / (wallS + COUNTER_WAIT_S),
      reconfigurations,
      errors,
      sendLateMs: late.length ? { p50: percentile(late, 0.5), p99: percentile(late, 0.99), max: Math.max(...late) } : null,
    };
  } finally {
    if (timer) clearInterval(timer);
  }
}

const f = (x: number | null, d = 0) => (x === null ? '-' : x.toFixed(d));

export function formatSummary(s: ReplaySummary): string {
  const out: string[] = [];
  out.push(`replay of ${s.trace} at ${s.speed}x against ${s.url} (model ${s.model}${s.timeScale !== 1 ? `, latencies x${s.timeScale} for the engines' time-scale` : ''})`);
  out.push(`requests: sent ${s.sent} = ok ${s.ok} + rejected ${s.rejected} + failed ${s.failed}${s.skipped ? `   (not sent: ${s.skipped} rows with input > 8192 tokens)` : ''}`);
  out.push(`time: ${s.wallS.toFixed(1)} s wall for ${s.traceSpanS.toFixed(1)} s of trace${s.sendLateMs ? `; sends late against the trace: p50 ${f(s.sendLateMs.p50)} ms, p99 ${f(s.sendLateMs.p99)} ms, max ${f(s.sendLateMs.max)} ms` : ''}`);
  out.push('');
  out.push('type     ok  rej fail  TTFT p50  TTFT p99 (SLO)    TBT p50  TBT p99 (SLO)  SLO met  p99 ok');
  for (const t of s.perType) {
    out.push(
      `${t.type.padEnd(4)} ${String(t.ok).padStart(6)} ${String(t.rejected).padStart(4)} ${String(t.failed).padStart(4)}  ` +
        `${f(t.ttftP50Ms).padStart(6)} ms ${f(t.ttftP99Ms).padStart(6)} ms (${t.ttftSloMs})  ` +
        `${f(t.tbtP50Ms, 1).padStart(6)} ms ${f(t.tbtP99Ms, 1).padStart(6)} ms (${t.tbtSloMs})  ` +
        `${t.sloAttainment === null ? '    -' : (100 * t.sloAttainment).toFixed(1).padStart(5) + '%'}  ${t.p99MeetsSlo === null ? '-' : t.p99MeetsSlo ? 'yes' : 'NO'}`,
    );
  }
  out.push('');
  out.push(`energy (requests' usage): ${s.requestEnergyJ.toFixed(0)} J [${s.requestEnergySources.join(', ') || 'none reported'}]`);
  if (s.clusterEnergyJ !== null) {
    out.push(`energy (cluster: instances and unallocated GPUs): ${s.clusterEnergyJ.toFixed(0)} J = ${s.clusterEnergyKWh!.toFixed(5)} kWh [${s.clusterEnergySources.join(', ')}]; average power ${f(s.avgPowerW)} W`);
  } else out.push('energy (cluster): not available (endpoint has no dynamollm /metrics)');
  if (s.reconfigurations) out.push(`reconfigurations: ${Object.entries(s.reconfigurations).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  if (Object.keys(s.errors).length) out.push(`errors: ${Object.entries(s.errors).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return out.join('\n');
}
