/**
 * The engine -> instance-manager leg of the token path, per streamed token: CPU of the reading side (this
 * process: VllmEngine.completion, i.e. node:http + the incremental SSE parser + JSON.parse per event) and of
 * the emulator process writing the SSE stream, with C concurrent streams decoding in real time (Llama-3.1-8B
 * TP2 emulated, batches of C, ~25-30 ms steps, as in deploy/replay.yaml).
 * Baseline (same run, same emulator): a reader on fetch + web streams + the same SSE parser.
 * Also the emulator with --stream-interval 4 (vLLM's flag: events of 4 tokens after the first).
 */
import { readFileSync, readdirSync } from 'node:fs';
import type { BenchSection } from './types.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import { sseData } from '../../src/engine/sse.ts';

const MODEL = 'llama3.1-8b';
const C = 96;
const OUT = 128;
const ROUNDS = 3;

/** utime+stime of a process, seconds. */
function cpuOf(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function emulatorPid(): number {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('engine-emulator')) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  if (pids.length !== 1) throw new Error(`expected one emulator child, found ${pids.length}`);
  return pids[0]!;
}

/** The previous reader (fetch + web streams), kept here as the baseline. */
async function fetchStream(base: string): Promise<{ tokens: number; events: number }> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: Array.from({ length: 64 }, (_, i) => i), max_tokens: OUT, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  let tokens = 0, events = 0;
  for await (const data of sseData(res.body)) {
    if (data === '[DONE]') break;
    const obj = JSON.parse(data) as { choices?: { text?: string }[] };
    events++;
    if (obj.choices?.[0]?.text) tokens++;
  }
  return { tokens, events };
}

async function engineStream(e: VllmEngine): Promise<{ tokens: number; events: number }> {
  let tokens = 0, events = 0;
  for await (const ch of e.completion({ model: MODEL, prompt: Array.from({ length: 64 }, (_, i) => i), maxTokens: OUT, ignoreEos: true })) {
    events++;
    if (ch.text) tokens += ch.tokens ?? 1;
  }
  return { tokens, events };
}

async function measure(label: string, _e: VllmEngine, one: () => Promise<{ tokens: number; events: number }>): Promise<Record<string, string | number>> {
  const pid = emulatorPid();
  await Promise.all(Array.from({ length: 8 }, one)); // warm-up
  let tokens = 0, events = 0;
  const c0 = process.cpuUsage();
  const e0 = cpuOf(pid);
  const t0 = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    for (const x of await Promise.all(Array.from({ length: C }, one))) {
      tokens += x.tokens;
      events += x.events;
    }
  }
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const eng = cpuOf(pid) - e0;
  if (tokens !== ROUNDS * C * OUT) throw new Error(`${label}: ${tokens} tokens, expected ${ROUNDS * C * OUT}`);
  return {
    reader: label,
    tokens,
    'events/token': (events / tokens).toFixed(3),
    'reader CPU us/token': (((c.user + c.system) / tokens)).toFixed(1),
    'emulator CPU us/token': ((eng * 1e6) / tokens).toFixed(1),
    'tokens/s': Math.round(tokens / wall),
  };
}

export async function bench(): Promise<BenchSection> {
  const rows: Record<string, string | number>[] = [];
  for (const interval of [1, 4]) {
    const e = createEngine({ kind: 'emulator', model: MODEL, gpu: 'h100', tp: 2, gpuIds: [0, 1], port: 0, healthDeadlineMs: 30_000, streamInterval: interval, servedModelName: MODEL });
    await e.start();
    try {
      if (interval === 1) rows.push(await measure('fetch + web streams (baseline), interval 1', e, () => fetchStream(e.baseUrl)));
      rows.push(await measure(`VllmEngine (node:http), interval ${interval}`, e, () => engineStream(e)));
    } finally {
      await e.stop(2_000);
    }
  }
  const base = Number(rows[0]!['reader CPU us/token']);
  const now = Number(rows[1]!['reader CPU us/token']);
  return {
    title: 'Engine stream: per-token CPU of reading (instance manager side) and writing (emulator) the SSE stream',
    notes: [
      `${C} concurrent streams x ${OUT} output tokens (64-token prompts, ignore_eos), ${ROUNDS} rounds, ${MODEL} TP2 emulated in real time (steps of a batch of ${C}). ` +
        'Reader CPU is this process (process.cpuUsage), emulator CPU its /proc utime+stime. The baseline reader reads through fetch and web streams (JSON.parse per event).',
      `reader CPU per token: node:http ${now} us vs fetch ${base} us (ratio ${(now / base).toFixed(2)})`,
    ],
    rows,
  };
}
