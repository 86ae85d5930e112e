/**
 * The engine's CPU per request behind the gateway against the same engine alone at the rate the gateway gives it, in
 * one run: the zero-delay emulator's CPU (utime + stime, /proc) per streamed 4-token completion of an 8-token-id
 * prompt. The datapath bench's one-instance cluster (scripts/bench-cluster.ts, direct data path) under CLIENTS
 * closed-loop clients gives its req/s R and its engine's us per request (less that engine's idle rate); then an
 * emulator alone (the instance manager's arguments and VLLM_API_KEY) gets the gateway's engine call (src/engine/client.ts
 * completionPayload, an x-request-id, the Bearer key) paced at R (open loop, R/1000 requests each ms) and under
 * CLIENTS closed-loop clients (saturated, as the bench's engine alone), and another (no key) the bench's own request
 * (test/bench/closed-loop-client.ts completionBody, Content-Type only) under CLIENTS clients. ROUNDS rounds of SECS s, the alone loads'
 * order alternating; the lean HTTP/1.1 client (src/engine/http1.ts) over kept-alive connections, as the gateway's.
 * The request's shape alone: scripts/emulator-shapes.ts.
 *   npm run build; flock /work/wt/bench.lock nice -n 10 npx tsx scripts/engine-behind-gateway.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { completionPayload } from '../src/engine/client.ts';
import { completionBody, requester } from '../test/bench/closed-loop-client.ts';
import { cpuMs, tree } from '../test/bench/datapath-cpu.ts';
import { freePort } from '../test/helpers/net.ts';
import { BENCH_MODEL as MODEL, startBenchCluster } from './bench-cluster.ts';

const CLIENTS = Number(process.env.CLIENTS ?? 16);
const SECS = Number(process.env.SECS ?? 1.5);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const KEY = randomBytes(24).toString('base64url');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
type Extra = (() => Record<string, string>) | undefined;
interface Window { rps: number; us: number }

/** an emulator as the instance manager starts it for the bench (zero-delay), with VLLM_API_KEY when `key`. */
async function emulator(key: boolean): Promise<{ p: ChildProcess; base: string }> {
  const port = await freePort();
  const p = spawn(process.execPath, ['bin/dynamollm.js', 'engine-emulator', '--model', MODEL, '--gpu', 'h100', '--tp', '1', '--calibration-engine', 'vllm-2023', '--port', String(port), '--host', '127.0.0.1', '--time-scale', '1', '--seed', '1', '--startup-delay-ms', '0', '--served-model-name', MODEL, '--max-num-batched-tokens', '8192', '--max-num-seqs', '256', '--zero-delay'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', ...(key ? { VLLM_API_KEY: KEY } : {}) } });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (const until = Date.now() + 30_000; !out.includes('"listening"'); await sleep(100)) if (Date.now() > until) throw new Error('the emulator did not start');
  return { p, base: `http://127.0.0.1:${port}` };
}

/** `n` closed-loop clients for `secs`: req/s and `pid`'s us per request. */
async function closed(base: string, body: string, extra: Extra, pid: number, n: number, secs: number): Promise<Window> {
  const send = requester('http1', base, body, extra);
  const e0 = cpuMs(pid), t0 = performance.now();
  let k = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (performance.now() - t0 < secs * 1000) if (await send()) k++; }));
  const wall = (performance.now() - t0) / 1000;
  send.close();
  return { rps: k / wall, us: ((cpuMs(pid) - e0) * 1000) / k };
}

/** an open loop at `rate` req/s for `secs` (rate/1000 each ms, the fractions carried): req/s and `pid`'s us per request. */
async function paced(base: string, body: string, extra: Extra, pid: number, rate: number, secs: number): Promise<Window> {
  const send = requester('http1', base, body, extra);
  const e0 = cpuMs(pid), t0 = performance.now();
  let k = 0, issued = 0;
  const pending: Promise<void>[] = [];
  while (performance.now() - t0 < secs * 1000) {
    for (const due = Math.floor(((performance.now() - t0) / 1000) * rate); issued < due; issued++) pending.push(send().then((ok) => { if (ok) k++; }));
    await sleep(1);
  }
  await Promise.all(pending);
  const wall = (performance.now() - t0) / 1000;
  send.close();
  return { rps: k / wall, us: ((cpuMs(pid) - e0) * 1000) / k };
}

const benchBody = completionBody(MODEL, 4);
const gatewayBody = completionPayload({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], maxTokens: 4, ignoreEos: true, timeoutMs: 60_000, continuousUsage: false });
const rid = () => ({ 'x-request-id': randomBytes(12).toString('base64url') });
const auth = () => ({ authorization: `Bearer ${KEY}` });
const gatewayHeaders = () => ({ ...rid(), ...auth() });
const plain = await emulator(false), keyed = await emulator(true);
const line = (k: string, w: Window) => console.log(`${k}: ${w.rps.toFixed(0)} req/s, engine ${w.us.toFixed(1)} us/request`);

async function load(): Promise<void> {
  const c = await startBenchCluster({ tree: process.cwd(), name: 'engine-request-cost' });
  try {
    const engine = tree(c.up.pid!).engines[0]!;
    await closed(c.base, benchBody, undefined, engine, CLIENTS, 5);
    const i0 = cpuMs(engine);
    await sleep(2000);
    const idleMsPerS = (cpuMs(engine) - i0) / 2;
    const got = new Map<string, number[]>();
    const note = (k: string, w: Window) => { line(k, w); got.set(k, [...(got.get(k) ?? []), w.us]); };
    for (let i = 0; i < ROUNDS; i++) {
      await closed(c.base, benchBody, undefined, engine, CLIENTS, 0.5);
      const g = await closed(c.base, benchBody, undefined, engine, CLIENTS, SECS);
      note(`behind the gateway, ${CLIENTS} clients`, { rps: g.rps, us: g.us - (idleMsPerS * 1000) / g.rps });
      const R = g.rps, pid = keyed.p.pid!;
      const steps: [string, () => Promise<Window>][] = [
        ['alone, the gateway\'s call paced at its rate', () => paced(keyed.base, gatewayBody, gatewayHeaders, pid, R, SECS)],
        [`alone, the gateway's call, ${CLIENTS} clients`, () => closed(keyed.base, gatewayBody, gatewayHeaders, pid, CLIENTS, SECS)],
        [`alone, the bench's request, ${CLIENTS} clients`, () => closed(plain.base, benchBody, undefined, plain.p.pid!, CLIENTS, SECS)],
      ];
      for (const [k, f] of i % 2 ? steps.reverse() : steps) note(k, await f());
    }
    for (const [k, a] of got) console.log(`median ${k}: ${med(a).toFixed(1)} us/request (${a.map((x) => x.toFixed(1)).join(', ')})`);
  } finally {
    await c.stop();
  }
}

try {
  console.log(`the gateway's engine call: ${gatewayBody} + x-request-id, authorization; the bench's: ${benchBody}`);
  await load();
} finally {
  plain.p.kill();
  keyed.p.kill();
}
