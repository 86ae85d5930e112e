/**
 * The gateway's CPU per short request, code A against code B on one host: both clusters up at once (`dynamollm up`
 * from each tree's built CLI, the datapath bench's one-instance config: zero-delay emulator, direct path), the
 * same closed loop (16 clients, streamed 4-token completions of an 8-token-id prompt) sent to each in turn in ABBA
 * blocks after an interleaved warm-up; each gateway's CPU (utime + stime from /proc) per request, less its idle CPU.
 * Run it twice with the trees swapped: the cluster started first comes out a few percent worse.
 *   npm run build (in both trees); WARM=40 npx tsx scripts/gateway-ab.ts <treeA> <treeB> [blocks] [blockSeconds]
 * A tree given as `KEY=VALUE,...@tree` runs its cluster with that environment (one tree with and without a setting).
 * Each role (gateway, instance, cluster, pool, node, nats-server, up) is also reported alone (`byRole` and `roleRatioAoverB` less idle, `rawByRole` and `rawRoleRatioAoverB` with it).
 * RT=1: the datapath bench's real-time run instead (the emulator stepping in wall time, 32 closed-loop clients sending
 * the replay's requests: 2,000 token-id prompts, 200 tokens, usage on every event): CPU per streamed token of the
 * gateway and of the whole control path (every process under `up` but the engine, NATS included), less idle.
 * Each gateway's idle CPU is read over one 4-s window after the warm-up (garbage collection of the warm-up's garbage
 * can fall in it), so the ratio less idle (`ratioAoverB`) moves more between runs than the raw one (`rawRatioAoverB`:
 * the gateway's CPU per request or token with its idle CPU in it); both are printed.
 * REQS=N: each block is N requests (16 clients) rather than blockSeconds, and the gateway's CPU is also read per pair of
 * blocks (A then B, or B then A, back to back): `pairs` prints, per pair, A's CPU per request over B's, raw (no idle
 * subtracted), for the gateway's main thread (`/proc/<pid>/task/<pid>/schedstat`, ns: the JavaScript, its system calls,
 * the GC's main-thread part) and for the whole gateway process (utime + stime: V8's compiler and GC helper threads too),
 * with their median, min and max. The other jobs on a shared host move each block's figure; a pair's ratio moves less.
 * `threads` (ABBA runs): the gateway processes' CPU per request (RT: per token) by thread group, raw (schedstat of
 * /proc/<pid>/task/*): `main`, `dpRelay` (the native data plane's thread), `nodeThreads` (Node's unnamed threads or V8's
 * named ones: V8's platform workers, the compiler's jobs and the collector's helpers, with libuv's pool), `other`; and per group A over B, over all blocks and per pair of blocks.
 * DYNAMOLLM_GATEWAY_NODE_FLAGS=<flags>@tree runs that cluster's gateways with those node flags (actors/gateway/node-flags.ts).
 * With `--trace-gc` among them (ABBA runs), `scavenges` prints that cluster's gateway scavenges per 1,000 requests (RT:
 * per 1,000 tokens) over the blocks and per block, counted from the trace lines `up` relays (V8 prints one per GC).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { descendants } from '../test/bench/datapath-cpu.ts';
import { threadCounters } from '../test/bench/thread-cpu.ts';
import { BENCH_MODEL as MODEL, startBenchCluster } from './bench-cluster.ts';

const [ra, rb, blocksArg = '8', secsArg = '4'] = process.argv.slice(2);
if (!ra || !rb || !(Number(blocksArg) >= 1) || !(Number(secsArg) > 0)) throw new Error('usage: gateway-ab.ts [KEY=VALUE,...@]<treeA> [KEY=VALUE,...@]<treeB> [blocks] [blockSeconds]');
/** a tree and the environment its cluster gets (`KEY=VALUE,KEY=VALUE@tree`: the same tree with and without a setting). */
function target(arg: string): { tree: string; env: Record<string, string> } {
  const at = arg.lastIndexOf('@');
  const env = at < 0 ? {} : Object.fromEntries(arg.slice(0, at).split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { tree: resolve(at < 0 ? arg : arg.slice(at + 1)), env };
}
const RT = process.env.RT === '1';
const CLIENTS = RT ? 32 : 16;
/** the replay's request shape (test/bench/datapath.bench.ts, realtimeCpu). */
const RT_PROMPT = Array.from({ length: 2000 }, (_, i) => 100 + i);
const RT_LEN = 200;

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
/** CPU ns of a process's main thread (the event loop), from its schedstat. */
function mainNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}
const GROUPS = ['main', 'dpRelay', 'nodeThreads', 'other'] as const;
type Groups = Record<(typeof GROUPS)[number], number>;
/** CPU ms (schedstat) of the processes' threads by group: main, dp-relay, Node's and V8's threads (V8's platform workers, libuv's pool), the rest. */
function threadGroups(pids: number[]): Groups {
  const g: Groups = { main: 0, dpRelay: 0, nodeThreads: 0, other: 0 };
  for (const p of pids) {
    for (const [tid, t] of threadCounters(p)) g[tid === p ? 'main' : t.comm === 'dp-relay' ? 'dpRelay' : t.comm === 'node' || t.comm.startsWith('V8 ') ? 'nodeThreads' : 'other'] += t.runMs;
  }
  return g;
}
const minus = (a: Groups, b: Groups): Groups => ({ main: a.main - b.main, dpRelay: a.dpRelay - b.dpRelay, nodeThreads: a.nodeThreads - b.nodeThreads, other: a.other - b.other });
/** `root`'s descendants but the engines (the emulator processes): the control path, NATS included. */
function controlPids(root: number): number[] {
  return [root, ...descendants(root).filter((d) => !d.cmd.includes('engine-emulator')).map((d) => d.pid)];
}
/** The gateway actors that `up` (pid `parent`) spawned: the serving process and its standby (gateway.standby). */
function gatewayPids(parent: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (cmd.includes('actor\0gateway\0') && Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === parent) out.push(Number(d));
    } catch {
      // the process ended while we read it
    }
  }
  if (out.length === 0) throw new Error(`no gateway process under up (pid ${parent})`);
  return out;
}
/** A control-path process's role (its actor kind, `nats-server` or `up`), for the per-role figures. */
function roleOf(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const a = argv.indexOf('actor');
    return a >= 0 ? argv[a + 1] ?? '?' : argv.join(' ').includes('nats-server') ? 'nats-server' : 'up';
  } catch {
    return '?';
  }
}
interface Cluster { up: ChildProcess; base: string; gw: number[]; control: number[]; output: () => string }
async function start({ tree, env }: { tree: string; env: Record<string, string> }): Promise<Cluster> {
  const bc = await startBenchCluster({ tree, name: 'gateway-ab', engineArgs: RT ? [] : ['--zero-delay'], env: () => env });
  return { up: bc.up, base: bc.base, gw: gatewayPids(bc.up.pid!), control: controlPids(bc.up.pid!), output: () => bc.output() };
}
/** The gateway processes' scavenges in `--trace-gc` lines of the cluster's output from character `from` on. */
function scavenges(c: Cluster, from: number): number {
  let n = 0;
  for (const m of c.output().slice(from).matchAll(/^\[(\d+):0x[0-9a-f]+\]\s+[\d.]+ ms: Scavenge/gm)) if (c.gw.includes(Number(m[1]))) n++;
  return n;
}
/** One request; the tokens it streamed (0 when refused: 429/503, the emulated cluster at its capacity). */
async function one(base: string): Promise<number> {
  if (RT) {
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: RT_PROMPT, max_tokens: RT_LEN, min_tokens: RT_LEN, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }),
    });
    const t = await r.text();
    if (r.status === 429 || r.status === 503) return (await new Promise((res) => setTimeout(res, 50)), 0);
    if (!t.includes('[DONE]')) throw new Error(`a request did not end with [DONE]: ${t.slice(-300)}`);
    return RT_LEN;
  }
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }) });
  const t = await r.text();
  if (!t.includes('[DONE]')) throw new Error(`a request did not end with [DONE]: ${t.slice(-300)}`);
  return 4;
}
const REQS = Number(process.env.REQS ?? 0);
/** Requests (RT: tokens) completed by the closed loop in `s` seconds (REQS: once REQS requests were sent). */
async function loop(base: string, s: number, reqs = 0): Promise<number> {
  let done = 0;
  let sent = 0;
  const until = performance.now() + s * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (reqs > 0 ? sent++ < reqs : performance.now() < until) {
      const n = await one(base);
      done += RT ? n : n > 0 ? 1 : 0;
    }
  }));
  return done;
}
const sumCpu = (pids: number[]) => pids.reduce((a, p) => a + cpuMs(p), 0);
/** CPU ms of each role's processes (gateway, instance, cluster, pool, node, nats-server, up). */
const byRole = (pids: number[]) => {
  const r: Record<string, number> = {};
  for (const p of pids) r[roleOf(p)] = (r[roleOf(p)] ?? 0) + cpuMs(p);
  return r;
};

const A = await start(target(ra));
const B = await start(target(rb));
for (const [k, c] of [['A', A], ['B', B]] as const) process.stderr.write(`${k}: gateway ${c.gw.map((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').slice(1, 4).join(' ')).join('; ')}\n`);
/**
 * BOTH=1: both closed loops run at once (16 clients each) in every window of blockSeconds, after WARM seconds of the
 * same, and each window's A over B is read from the same seconds: what the other jobs of a shared host do falls on
 * both alike, and neither gateway idles between its blocks (an idle gateway warms up again: ABBA blocks of a few
 * seconds put the block that follows the other cluster's two ~1.5x above the one before it).
 */
async function both(): Promise<void> {
  const mainAll = (c: Cluster) => c.gw.reduce((a, p) => a + mainNs(p), 0);
  await Promise.all([loop(A.base, Number(process.env.WARM ?? 30)), loop(B.base, Number(process.env.WARM ?? 30))]);
  const w = { A: [] as [number, number, number][], B: [] as [number, number, number][] };
  for (let i = 0; i < Number(blocksArg); i++) {
    const m0 = { A: mainAll(A), B: mainAll(B) }, p0 = { A: sumCpu(A.gw), B: sumCpu(B.gw) };
    const [da, db] = await Promise.all([loop(A.base, Number(secsArg)), loop(B.base, Number(secsArg))]);
    w.A.push([mainAll(A) - m0.A, sumCpu(A.gw) - p0.A, da]);
    w.B.push([mainAll(B) - m0.B, sumCpu(B.gw) - p0.B, db]);
  }
  const stats = (r: number[]) => {
    const s = [...r].sort((x, y) => x - y);
    return { median: +s[Math.floor(s.length / 2)]!.toFixed(3), min: +s[0]!.toFixed(3), max: +s[s.length - 1]!.toFixed(3), each: r.map((x) => +x.toFixed(3)) };
  };
  const ratio = (i: 0 | 1) => w.A.map((a, j) => a[i] / a[2] / (w.B[j]![i] / w.B[j]![2]));
  const perReq = (k: 'A' | 'B', i: 0 | 1, scale: number) => +((w[k].reduce((s, x) => s + x[i], 0) * scale) / w[k].reduce((s, x) => s + x[2], 0)).toFixed(1);
  const total = (i: 0 | 1) => +(perReq('A', i, 1) / perReq('B', i, 1)).toFixed(3);
  console.log(JSON.stringify({
    // us of CPU per request (raw: idle CPU included) and requests per window
    mainThreadUsRequest: { A: perReq('A', 0, 1e-3), B: perReq('B', 0, 1e-3) }, processUsRequest: { A: perReq('A', 1, 1e3), B: perReq('B', 1, 1e3) },
    requests: { A: w.A.map((x) => x[2]), B: w.B.map((x) => x[2]) },
    mainThreadAoverB: { all: total(0), ...stats(ratio(0)) }, processAoverB: { all: total(1), ...stats(ratio(1)) },
  }));
}
/** ABBA blocks of each cluster alone (the default). */
async function abba(): Promise<void> {
  for (let w = 0; w < Number(process.env.WARM ?? 6) / 2; w++) for (const c of w % 2 ? [B, A] : [A, B]) await loop(c.base, 2);
  // each gateway's idle CPU, both over the same 4 s
  const ia = sumCpu(A.gw), ib = sumCpu(B.gw), ca = sumCpu(A.control), cb = sumCpu(B.control), ra = byRole(A.control), rb0 = byRole(B.control), it = performance.now();
  await new Promise((r) => setTimeout(r, 4000));
  const idleS = (performance.now() - it) / 1000;
  const idle = { A: (sumCpu(A.gw) - ia) / idleS, B: (sumCpu(B.gw) - ib) / idleS };
  const idleControl = { A: (sumCpu(A.control) - ca) / idleS, B: (sumCpu(B.control) - cb) / idleS };
  const idleRole = { A: {} as Record<string, number>, B: {} as Record<string, number> };
  for (const [k, c, r0] of [['A', A, ra], ['B', B, rb0]] as const) for (const [role, ms] of Object.entries(byRole(c.control))) idleRole[k][role] = (ms - (r0[role] ?? 0)) / idleS;
  const roleAcc = { A: {} as Record<string, number>, B: {} as Record<string, number> };
  const roleRaw = { A: {} as Record<string, number>, B: {} as Record<string, number> };
  const acc = { A: { cpu: 0, raw: 0, control: 0, done: 0, wall: 0, blocks: [] as number[] }, B: { cpu: 0, raw: 0, control: 0, done: 0, wall: 0, blocks: [] as number[] } };
  const order: ('A' | 'B')[] = [];
  for (let i = 0; i < Number(blocksArg); i++) order.push(...(i % 2 ? ['B', 'A'] as const : ['A', 'B'] as const));
  /** per block: [gateway main-thread ns, gateway process ms, requests] */
  const perBlock = { A: [] as [number, number, number][], B: [] as [number, number, number][] };
  /** per block: the gateway processes' thread groups' CPU ms */
  const groupBlocks = { A: [] as Groups[], B: [] as Groups[] };
  /** per block: the gateway processes' scavenges (--trace-gc among their node flags) */
  const gcBlocks = { A: [] as number[], B: [] as number[] };
  for (const k of order) {
    const c = k === 'A' ? A : B;
    const th0 = threadGroups(c.gw);
    const m0 = c.gw.reduce((a, p) => a + mainNs(p), 0);
    const g0 = sumCpu(c.gw), c0 = sumCpu(c.control), r0 = byRole(c.control), t0 = performance.now(), o0 = c.output().length;
    const done = await loop(c.base, Number(secsArg), REQS);
    gcBlocks[k].push(scavenges(c, o0));
    perBlock[k].push([c.gw.reduce((a, p) => a + mainNs(p), 0) - m0, sumCpu(c.gw) - g0, done]);
    groupBlocks[k].push(minus(threadGroups(c.gw), th0));
    const wall = (performance.now() - t0) / 1000;
    const raw = sumCpu(c.gw) - g0;
    const g = raw - idle[k] * wall;
    acc[k].raw += raw;
    acc[k].cpu += g;
    acc[k].control += sumCpu(c.control) - c0 - idleControl[k] * wall;
    for (const [role, ms] of Object.entries(byRole(c.control))) {
      roleAcc[k][role] = (roleAcc[k][role] ?? 0) + ms - (r0[role] ?? 0) - (idleRole[k][role] ?? 0) * wall;
      roleRaw[k][role] = (roleRaw[k][role] ?? 0) + ms - (r0[role] ?? 0);
    }
    acc[k].done += done;
    acc[k].wall += wall;
    acc[k].blocks.push(Math.round((g * 1000) / done));
  }
  // per request, or (RT) per streamed token: the gateway's CPU and the whole control path's, each less its idle CPU
  const per = RT ? 'Token' : 'Request';
  const res = (k: 'A' | 'B') => ({
    [`us${per}`]: +((acc[k].cpu * 1000) / acc[k].done).toFixed(1), [`rawUs${per}`]: +((acc[k].raw * 1000) / acc[k].done).toFixed(1), [`controlUs${per}`]: +((acc[k].control * 1000) / acc[k].done).toFixed(1),
    [RT ? 'tokensPerS' : 'reqPerS']: +(acc[k].done / acc[k].wall).toFixed(1), blocks: acc[k].blocks,
    // each role's CPU per request (RT: per token) less its idle CPU, us
    byRole: Object.fromEntries(Object.entries(roleAcc[k]).map(([role, ms]) => [role, +((ms * 1000) / acc[k].done).toFixed(2)])),
    rawByRole: Object.fromEntries(Object.entries(roleRaw[k]).map(([role, ms]) => [role, +((ms * 1000) / acc[k].done).toFixed(2)])),
  });
  const a = res('A'), b = res('B');
  // per pair of blocks (i-th A block against the i-th B block: adjacent in the ABBA order), A's CPU per request over B's
  const stats = (r: number[]) => {
    const s = [...r].sort((x, y) => x - y);
    return { median: +s[Math.floor(s.length / 2)]!.toFixed(3), min: +s[0]!.toFixed(3), max: +s[s.length - 1]!.toFixed(3), each: r.map((x) => +x.toFixed(3)) };
  };
  const pairRatio = (i: 0 | 1) => perBlock.A.map((ab, j) => ab[i] / ab[2] / (perBlock.B[j]![i] / perBlock.B[j]![2]));
  const perReq = (k: 'A' | 'B', i: 0 | 1, scale: number) => +((perBlock[k].reduce((s, x) => s + x[i], 0) * scale) / perBlock[k].reduce((s, x) => s + x[2], 0)).toFixed(1);
  const groupPer = (k: 'A' | 'B', g: (typeof GROUPS)[number]) => (groupBlocks[k].reduce((s, x) => s + x[g], 0) * 1000) / perBlock[k].reduce((s, x) => s + x[2], 0);
  const threads = {
    usPer: Object.fromEntries((['A', 'B'] as const).map((k) => [k, Object.fromEntries(GROUPS.map((g) => [g, +groupPer(k, g).toFixed(2)]))])),
    AoverB: Object.fromEntries(GROUPS.map((g) => [g, +(groupPer('A', g) / groupPer('B', g)).toFixed(3)])),
    pairAoverB: Object.fromEntries(GROUPS.map((g) => [g, stats(groupBlocks.A.map((a, j) => a[g] / perBlock.A[j]![2] / (groupBlocks.B[j]![g] / perBlock.B[j]![2])))])),
  };
  const per1000 = (k: 'A' | 'B') => +((gcBlocks[k].reduce((s, x) => s + x, 0) * 1000) / perBlock[k].reduce((s, x) => s + x[2], 0)).toFixed(2);
  console.log(JSON.stringify({
    threads,
    scavenges: { per1000: { A: per1000('A'), B: per1000('B') }, blocks: gcBlocks },
    pairs: {
      mainThreadUsRequest: { A: perReq('A', 0, 1e-3), B: perReq('B', 0, 1e-3) }, processUsRequest: { A: perReq('A', 1, 1e3), B: perReq('B', 1, 1e3) },
      mainThreadAoverB: stats(pairRatio(0)), processAoverB: stats(pairRatio(1)),
    },
    idleMsPerS: { A: +idle.A.toFixed(1), B: +idle.B.toFixed(1) }, idleControlMsPerS: { A: +idleControl.A.toFixed(1), B: +idleControl.B.toFixed(1) }, A: a, B: b,
    ratioAoverB: +(acc.A.cpu / acc.A.done / (acc.B.cpu / acc.B.done)).toFixed(3),
    rawRoleRatioAoverB: Object.fromEntries(Object.keys(roleRaw.A).map((role) => [role, +((roleRaw.A[role]! / acc.A.done) / ((roleRaw.B[role] ?? NaN) / acc.B.done)).toFixed(3)])),
    roleRatioAoverB: Object.fromEntries(Object.keys(roleAcc.A).map((role) => [role, +((roleAcc.A[role]! / acc.A.done) / ((roleAcc.B[role] ?? NaN) / acc.B.done)).toFixed(3)])), rawRatioAoverB: +(acc.A.raw / acc.A.done / (acc.B.raw / acc.B.done)).toFixed(3), controlRatioAoverB: +(acc.A.control / acc.A.done / (acc.B.control / acc.B.done)).toFixed(3),
  }));
}
try {
  if (process.env.BOTH === '1' && RT) throw new Error('BOTH=1 runs the short requests only');
  await (process.env.BOTH === '1' ? both() : abba());
} finally {
  A.up.kill('SIGINT');
  B.up.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 4000));
}
