/**
 * The datapath bench's TTFT breakdown (DYN_BENCH_TRACE_TTFT=1): the client's sequential requests (each its send and
 * first token on CLOCK_MONOTONIC, and its x-request-id) joined with the gateway's first token trace
 * (src/runtime/first-token-trace.ts, DYN_TRACE_FIRST_TOKEN) by request id. For the slowest SLOW_SHARE of the requests
 * (by the client's TTFT): each segment's median against its median over all, how many had a garbage collection in
 * the gateway or arrived while its event loop was busy, and the share of their TTFT outside the gateway's own marks
 * (the client's send to the gateway's head, the gateway's first write to the client's first token).
 */
import { readFileSync } from 'node:fs';
import { SEGMENTS, monoMs, type FirstTokenLine } from '../../src/runtime/first-token-trace.ts';
import { percentile } from '../../src/sim/metrics.ts';

/** One sequential request as the client saw it. */
export interface ClientSample {
  id: string | null;
  /** its send, CLOCK_MONOTONIC ms (monoMs). */
  sendMono: number;
  ttftMs: number;
}

export const SLOW_SHARE = 0.02;
/**
 * the gateway's loop counts as busy at a request's arrival past this many ms of active time in the gap before it (the
 * gap holds the previous request's own end too: its end report, its leg record).
 */
export const BUSY_MS = 0.5;

const med = (xs: number[]) => (xs.length ? percentile(xs, 0.5) : NaN);
const us = (ms: number) => `${Math.round(ms * 1000)}`;

/** the slowest SLOW_SHARE of `samples` by TTFT (at least one). */
export function slowest<T extends { ttftMs: number }>(samples: T[]): T[] {
  return [...samples].sort((a, b) => b.ttftMs - a.ttftMs).slice(0, Math.max(1, Math.round(samples.length * SLOW_SHARE)));
}

/** The client-side figures alone (the engine alone: no marks). */
export function clientTail(label: string, samples: ClientSample[]): string {
  const t = samples.map((s) => s.ttftMs);
  const slow = slowest(samples).map((s) => s.ttftMs);
  return `${label}: TTFT of ${samples.length} sequential requests (client side, us): p50 ${us(percentile(t, 0.5))}, p98 ${us(percentile(t, 1 - SLOW_SHARE))}, p99 ${us(percentile(t, 0.99))}, max ${us(Math.max(...t))}; the slowest ${slow.length}: median ${us(med(slow))}`;
}

/** Reads the trace file's lines (every worker's). */
export function readTrace(file: string): Map<string, FirstTokenLine> {
  const byId = new Map<string, FirstTokenLine>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return byId;
  }
  for (const l of text.split('\n')) {
    if (!l) continue;
    const x = JSON.parse(l) as FirstTokenLine;
    byId.set(x.id, x);
  }
  return byId;
}

/** Each segment of one joined request, ms: the client's send to the head, SEGMENTS' steps, the first write to the client's first token. */
function segmentsOf(c: ClientSample, g: FirstTokenLine): number[] | undefined {
  if (g.marks.some((m) => m === null)) return undefined;
  const m = g.marks as number[];
  const steps = m.slice(1).map((v, i) => v - m[i]!);
  return [g.headMonoMs - c.sendMono, ...steps, c.sendMono + c.ttftMs - (g.headMonoMs + m[m.length - 1]!)];
}

const NAMES = ['client send -> gateway head', ...SEGMENTS.slice(1).map((s, i) => `${SEGMENTS[i]} -> ${s}`), 'gateway first write -> client first token'];

/** The breakdown's notes. */
export function traceBreakdown(samples: ClientSample[], trace: Map<string, FirstTokenLine>): string[] {
  const joined = samples.flatMap((c) => {
    const g = c.id ? trace.get(c.id) : undefined;
    const seg = g && segmentsOf(c, g);
    return g && seg ? [{ c, g, seg, ttftMs: c.ttftMs }] : [];
  });
  if (joined.length === 0) return [`TTFT trace: none of the ${samples.length} requests found in the gateway's trace (${trace.size} lines)`];
  const slow = slowest(joined);
  const rows = NAMES.map((name, k) => `${name} ${us(med(slow.map((j) => j.seg[k]!)))} vs ${us(med(joined.map((j) => j.seg[k]!)))}`);
  const outside = (j: (typeof joined)[number]) => j.seg[0]! + j.seg[j.seg.length - 1]!;
  const share = (js: typeof joined) => js.reduce((a, j) => a + outside(j), 0) / js.reduce((a, j) => a + j.ttftMs, 0);
  const gc = slow.filter((j) => j.g.gcMs > 0 || j.g.gcGapMs > 0).length, gcAll = joined.filter((j) => j.g.gcMs > 0 || j.g.gcGapMs > 0).length;
  const busy = slow.filter((j) => j.g.loopBusyMs > BUSY_MS).length, busyAll = joined.filter((j) => j.g.loopBusyMs > BUSY_MS).length;
  const clockOk = Math.min(...joined.map((j) => j.seg[0]!)) >= 0;
  // each slow request's largest segment
  const largest = new Map<string, number>();
  for (const j of slow) {
    const k = j.seg.indexOf(Math.max(...j.seg));
    largest.set(NAMES[k]!, (largest.get(NAMES[k]!) ?? 0) + 1);
  }
  return [
    `TTFT trace (DYN_BENCH_TRACE_TTFT): ${joined.length} of ${samples.length} sequential requests joined with the gateway's marks by request id; the slowest ${slow.length} (TTFT >= ${us(slow[slow.length - 1]!.ttftMs)} us) against all: TTFT median ${us(med(slow.map((j) => j.ttftMs)))} vs ${us(med(joined.map((j) => j.ttftMs)))} us; median per segment, us (slowest vs all): ${rows.join('; ')}`,
    `TTFT trace, the slowest ${slow.length}: ${gc} with a garbage collection in the gateway (from the previous stream's end to the first write; all: ${gcAll} of ${joined.length}); ${busy} arrived while the gateway's loop was busy (over ${BUSY_MS * 1000} us active since the previous stream's end; all: ${busyAll}), its active time median ${us(med(slow.map((j) => j.g.loopBusyMs)))} vs ${us(med(joined.map((j) => j.g.loopBusyMs)))} us; outside the gateway's own marks (client send -> head, first write -> client's first token): ${(share(slow) * 100).toFixed(1)}% of their TTFT (all: ${(share(joined) * 100).toFixed(1)}%), median ${us(med(slow.map(outside)))} vs ${us(med(joined.map(outside)))} us${clockOk ? '' : ' (a negative send -> head: the clocks do not agree, the split between the two outside segments is unreliable)'}; their largest segment: ${[...largest].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`,
  ];
}

/** Streaming completion; resolves with ms to the first token and to the end, its send on CLOCK_MONOTONIC and its x-request-id. */
export async function one(base: string, model: string, maxTokens: number): Promise<{ ttftMs: number; totalMs: number } & ClientSample> {
  const sendMono = monoMs();
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: maxTokens, ignore_eos: true, stream: true }),
  });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft = -1;
  const dec = new TextDecoder();
  let buf = '';
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    if (ttft < 0 && /"text":"[^"]/.test(buf)) ttft = performance.now() - t0;
  }
  if (!buf.includes('[DONE]')) throw new Error(`stream ended without [DONE]: ${buf.slice(-400)}`);
  return { ttftMs: ttft, totalMs: performance.now() - t0, sendMono, id: r.headers.get('x-request-id') };
}
