/**
 * The gateway's scavenges under the datapath bench's direct-path cluster (one instance, zero-delay emulator): `up` with
 * V8's GC trace (`--trace-gc --trace-gc-nvp`, set by a module every node process of the cluster imports through
 * NODE_OPTIONS, which takes no V8 trace flag itself; the gateway's lines are picked by its pid), a closed-loop warm-up, then SEQ sequential streamed 4-token requests and CLOSED_S seconds of
 * closed loop. For each window: the gateway's scavenges (count per 1,000 requests, pause p50/max, bytes promoted and
 * surviving per scavenge), and the closed loop's gateway CPU per request. Not part of `npm run bench` (a diagnosis).
 * Env: SEQ (default 1000), WARM_S (12), CLOSED_S (6), TRACE=1 (the first token trace on), DATAPATH (direct),
 * PLANE (gateway.dataPlane, js), NODE_FLAGS (more NODE_OPTIONS for every process, e.g. --max-semi-space-size=4).
 * Run: `npm run build && nice -n 10 node --import tsx test/bench/gateway-gc.ts` (the cluster runs dist/).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuMs, tree } from './datapath-cpu.ts';
import { BENCH_MODEL as MODEL, startBenchCluster } from '../../scripts/bench-cluster.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WARM_S = Number(process.env.WARM_S ?? 12);
const SEQ = Number(process.env.SEQ ?? 1000);
const CLOSED_S = Number(process.env.CLOSED_S ?? 6);
const CLIENTS = 16;

async function one(base: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }),
  });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
  let ttft = -1, buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    if (ttft < 0 && /"text":"[^"]/.test(buf)) ttft = performance.now() - t0;
  }
  return ttft;
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};

interface Gc { pid: number; kind: string; pause: number; promoted: number; survived: number }
/** --trace-gc-nvp lines. */
function parseGc(text: string): Gc[] {
  const out: Gc[] = [];
  for (const line of text.split('\n')) {
    const m = /^\[(\d+):0x[0-9a-f]+\]\s+\d+ ms: pause=([\d.]+) .*?gc=(\w+)/.exec(line);
    if (!m) continue;
    const num = (k: string) => Number(new RegExp(`\\b${k}=([\\d.]+)`).exec(line)?.[1] ?? NaN);
    out.push({ pid: Number(m[1]), pause: Number(m[2]), kind: m[3]!, promoted: num('promoted'), survived: num('new_space_survived') });
  }
  return out;
}

function summary(name: string, gcs: Gc[], n: number): string {
  const s = gcs.filter((g) => g.kind === 's');
  const p = s.map((g) => g.pause);
  const total = p.reduce((a, b) => a + b, 0);
  const kib = (xs: number[]) => (pct(xs, 0.5) / 1024).toFixed(0);
  return `${name}: ${s.length} scavenges (${((s.length * 1000) / n).toFixed(1)} per 1,000 requests), pause p50 ${pct(p, 0.5).toFixed(2)} max ${Math.max(0, ...p).toFixed(2)} ms, ` +
    `${total.toFixed(1)} ms in all (${((total * 1000) / n).toFixed(1)} us per request); per scavenge median ${kib(s.map((g) => g.promoted))} KiB promoted, ` +
    `${kib(s.map((g) => g.survived))} KiB surviving; full GCs ${gcs.length - s.length}`;
}

let traceFile: string | undefined;
let flags = '';
const c = await startBenchCluster({
  tree: REPO, name: 'gateway-gc', gateway: { dataPath: process.env.DATAPATH ?? 'direct', workers: 1, dataPlane: process.env.PLANE ?? 'js' }, upArgs: ['--gateway-standbys', '0'],
  env: (dir) => {
    traceFile = process.env.TRACE === '1' ? join(dir, 'first-token.jsonl') : undefined;
    const preload = join(dir, 'trace-gc.mjs');
    writeFileSync(preload, "import { setFlagsFromString } from 'node:v8';\nsetFlagsFromString('--trace-gc');\nsetFlagsFromString('--trace-gc-nvp');\n");
    flags = [`--import=${pathToFileURL(preload).href}`, ...(process.env.NODE_FLAGS ? process.env.NODE_FLAGS.split(' ') : [])].join(' ');
    return { NODE_OPTIONS: flags, ...(traceFile ? { DYN_TRACE_FIRST_TOKEN: traceFile } : {}) };
  },
});
const settle = () => new Promise((r) => setTimeout(r, 300));
try {
  const base = c.base;
  const gw = tree(c.up.pid!).gateway;
  for (let i = 0; i < 20; i++) await one(base);
  const warmUntil = performance.now() + WARM_S * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < warmUntil) await one(base);
  }));
  await settle();
  const o1 = c.output().length;
  const ttfts: number[] = [];
  for (let i = 0; i < SEQ; i++) ttfts.push(await one(base));
  await settle();
  const o2 = c.output().length;
  const c0 = gw.reduce((a, p) => a + cpuMs(p), 0);
  const t0 = performance.now();
  let n = 0;
  const closedUntil = t0 + CLOSED_S * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < closedUntil) {
      await one(base);
      n++;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const cpu = gw.reduce((a, p) => a + cpuMs(p), 0) - c0;
  await settle();
  const mine = (text: string) => parseGc(text).filter((g) => gw.includes(g.pid));
  process.stdout.write([
    `${new Date().toISOString()}: NODE_OPTIONS '${flags}'; the first token trace ${traceFile ? 'on' : 'off'}; dataPath ${process.env.DATAPATH ?? 'direct'}, dataPlane ${process.env.PLANE ?? 'js'}`,
    `${SEQ} sequential requests: TTFT p50 ${pct(ttfts, 0.5).toFixed(3)} p99 ${pct(ttfts, 0.99).toFixed(3)} ms`,
    summary('  the gateway', mine(c.output().slice(o1, o2)), SEQ),
    `closed loop, ${CLIENTS} clients, ${CLOSED_S} s: ${n} requests (${(n / wall).toFixed(0)} req/s), the gateway's CPU ${((cpu * 1000) / n).toFixed(1)} us per request`,
    summary('  the gateway', mine(c.output().slice(o2)), n),
  ].join('\n') + '\n');
} finally {
  await c.stop();
}
