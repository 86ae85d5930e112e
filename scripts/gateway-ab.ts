/**
 * The gateway's CPU per short request, code A against code B on one host: both clusters up at once (`dynamollm up`
 * from each tree's built CLI, the datapath bench's one-instance config: zero-delay emulator, direct path), the
 * same closed loop (16 clients, streamed 4-token completions of an 8-token-id prompt) sent to each in turn in ABBA
 * blocks after an interleaved warm-up; each gateway's CPU (utime + stime from /proc) per request, less its idle CPU.
 * Run it twice with the trees swapped: the cluster started first comes out a few percent worse.
 *   npm run build (in both trees); WARM=40 npx tsx scripts/gateway-ab.ts <treeA> <treeB> [blocks] [blockSeconds]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [ra, rb, blocksArg = '8', secsArg = '4'] = process.argv.slice(2);
if (!ra || !rb || !(Number(blocksArg) >= 1) || !(Number(secsArg) > 0)) throw new Error('usage: gateway-ab.ts <treeA> <treeB> [blocks] [blockSeconds]');
const MODEL = 'llama3.1-8b';
const CLIENTS = 16;

const freePort = () => new Promise<number>((ok) => {
  const s = net.createServer();
  s.listen(0, () => {
    const a = s.address();
    s.close(() => ok(typeof a === 'object' && a ? a.port : 0));
  });
});
/** CPU ms (utime + stime) of a process, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}
/** The gateway actor that `up` (pid `parent`) spawned. */
function gatewayPid(parent: number): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (cmd.includes('actor\0gateway\0') && Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === parent) return Number(d);
    } catch {
      // the process ended while we read it
    }
  }
  throw new Error(`no gateway process under up (pid ${parent})`);
}
interface Cluster { up: ChildProcess; base: string; gw: number }
async function start(tree: string): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-ab-'));
  const cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json', servers: [{ id: 'n0', gpus: 1 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
    engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000, args: ['--zero-delay'] },
    gateway: { maxInflight: 4096, dataPath: 'direct', requestPlane: 'direct' },
  }));
  const port = await freePort();
  let out = '';
  const up = spawn(process.execPath, [join(tree, 'bin', 'dynamollm.js'), 'up', '--config', cfg, '--port', String(port), '--run-dir', dir], { cwd: tree, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' } });
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  for (const t0 = Date.now(); !out.includes('cluster ready'); await new Promise((r) => setTimeout(r, 200))) {
    if (Date.now() - t0 > 120_000 || up.exitCode !== null) throw new Error(`${tree}: the cluster did not start: ${out.slice(-1500)}`);
  }
  return { up, base: `http://127.0.0.1:${port}`, gw: gatewayPid(up.pid!) };
}
async function one(base: string): Promise<void> {
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }) });
  const t = await r.text();
  if (!t.includes('[DONE]')) throw new Error(`a request did not end with [DONE]: ${t.slice(-300)}`);
}
/** Requests completed by the closed loop in `s` seconds. */
async function loop(base: string, s: number): Promise<number> {
  let done = 0;
  const until = performance.now() + s * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < until) {
      await one(base);
      done++;
    }
  }));
  return done;
}

const A = await start(resolve(ra));
const B = await start(resolve(rb));
try {
  for (let w = 0; w < Number(process.env.WARM ?? 6) / 2; w++) for (const c of w % 2 ? [B, A] : [A, B]) await loop(c.base, 2);
  // each gateway's idle CPU, both over the same 4 s
  const ia = cpuMs(A.gw), ib = cpuMs(B.gw), it = performance.now();
  await new Promise((r) => setTimeout(r, 4000));
  const idleS = (performance.now() - it) / 1000;
  const idle = { A: (cpuMs(A.gw) - ia) / idleS, B: (cpuMs(B.gw) - ib) / idleS };
  const acc = { A: { cpu: 0, done: 0, wall: 0, blocks: [] as number[] }, B: { cpu: 0, done: 0, wall: 0, blocks: [] as number[] } };
  const order: ('A' | 'B')[] = [];
  for (let i = 0; i < Number(blocksArg); i++) order.push(...(i % 2 ? ['B', 'A'] as const : ['A', 'B'] as const));
  for (const k of order) {
    const c = k === 'A' ? A : B;
    const g0 = cpuMs(c.gw), t0 = performance.now();
    const done = await loop(c.base, Number(secsArg));
    const wall = (performance.now() - t0) / 1000;
    const g = cpuMs(c.gw) - g0 - idle[k] * wall;
    acc[k].cpu += g;
    acc[k].done += done;
    acc[k].wall += wall;
    acc[k].blocks.push(Math.round((g * 1000) / done));
  }
  const res = (k: 'A' | 'B') => ({ usPerRequest: Math.round((acc[k].cpu * 1000) / acc[k].done), reqPerS: +(acc[k].done / acc[k].wall).toFixed(1), blocks: acc[k].blocks });
  const a = res('A'), b = res('B');
  console.log(JSON.stringify({ idleMsPerS: { A: +idle.A.toFixed(1), B: +idle.B.toFixed(1) }, A: a, B: b, ratioAoverB: +(a.usPerRequest / b.usPerRequest).toFixed(3) }));
} finally {
  A.up.kill('SIGINT');
  B.up.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 4000));
}
