/**
 * The serving gateway's main thread per streamed request under the datapath bench's real-time load (its real-time
 * run's cluster: the emulator stepping in wall time, the replay's requests from RT_CLIENTS closed-loop clients,
 * test/bench/datapath.bench.ts, its clients' starts spread over a request's length): its wake-ups (voluntary context
 * switches: each wait of its event loop that slept) and CPU per request from /proc, and its system calls per request by
 * name from strace attached to that thread alone. Each is given per request of the loaded window, and marginal: less
 * the idle window's over as long (heartbeats, statuses, timers; under load some of those share a wake-up with a
 * request's work, so the marginal figure is the lower bound). Requests: those completed in the counters' window, and
 * those whose body the thread read in the strace window.
 *
 * Order: WARM_S of the closed loop; the clients stop; the idle window (IDLE_S of counters, then STRACE_S under
 * strace); the clients again, a request's length and 5 s to refill; the loaded window (WINDOW_S of counters, then
 * STRACE_S under strace). strace slows the thread, so its figures are counts, not times (more is ready per
 * epoll_pwait under it).
 *   npm run build; nice -n 10 npx tsx scripts/gateway-syscalls.ts [tree]
 * Env: PLANE (gateway.dataPlane, default native), WARM_S (30), IDLE_S (10), WINDOW_S (20), STRACE_S (30),
 * KEEP=1 (keeps the strace files, -tt with each call's arguments, and prints their paths).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBenchCluster } from './bench-cluster.ts';
import { ReplayLoad } from './replay-load.ts';
import { cpuMs, tree } from '../test/bench/datapath-cpu.ts';
import { threadCounters } from '../test/bench/thread-cpu.ts';
import { RT_CLIENTS, RT_LEN } from '../test/bench/datapath.bench.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** the built tree whose gateway runs (an A/B against another commit's build): argv[2], default this one. */
const TREE = resolve(process.argv[2] ?? REPO);
const PLANE = process.env.PLANE ?? 'native';
const WARM_S = Number(process.env.WARM_S ?? 30);
const IDLE_S = Number(process.env.IDLE_S ?? 10);
const WINDOW_S = Number(process.env.WINDOW_S ?? 20);
const STRACE_S = Number(process.env.STRACE_S ?? 30);
const KEEP = process.env.KEEP === '1';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The main thread's system calls by name over `s` seconds (strace on that thread alone), and `requests`: the requests
 * it read from clients meanwhile; `file` kept with KEEP.
 */
async function straced(pid: number, s: number, file: string): Promise<{ calls: Map<string, number>; requests: number }> {
  const st = spawn('strace', ['-qq', ...(KEEP ? ['-tt'] : ['-e', 'verbose=none']), '-s', '24', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => st.once('exit', r));
  const early = await Promise.race([exited.then(() => true), sleep(s * 1000).then(() => false)]);
  if (early) throw new Error(`strace -p ${pid} ended before its window: ${err}`);
  st.kill('SIGINT');
  await exited;
  const calls = new Map<string, number>();
  let requests = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (/read\(\d+, "POST \/v1\/completions/.test(line)) requests++;
    const m = /^(?:\d\d:\d\d:\d\d\.\d+ )?([a-z_0-9]+)\(/.exec(line);
    if (!m) continue; // a resumed call (counted where it began), a signal, an exit
    calls.set(m[1]!, (calls.get(m[1]!) ?? 0) + 1);
    // epoll_pwait that returned nothing: a timer's wake-up
    if (m[1] === 'epoll_pwait' && / = 0$/.test(line)) calls.set('epoll_pwait (timeout)', (calls.get('epoll_pwait (timeout)') ?? 0) + 1);
  }
  return { calls, requests };
}

const main = async () => {
  const c = await startBenchCluster({ tree: TREE, name: 'gw-syscalls', engineArgs: [], gateway: { dataPlane: PLANE } });
  const load = new ReplayLoad(c.base);
  try {
    const gws = tree(c.up.pid!).gateway;
    const cpu0 = new Map(gws.map((p) => [p, cpuMs(p)]));
    const spreadMs = RT_LEN * 28; // the emulator's ~28 ms a token at this load
    load.start(spreadMs);
    await sleep(WARM_S * 1000);
    // the serving gateway: the one that worked (a standby does not)
    const pid = [...gws].sort((a, b) => cpuMs(b) - cpu0.get(b)! - (cpuMs(a) - cpu0.get(a)!))[0]!;
    await load.stop();
    const main = () => threadCounters(pid).get(pid)!;
    const idle0 = main(), it0 = performance.now();
    await sleep(IDLE_S * 1000);
    const idle1 = main(), idleS = (performance.now() - it0) / 1000;
    const { calls: idleCalls } = await straced(pid, STRACE_S, join(c.dir, 'idle.strace'));
    load.start(spreadMs);
    await sleep(spreadMs + 5000);
    const l0 = main(), d0 = load.done, t0 = performance.now();
    await sleep(WINDOW_S * 1000);
    const l1 = main(), d1 = load.done, wall = (performance.now() - t0) / 1000;
    const { calls: loadedCalls, requests: traced } = await straced(pid, STRACE_S, join(c.dir, 'loaded.strace'));
    await load.stop();
    const reqs = d1 - d0;
    const rate = (a: number, b: number, s: number) => (b - a) / s;
    const vcs = (rate(l0.vcs, l1.vcs, wall) - rate(idle0.vcs, idle1.vcs, idleS)) * wall / reqs;
    const runMs = (rate(l0.runMs, l1.runMs, wall) - rate(idle0.runMs, idle1.runMs, idleS)) * wall / reqs;
    const out = [
      `${TREE}: gateway.dataPlane ${PLANE}; the serving gateway pid ${pid}; ${RT_CLIENTS} clients of ${RT_LEN}-token requests after ${WARM_S} s`,
      `main thread, ${reqs} requests in ${wall.toFixed(1)} s (${(reqs / wall).toFixed(2)}/s), per request (marginal): ${((l1.vcs - l0.vcs) / reqs).toFixed(2)} (${vcs.toFixed(2)}) wake-ups ` +
        `(voluntary switches; idle ${rate(idle0.vcs, idle1.vcs, idleS).toFixed(1)}/s), ${((l1.runMs - l0.runMs) / reqs).toFixed(3)} (${runMs.toFixed(3)}) ms CPU (schedstat; ` +
        `${((runMs * 1000) / RT_LEN).toFixed(2)} us per token marginal), ${((l1.nvcs - l0.nvcs) / reqs).toFixed(2)} preemptions`,
      `system calls under strace (${STRACE_S} s each, ${traced} requests read in the loaded one), per request: marginal (loaded, the idle window's)`,
    ];
    const names = [...new Set([...loadedCalls.keys(), ...idleCalls.keys()])].sort((a, b) => (loadedCalls.get(b) ?? 0) - (loadedCalls.get(a) ?? 0));
    let total = 0, totalIdle = 0;
    for (const n of names) {
      const l = loadedCalls.get(n) ?? 0, i = idleCalls.get(n) ?? 0;
      if (!n.includes('(')) {
        total += l;
        totalIdle += i;
      }
      out.push(`  ${n.padEnd(24)} ${((l - i) / traced).toFixed(2).padStart(7)}  (${(l / traced).toFixed(2)}, ${(i / traced).toFixed(2)})`);
    }
    out.push(`  ${'all'.padEnd(24)} ${((total - totalIdle) / traced).toFixed(2).padStart(7)}  (${(total / traced).toFixed(2)}, ${(totalIdle / traced).toFixed(2)})`);
    if (load.failed) out.push(`${load.failed} requests failed (not counted)`);
    if (KEEP) out.push(`strace files: ${join(c.dir, 'idle.strace')} ${join(c.dir, 'loaded.strace')}`);
    console.log(out.join('\n'));
  } finally {
    await load.stop();
    await c.stop();
  }
};

await main();
