/**
 * The gateway's JavaScript heap allocation per short request: bytes allocated in the serving gateway process over SEQ
 * sequential streamed 4-token requests (the datapath bench's direct-path one-instance cluster, zero-delay emulator, as
 * test/bench/gateway-gc.ts), its scavenges per 1,000 of them, and with PROFILE the allocation sites (V8's sampling heap
 * profiler keeping the samples of objects scavenges and full collections freed: every allocation, not only the live).
 *
 * Bytes allocated are counted in the gateway itself: a module every node process of the cluster imports (NODE_OPTIONS)
 * starts a window on the first SIGUSR2 and ends it on the second; over the window, the heap's used bytes at its end less
 * at its start plus what each garbage collection freed (v8.GCProfiler's before and after each). The figure is V8's
 * heap only (a Buffer's bytes outside it are not in it, its JavaScript object is). The gateway's background work (NATS
 * pings, heartbeats, timers) is measured over an idle window of IDLE_S seconds and subtracted at its rate.
 *
 * Run with one tree or several (each built: `npm run build`; its bin/ runs its dist/); RUNS rounds, the trees in turn
 * (A B A B ...), each a fresh cluster:
 *   nice -n 10 npx tsx scripts/gateway-alloc.ts [treeA [treeB ...]]
 * Env: SEQ (1000), RUNS (3), WARM_S (closed-loop warm-up, 8: the young generation grows to its cap as in a serving
 * gateway), IDLE_S (3), PROFILE=<bytes> (the sampling interval, e.g. 512; prints the top sites by self bytes and by the
 * innermost frame in the project's dist/ or a package), TOP (25). RT=1: the datapath bench's real-time run's load
 * instead (the emulator stepping in wall time, the native data plane, RT_CLIENTS closed-loop clients of the replay's
 * requests: 2,000-token-id prompts, 200 tokens, usage on every event; scripts/replay-load.ts): WARM_S (default 60) of it,
 * then a window of WINDOW_S (30) seconds with the load on, per request completed in it.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tree } from '../test/bench/datapath-cpu.ts';
import { BENCH_MODEL as MODEL, startBenchCluster } from './bench-cluster.ts';
import { ReplayLoad } from './replay-load.ts';
import { RT_LEN } from '../test/bench/datapath.bench.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TREES = process.argv.length > 2 ? process.argv.slice(2).map((t) => resolve(t)) : [REPO];
const SEQ = Number(process.env.SEQ ?? 1000);
const RUNS = Number(process.env.RUNS ?? 3);
const RT = process.env.RT === '1';
const WARM_S = Number(process.env.WARM_S ?? (RT ? 60 : 8));
const WINDOW_S = Number(process.env.WINDOW_S ?? 30);
const IDLE_S = Number(process.env.IDLE_S ?? 3);
const PROFILE = process.env.PROFILE ? Number(process.env.PROFILE) : undefined;
const TOP = Number(process.env.TOP ?? 25);
const CLIENTS = 16;

/** The window's module (plain JavaScript: every process of the cluster imports it through NODE_OPTIONS). */
const PRELOAD = `
import { renameSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import { Session } from 'node:inspector';
const dir = process.env.DYN_ALLOC_DIR, every = Number(process.env.DYN_ALLOC_PROFILE ?? 0);
let w;
process.on('SIGUSR2', () => {
  if (!w) {
    let session;
    if (every > 0) {
      session = new Session();
      session.connect();
      session.post('HeapProfiler.startSampling', { samplingInterval: every, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    const gc = new v8.GCProfiler();
    gc.start();
    w = { session, gc, used: v8.getHeapStatistics().used_heap_size, t0: performance.now() };
    writeFileSync(dir + '/started-' + process.pid, '');
    return;
  }
  const used = v8.getHeapStatistics().used_heap_size, ms = performance.now() - w.t0;
  const { statistics } = w.gc.stop();
  let freed = 0, scavenges = 0, full = 0;
  for (const s of statistics) {
    freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    if (s.gcType === 'Scavenge' || s.gcType === 'MinorMarkCompact') scavenges++;
    else full++;
  }
  const out = { pid: process.pid, ms, allocated: used - w.used + freed, scavenges, full };
  const done = (profile) => {
    // written whole, then renamed: the bench reads it once it is there
    writeFileSync(dir + '/window-' + process.pid + '.tmp', JSON.stringify({ ...out, profile }));
    renameSync(dir + '/window-' + process.pid + '.tmp', dir + '/window-' + process.pid + '.json');
    w = undefined;
  };
  if (w.session) w.session.post('HeapProfiler.stopSampling', (err, r) => { w.session.disconnect(); done(err ? undefined : r.profile); });
  else done(undefined);
});
`;

async function one(base: string): Promise<void> {
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }),
  });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
  let n = 0;
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) n += part.length;
  if (n === 0) throw new Error('an empty stream');
}

interface Frame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface Node { callFrame: Frame; selfSize: number; children: Node[] }
interface Window { pid: number; ms: number; allocated: number; scavenges: number; full: number; profile?: { head: Node } }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One window over every gateway process: SIGUSR2, `work`, SIGUSR2; the busiest process's window. */
async function window(dir: string, pids: number[], work: () => Promise<void>): Promise<Window> {
  const file = (k: string, p: number) => join(dir, `${k}-${p}${k === 'window' ? '.json' : ''}`);
  for (const p of pids) process.kill(p, 'SIGUSR2');
  for (const until = Date.now() + 10_000; !pids.every((p) => existsSync(file('started', p)));) {
    if (Date.now() > until) throw new Error('the gateway did not start its window');
    await sleep(20);
  }
  await work();
  for (const p of pids) process.kill(p, 'SIGUSR2');
  for (const until = Date.now() + 30_000; !pids.every((p) => existsSync(file('window', p)));) {
    if (Date.now() > until) throw new Error('the gateway did not end its window');
    await sleep(20);
  }
  const ws = pids.map((p) => JSON.parse(readFileSync(file('window', p), 'utf8')) as Window);
  for (const p of pids) for (const k of ['started', 'window']) rmSync(file(k, p), { force: true });
  await sleep(100);
  return ws.sort((a, b) => b.allocated - a.allocated)[0]!;
}

/** Self bytes by site, and by the innermost frame of the project's code or a package (`own`). */
function sites(head: Node, treeDir: string): { self: Map<string, number>; own: Map<string, number>; total: number } {
  const self = new Map<string, number>(), own = new Map<string, number>();
  let total = 0;
  const name = (f: Frame) => {
    const u = f.url.replace(pathToFileURL(treeDir).href + '/', '').replace(/^file:\/\/.*node_modules\//, 'node_modules/');
    return `${f.functionName || '(anonymous)'} ${u || '(native)'}:${f.lineNumber + 1}`;
  };
  const mine = (f: Frame) => f.url.includes('/dist/') || f.url.includes('node_modules/');
  const walk = (n: Node, ownSite: string) => {
    const s = name(n.callFrame);
    const o = mine(n.callFrame) ? s : ownSite;
    if (n.selfSize > 0) {
      total += n.selfSize;
      self.set(s, (self.get(s) ?? 0) + n.selfSize);
      own.set(o, (own.get(o) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, o);
  };
  walk(head, '(outside the project)');
  return { self, own, total };
}

function top(m: Map<string, number>, total: number, per: number): string {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)
    .map(([k, v]) => `    ${(v / per).toFixed(0).padStart(7)} B/req ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`).join('\n');
}

async function run(treeDir: string): Promise<{ perReq: number; scavPerK: number; idlePerS: number; raw: number }> {
  const c = await startBenchCluster({
    tree: treeDir, name: 'gateway-alloc', gateway: { workers: 1, dataPlane: RT ? 'native' : 'js' }, upArgs: ['--gateway-standbys', '0'],
    ...(RT ? { engineArgs: [] } : {}),
    env: (dir) => {
      const preload = join(dir, 'alloc-window.mjs');
      writeFileSync(preload, PRELOAD);
      return { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, DYN_ALLOC_DIR: dir, DYN_ALLOC_PROFILE: String(PROFILE ?? 0) };
    },
  });
  const { dir, up } = c;
  try {
    const base = c.base;
    const gw = tree(up.pid!).gateway;
    if (RT) return await realtime(treeDir, c, gw);
    for (let i = 0; i < 20; i++) await one(base);
    const warmUntil = performance.now() + WARM_S * 1000;
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < warmUntil) await one(base);
    }));
    for (let i = 0; i < 200; i++) await one(base);
    await sleep(300);
    const idle = await window(dir, gw, () => sleep(IDLE_S * 1000));
    const idlePerMs = idle.allocated / idle.ms;
    const w = await window(dir, gw, async () => {
      for (let i = 0; i < SEQ; i++) await one(base);
    });
    const perReq = (w.allocated - idlePerMs * w.ms) / SEQ;
    const scavPerK = (w.scavenges * 1000) / SEQ;
    process.stdout.write(`${new Date().toISOString()} ${treeDir}: ${SEQ} sequential requests in ${(w.ms / 1000).toFixed(2)} s: ` +
      `${(w.allocated / SEQ).toFixed(0)} B allocated per request raw, ${(idlePerMs * 1000).toFixed(0)} B/s idle, ` +
      `${perReq.toFixed(0)} B per request less idle; ${w.scavenges} scavenges (${scavPerK.toFixed(1)} per 1,000), ${w.full} full GCs\n`);
    report(treeDir, dir, w, SEQ);
    return { perReq, scavPerK, idlePerS: idlePerMs * 1000, raw: w.allocated / SEQ };
  } finally {
    await c.stop();
  }
}

/** The window's allocation sites (PROFILE), per request, and the profile's file. */
function report(treeDir: string, dir: string, w: Window, per: number): void {
  if (!w.profile) return;
  const s = sites(w.profile.head, treeDir);
  process.stdout.write(`  sampled ${(s.total / per).toFixed(0)} B per request (interval ${PROFILE} B); by site (self):\n${top(s.self, s.total, per)}\n` +
    `  by the innermost frame of the project's dist/ or a package:\n${top(s.own, s.total, per)}\n`);
  writeFileSync(join(dir, 'profile.json'), JSON.stringify(w.profile));
  process.stdout.write(`  profile: ${join(dir, 'profile.json')}\n`);
}

/** RT=1: WARM_S of the replay's load, an idle window, then WINDOW_S with the load on; per request completed in it. */
async function realtime(treeDir: string, c: Awaited<ReturnType<typeof startBenchCluster>>, gw: number[]): Promise<{ perReq: number; scavPerK: number; idlePerS: number; raw: number }> {
  const sleepS = (s: number) => sleep(s * 1000);
  const idle = await window(c.dir, gw, () => sleepS(IDLE_S));
  const idlePerMs = idle.allocated / idle.ms;
  const load = new ReplayLoad(c.base);
  load.start(RT_LEN * 28);
  await sleepS(WARM_S);
  let done = 0;
  const w = await window(c.dir, gw, async () => {
    const d0 = load.done;
    await sleepS(WINDOW_S);
    done = load.done - d0;
  });
  await load.stop();
  const perReq = (w.allocated - idlePerMs * w.ms) / done;
  process.stdout.write(`${new Date().toISOString()} ${treeDir}: ${done} replay-shaped requests (${load.failed} failed) in ${(w.ms / 1000).toFixed(2)} s: ` +
    `${(w.allocated / done).toFixed(0)} B allocated per request raw, ${(idlePerMs * 1000).toFixed(0)} B/s idle, ${perReq.toFixed(0)} B per request less idle ` +
    `(${(perReq / RT_LEN).toFixed(0)} B per token); ${w.scavenges} scavenges, ${w.full} full GCs\n`);
  report(treeDir, c.dir, w, done);
  return { perReq, scavPerK: (w.scavenges * 1000) / done, idlePerS: idlePerMs * 1000, raw: w.allocated / done };
}

const results = new Map<string, { perReq: number; scavPerK: number }[]>(TREES.map((t) => [t, []]));
for (let r = 0; r < RUNS; r++) for (const t of TREES) results.get(t)!.push(await run(t));
for (const [t, rs] of results) {
  process.stdout.write(`${t}: B per request less idle ${rs.map((x) => x.perReq.toFixed(0)).join(', ')}; scavenges per 1,000 ${rs.map((x) => x.scavPerK.toFixed(1)).join(', ')}\n`);
}
