/**
 * What V8's threads do in the gateway under the real-time run's load (scripts/replay-load.ts: 32 closed-loop clients,
 * 2,000-token-id prompts, 200 tokens, usage on every event; the native plane). After WARM_S seconds, WINDOWS windows of
 * WINDOW_S seconds; per window: each gateway thread's CPU per token (schedstat: the main thread, `dp-relay`, Node's
 * threads: V8's platform workers with libuv's pool), and the gateway's lines of V8's traces per 1,000 tokens by kind
 * (the flags of env DYNAMOLLM_GATEWAY_NODE_FLAGS: `--trace-gc` scavenges and mark-compacts, `--trace-opt` TurboFan
 * compiles with their worker-side time, `--trace-deopt` deopts and dependent-code invalidations). PERF=1: `perf record`
 * of Node's threads over the last window, every sample put in one class by its call stack (TurboFan's pipeline,
 * scavenge, marking, sweeping, other GC, other), and the top symbols.
 *   npm run build; DYNAMOLLM_GATEWAY_NODE_FLAGS='--trace-gc --trace-opt --trace-deopt' PERF=1 WINDOWS=8 WINDOW_S=60 \
 *     nice -n 10 npx tsx scripts/v8-threads.ts [tree]
 * The cluster's output is kept in its run directory (window-<k>.txt, all-output.txt); PERF=1 also keeps the perf data
 * and node's perf maps (/tmp/perf-<pid>.map: a TurboFan code object per compile, named by function and source line).
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBenchCluster } from './bench-cluster.ts';
import { tree } from '../test/bench/datapath-cpu.ts';
import { threadCounters } from '../test/bench/thread-cpu.ts';
import { ReplayLoad } from './replay-load.ts';
import { RT_LEN } from '../test/bench/datapath.bench.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TREE = resolve(process.argv[2] ?? REPO);
const WARM_S = Number(process.env.WARM_S ?? 40);
const WINDOW_S = Number(process.env.WINDOW_S ?? 20);
const WINDOWS = Number(process.env.WINDOWS ?? 1);
const PERF = process.env.PERF === '1';
const TOP = Number(process.env.TOP ?? 30);
const FLAGS = process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A trace line's kind, for the gateway process `gw` (GC lines name their process; opt/deopt lines do not). */
function kindOf(line: string, gw: number): string | undefined {
  const gc = /^\[(\d+):0x[0-9a-f]+\]\s+[\d.]+ ms: ([A-Za-z-]+)/.exec(line);
  if (gc) return Number(gc[1]) === gw ? `gc ${gc[2]}` : undefined;
  if (line.startsWith('[bailout')) return `deopt ${/kind: ([\w-]+)/.exec(line)?.[1] ?? '?'}`;
  if (line.startsWith('[marking dependent code')) return `code invalidated: ${/reason: ([\w -]+)/.exec(line)?.[1] ?? '?'}`;
  if (line.startsWith('[compiling method')) return `compile ${/target (\w+)/.exec(line)?.[1] ?? '?'}`;
  return undefined;
}
/** A perf sample's class by the symbols on its stack: the compiler's first (a compile job allocates too). */
function classOf(stack: string): string {
  if (/compiler::|OptimizedCompilationJob|maglev::/.test(stack)) return 'TurboFan compile';
  if (/Scaveng/.test(stack)) return 'gc scavenge';
  if (/Marking/.test(stack)) return 'gc marking';
  if (/Sweep/.test(stack)) return 'gc sweeping';
  if (/Evacuat|Compact|PointersUpdating|RememberedSet|ArrayBufferSweeper|v8::internal::Heap::/.test(stack)) return 'gc other';
  return 'other';
}
function perfClasses(data: string): string {
  const n = new Map<string, number>();
  let total = 0;
  for (const sample of execFileSync('perf', ['script', '-i', data, '-F', 'tid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 28 }).split('\n\n')) {
    if (!sample.trim()) continue;
    const c = classOf(sample);
    n.set(c, (n.get(c) ?? 0) + 1);
    total++;
  }
  return [...n].sort((a, b) => b[1] - a[1]).map(([c, k]) => `  ${c.padEnd(18)} ${((100 * k) / total).toFixed(1)}% (${k} samples)`).join('\n');
}

const c = await startBenchCluster({
  tree: TREE, name: 'v8-threads', engineArgs: [], gateway: { dataPlane: 'native' }, upArgs: ['--gateway-standbys', '0'],
  env: (): Record<string, string> => (PERF ? { NODE_OPTIONS: '--perf-basic-prof' } : {}),
});
const replay = new ReplayLoad(c.base);
try {
  const gw = tree(c.up.pid!).gateway[0]!;
  replay.start(RT_LEN * 28); // the clients' starts spread over a request's length (the emulator's ~28 ms a token)
  await sleep(WARM_S * 1000);
  const data = join(c.dir, 'perf.data');
  for (let w = 0; w < WINDOWS; w++) {
    const t0 = threadCounters(gw);
    const o0 = c.output().length;
    const d0 = replay.done;
    const workers = [...t0].filter(([tid, t]) => tid !== gw && t.comm !== 'dp-relay').map(([tid]) => tid);
    const perf = PERF && w === WINDOWS - 1
      ? spawn('perf', ['record', '-F', '1999', '-g', '-t', workers.join(','), '-o', data, '--', 'sleep', String(WINDOW_S)], { stdio: 'ignore' })
      : undefined;
    const recorded = perf && new Promise<number | null>((r) => perf.once('exit', r));
    await sleep(WINDOW_S * 1000);
    const t1 = threadCounters(gw);
    const tokens = (replay.done - d0) * RT_LEN;
    const out = c.output().slice(o0);
    writeFileSync(join(c.dir, `window-${w}.txt`), out);
    const rows = [...t1].map(([tid, t]) => ({ tid, comm: t.comm, us: ((t.runMs - (t0.get(tid)?.runMs ?? 0)) * 1000) / tokens })).filter((r) => r.us > 0.005);
    const sum = (f: (r: (typeof rows)[number]) => boolean) => rows.filter(f).reduce((a, r) => a + r.us, 0).toFixed(2);
    process.stdout.write(`${new Date().toISOString()} window ${w} (${WARM_S + w * WINDOW_S}-${WARM_S + (w + 1) * WINDOW_S} s) gateway ${gw}, flags '${FLAGS}': ` +
      `${tokens} tokens (${(tokens / WINDOW_S).toFixed(1)}/s); us/token main ${sum((r) => r.tid === gw)}, dp-relay ${sum((r) => r.comm === 'dp-relay')}, ` +
      `Node's threads ${sum((r) => r.tid !== gw && r.comm !== 'dp-relay')}\n`);
    for (const r of rows) process.stdout.write(`  tid ${r.tid} ${r.comm.padEnd(16)} ${r.us.toFixed(2)} us/token${r.tid === gw ? ' (main)' : ''}\n`);
    const kinds = new Map<string, number>();
    let compileMs = 0;
    for (const line of out.split('\n')) {
      const k = kindOf(line, gw);
      if (k) kinds.set(k, (kinds.get(k) ?? 0) + 1);
      // V8's three phases of a concurrent compile: prepare (main thread), execute (a worker), finalize (main thread)
      const took = /^\[completed compiling.*took [\d.]+, ([\d.]+), [\d.]+ ms/.exec(line);
      if (took) compileMs += Number(took[1]);
    }
    for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${k.padEnd(40)} ${n} (${((1000 * n) / tokens).toFixed(3)} per 1,000 tokens)\n`);
    if (compileMs > 0) process.stdout.write(`  TurboFan's worker phase, wall: ${compileMs.toFixed(1)} ms (${((1000 * compileMs) / tokens).toFixed(2)} us per token)\n`);
    if (recorded) {
      if ((await recorded) !== 0) throw new Error('perf record failed');
      const syms = execFileSync('perf', ['report', '-i', data, '--no-children', '-g', 'none', '--sort', 'sym'], { encoding: 'utf8', maxBuffer: 1 << 26 })
        .split('\n').filter((l) => l.trim() && !l.startsWith('#')).slice(0, TOP).join('\n');
      process.stdout.write(`Node's threads (${workers.join(',')}) by class of stack:\n${perfClasses(data)}\nby symbol:\n${syms}\nperf data: ${data}\n`);
    }
  }
  writeFileSync(join(c.dir, 'all-output.txt'), c.output());
  process.stdout.write(`output: ${c.dir}\n`);
} finally {
  await replay.stop();
  await c.stop();
}
