/**
 * A V8 CPU profile of the serving gateway (ROLE=instance: the instance manager) under the closed loop of short requests (the datapath bench's direct-path
 * one-instance cluster, zero-delay emulator, 16 clients of streamed 4-token completions of an 8-token-id prompt, as
 * scripts/gateway-ab.ts), taken after WARM_S seconds of that load so that V8 has optimised the hot path.
 *
 * A module every node process of the cluster imports (NODE_OPTIONS) starts the inspector's sampling profiler on the
 * first SIGUSR2 and writes the profile on the second; only the profiled process is signalled. Prints the busy samples' self
 * time by function and by file (the project's dist/ files, packages, Node internals), and the profile's path (open it
 * in Chrome's DevTools).
 *   npm run build; nice -n 5 npx tsx scripts/gateway-profile.ts [tree]
 * Env: WARM_S (60), PROFILE_S (20), INTERVAL_US (200), TOP (40), PLANE (the gateway's dataPlane, default auto), ROLE
 * (gateway, or instance: the process of `actor instance`), PERF=1 (Linux `perf record -F 1999 -g` of the process over the
 * window instead, every node process started with --perf-basic-prof: CPU time, the kernel's share included, where V8's
 * sampler counts wall time; prints `perf report`'s shares by object and by symbol; a JavaScript symbol's prefix is its
 * V8 tier: `~` the interpreter, `^` Sparkplug, `+` Maglev, `*` TurboFan), RT=1 (the datapath bench's real-time run's
 * load instead: the emulator stepping in wall time, RT_CLIENTS closed-loop clients of the replay's requests, 2,000-token-id
 * prompts, 200 tokens, usage on every event, scripts/replay-load.ts; PLANE default native). Both print the busy samples'
 * inclusive time by function too (the project's functions: the share of samples with it on the stack), and per request
 * of the window the profiled process's main thread CPU (schedstat). IDLE=1: no load at all (the idle cluster's own work:
 * heartbeats, statuses, telemetry, leases), the main thread's CPU given per second; ROLE may then name any actor kind
 * (gateway, instance, pool, cluster, node).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BENCH_MODEL, startBenchCluster } from './bench-cluster.ts';
import { descendants, tree } from '../test/bench/datapath-cpu.ts';
import { threadCounters } from '../test/bench/thread-cpu.ts';
import { ReplayLoad } from './replay-load.ts';
import { RT_LEN } from '../test/bench/datapath.bench.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TREE = resolve(process.argv[2] ?? REPO);
const MODEL = BENCH_MODEL;
const WARM_S = Number(process.env.WARM_S ?? 60);
const PROFILE_S = Number(process.env.PROFILE_S ?? 20);
const INTERVAL_US = Number(process.env.INTERVAL_US ?? 200);
const TOP = Number(process.env.TOP ?? 40);
const CLIENTS = 16;
const ROLE = process.env.ROLE ?? 'gateway';
const PERF = process.env.PERF === '1';
const RT = process.env.RT === '1';
const IDLE = process.env.IDLE === '1';
const PLANE = process.env.PLANE ?? (RT ? 'native' : undefined);
if (!['gateway', 'instance', ...(IDLE ? ['pool', 'cluster', 'node'] : [])].includes(ROLE)) throw new Error(`ROLE is gateway or instance${IDLE ? ', pool, cluster or node' : ''}, not ${ROLE}`);

const PRELOAD = `
import { writeFileSync, renameSync } from 'node:fs';
import { Session } from 'node:inspector';
const dir = process.env.DYN_PROF_DIR, every = Number(process.env.DYN_PROF_INTERVAL ?? 200);
let session;
process.on('SIGUSR2', () => {
  if (!session) {
    session = new Session();
    session.connect();
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: every });
    session.post('Profiler.start');
    writeFileSync(dir + '/started-' + process.pid, '');
    return;
  }
  session.post('Profiler.stop', (err, r) => {
    writeFileSync(dir + '/p.tmp', JSON.stringify(err ? {} : r.profile));
    renameSync(dir + '/p.tmp', dir + '/profile-' + process.pid + '.cpuprofile');
    session.disconnect();
    session = undefined;
  });
});
`;

/** the process's main thread's CPU ms (schedstat) */
const mainMs = (pid: number) => threadCounters(pid).get(pid)!.runMs;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function one(base: string): Promise<void> {
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }) });
  const t = await r.text();
  if (!t.includes('[DONE]')) throw new Error(`a request did not end with [DONE]: ${t.slice(-300)}`);
}
let replay: ReplayLoad | undefined;
async function loop(base: string, s: number): Promise<number> {
  if (IDLE) return (await sleep(s * 1000), 0);
  if (RT) {
    if (!replay) {
      replay = new ReplayLoad(base);
      replay.start(RT_LEN * 28); // the clients' starts spread over a request's length (the emulator's ~28 ms a token)
    }
    const d0 = replay.done;
    await sleep(s * 1000);
    return replay.done - d0;
  }
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

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }
function fileOf(url: string): string {
  if (!url) return '(native/vm)';
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 6);
  const n = url.lastIndexOf('/node_modules/');
  if (n >= 0) return url.slice(n + 14).split('/').slice(0, url.slice(n + 14).startsWith('@') ? 2 : 1).join('/') + ' (pkg)';
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '');
}
function summarize(p: Profile, reqs: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclFn = new Map<string, number>();
  const selfFn = new Map<string, number>();
  const selfFile = new Map<string, number>();
  let busy = 0, total = 0;
  for (const id of p.samples) {
    const n = byId.get(id)!;
    total++;
    const name = n.callFrame.functionName;
    if (name === '(idle)') continue;
    busy++;
    const f = fileOf(n.callFrame.url);
    const key = `${name || '(anon)'} ${f}:${n.callFrame.lineNumber + 1}`;
    selfFn.set(key, (selfFn.get(key) ?? 0) + 1);
    selfFile.set(f, (selfFile.get(f) ?? 0) + 1);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const c = byId.get(at)!.callFrame;
      if (!c.url.includes('/dist/')) continue;
      const k = `${c.functionName || '(anon)'} ${fileOf(c.url)}:${c.lineNumber + 1}`;
      if (!seen.has(k)) inclFn.set(k, (inclFn.get(k) ?? 0) + 1);
      seen.add(k);
    }
  }
  const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
    .map(([key, v]) => `  ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${key}`).join('\n');
  return `${total} samples, ${busy} busy (${((100 * busy) / total).toFixed(0)}%), ${reqs} requests in the window\n` +
    `self time by function (share of busy samples):\n${top(selfFn, TOP)}\nself time by file:\n${top(selfFile, TOP)}\n` +
    `inclusive time by the project's functions (share of busy samples with it on the stack):\n${top(inclFn, TOP)}\n`;
}

// the datapath bench's one-instance cluster (scripts/bench-cluster.ts), every process of it loading the profiler's preload
const c = await startBenchCluster({
  tree: TREE, name: 'gateway-profile', engineArgs: RT ? [] : ['--zero-delay'], gateway: PLANE ? { dataPlane: PLANE } : {}, upArgs: ['--gateway-standbys', '0'],
  env: (dir) => {
    const preload = join(dir, 'profile-window.mjs');
    writeFileSync(preload, PRELOAD);
    return { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}${PERF ? ' --perf-basic-prof' : ''}`, DYN_PROF_DIR: dir, DYN_PROF_INTERVAL: String(INTERVAL_US) };
  },
});
const { up, base, dir } = c;
try {
  const gw = ROLE === 'gateway' ? tree(up.pid!).gateway[0]! : descendants(up.pid!).find((d) => d.cmd.includes(`actor\0${ROLE}\0`))?.pid;
  if (gw === undefined) throw new Error(`no ${ROLE} process under up`);
  const warm = await loop(base, WARM_S);
  if (PERF) {
    const data = join(dir, 'perf.data');
    const rec = spawn('perf', ['record', '-F', '1999', '-g', '-p', String(gw), '-o', data, '--', 'sleep', String(PROFILE_S)], { stdio: 'ignore' });
    const recorded = new Promise<number | null>((r) => rec.once('exit', r));
    const m0 = mainMs(gw);
    const reqs = await loop(base, PROFILE_S);
    const perReq = (mainMs(gw) - m0) / (IDLE ? PROFILE_S : reqs);
    if ((await recorded) !== 0) throw new Error('perf record failed');
    const lines = (sort: string, ...more: string[]) => execFileSync('perf', ['report', '-i', data, '--no-children', '-g', 'none', '--sort', sort, ...more], { encoding: 'utf8', maxBuffer: 1 << 26 })
      .split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    const report = (sort: string) => lines(sort).slice(0, TOP).join('\n');
    // the main thread's rows (perf's `pid` key is the thread: `tid:comm`)
    const mine = (sort: string) => lines(`pid,${sort}`).filter((l) => l.includes(` ${gw}:`));
    // the main thread's JavaScript samples by V8 tier: the perf map's prefix of the function's name
    const tiers = new Map<string, number>();
    for (const l of mine('sym')) {
      const m = /^\s*([\d.]+)%.*\] JS:([~^+*])/.exec(l);
      if (m) tiers.set(m[2]!, (tiers.get(m[2]!) ?? 0) + Number(m[1]));
    }
    const tierLine = [['~', 'interpreter'], ['^', 'Sparkplug'], ['+', 'Maglev'], ['*', 'TurboFan']].map(([k, n]) => `${n} ${(tiers.get(k!) ?? 0).toFixed(2)}%`).join(', ');
    process.stdout.write(`${new Date().toISOString()} ${TREE}, ${ROLE} pid ${gw}: warm-up ${warm} requests in ${WARM_S} s, perf over ${reqs} in ${PROFILE_S} s (${(reqs / PROFILE_S).toFixed(1)} req/s), main thread ${perReq.toFixed(3)} ms CPU per ${IDLE ? 'second (idle)' : 'request'}\n`);
    process.stdout.write(`by thread:\n${report('pid')}\nby object:\n${report('dso')}\nby symbol:\n${report('sym')}\n` +
      `the main thread (tid ${gw}) by object (shares of all samples):\n${mine('dso').slice(0, TOP).join('\n')}\nthe main thread by symbol:\n${mine('sym').slice(0, TOP).join('\n')}\n` +
      `the main thread's JavaScript self time by V8 tier (shares of all samples): ${tierLine}\nperf data: ${data}\n`);
  } else {
    process.kill(gw, 'SIGUSR2');
    for (const until = Date.now() + 10_000; !existsSync(join(dir, `started-${gw}`));) {
      if (Date.now() > until) throw new Error(`the ${ROLE} process did not start its profiler`);
      await sleep(20);
  }
  const m0 = mainMs(gw);
  const reqs = await loop(base, PROFILE_S);
  const perReq = (mainMs(gw) - m0) / (IDLE ? PROFILE_S : reqs);
  process.kill(gw, 'SIGUSR2');
  const file = join(dir, `profile-${gw}.cpuprofile`);
  for (const until = Date.now() + 30_000; !existsSync(file);) {
    if (Date.now() > until) throw new Error('no profile');
    await sleep(100);
  }
  process.stdout.write(`${new Date().toISOString()} ${TREE}, ${ROLE} pid ${gw}: warm-up ${warm} requests in ${WARM_S} s, profiled ${reqs} in ${PROFILE_S} s (${(reqs / PROFILE_S).toFixed(1)} req/s), main thread ${perReq.toFixed(3)} ms CPU per ${IDLE ? 'second (idle)' : 'request'} (the profiler's own included)\n`);
  process.stdout.write(summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, reqs));
  process.stdout.write(`profile: ${file}\n`);
  }
} finally {
  await replay?.stop();
  await c.stop();
}
