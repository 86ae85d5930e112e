/**
 * The serving gateway's native relay thread (`dp-relay`, native/relay.c) per streamed token under the datapath bench's
 * real-time load (its real-time run's cluster: the emulator stepping in wall time, the replay's requests from
 * RT_CLIENTS closed-loop clients, test/bench/datapath.bench.ts, their starts spread over a request's length), for one
 * or more built trees in alternation (an A/B in one run): the thread's CPU (schedstat; user and system as its ticks
 * split) and context switches per token from /proc over WINDOW_S, then its system calls per token by name, with the
 * reads that returned EAGAIN, the sends that took less than they were given and the epoll_wait returns that named
 * more than one fd, from strace attached to that thread alone over STRACE_S (strace slows the thread, so more events
 * are ready per epoll_wait under it: counts, not times). Tokens: those of the requests completed in the window
 * (RT_LEN each), and for strace the thread's sends (one per engine chunk relayed).
 *
 * Order per tree and round: a cluster from the tree's `dynamollm up`; WARM_S of the closed loop; the counters'
 * window; the strace window; the cluster stopped. The trees run in the order given, then reversed, ROUNDS times.
 *   npm run build (in each tree); nice -n 10 npx tsx scripts/relay-syscalls.ts <tree> [<tree>...]
 * Env: WARM_S (20), WINDOW_S (15), STRACE_S (6; 0: none), ROUNDS (1), PERF_S (0: none; else `perf record -g` of the
 * thread for as long after the strace window, the file's path printed).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startBenchCluster } from './bench-cluster.ts';
import { ReplayLoad } from './replay-load.ts';
import { cpuMs, tree } from '../test/bench/datapath-cpu.ts';
import { threadCounters, type ThreadCounters } from '../test/bench/thread-cpu.ts';
import { RT_LEN } from '../test/bench/datapath.bench.ts';

const TREES = process.argv.slice(2).map((t) => resolve(t));
const WARM_S = Number(process.env.WARM_S ?? 20);
const WINDOW_S = Number(process.env.WINDOW_S ?? 15);
const STRACE_S = Number(process.env.STRACE_S ?? 6);
const ROUNDS = Number(process.env.ROUNDS ?? 1);
const PERF_S = Number(process.env.PERF_S ?? 0);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One thread's system calls over `s` seconds (strace on it alone): counts by name, and the notable returns. */
async function straced(tid: number, s: number, file: string): Promise<Map<string, number>> {
  const st = spawn('strace', ['-qq', '-s', '0', '-o', file, '-p', String(tid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => st.once('exit', r));
  const early = await Promise.race([exited.then(() => true), sleep(s * 1000).then(() => false)]);
  if (early) throw new Error(`strace -p ${tid} ended before its window: ${err}`);
  st.kill('SIGINT');
  await exited;
  const calls = new Map<string, number>();
  const add = (k: string) => calls.set(k, (calls.get(k) ?? 0) + 1);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([a-z_0-9]+)\((.*)\) += (-?\d+)/.exec(line);
    if (!m) continue; // a resumed call, a signal, an exit
    add(m[1]!);
    const r = Number(m[3]);
    if (line.includes('EAGAIN')) add(`${m[1]} EAGAIN`);
    if (m[1] === 'epoll_wait' && r > 1) add('epoll_wait >1 ready');
    if (m[1] === 'sendto') {
      const len = /, (\d+), MSG_/.exec(m[2]!);
      if (len && r >= 0 && r < Number(len[1])) add('sendto short');
    }
  }
  return calls;
}

interface Result { tree: string; tokens: number; wall: number; th: ThreadCounters; calls?: Map<string, number> }

async function measure(t: string): Promise<Result> {
  const c = await startBenchCluster({ tree: t, name: 'relay-syscalls', engineArgs: [], gateway: { dataPlane: 'native' } });
  const load = new ReplayLoad(c.base);
  try {
    const gws = tree(c.up.pid!).gateway;
    const cpu0 = new Map(gws.map((p) => [p, cpuMs(p)]));
    load.start(RT_LEN * 28); // the emulator's ~28 ms a token at this load
    await sleep(WARM_S * 1000);
    const pid = [...gws].sort((a, b) => cpuMs(b) - cpu0.get(b)! - (cpuMs(a) - cpu0.get(a)!))[0]!;
    const relay = () => [...threadCounters(pid)].find(([, v]) => v.comm === 'dp-relay');
    const r0 = relay();
    if (!r0) throw new Error(`${t}: no dp-relay thread in the serving gateway ${pid}`);
    const d0 = load.done, t0 = performance.now();
    await sleep(WINDOW_S * 1000);
    const r1 = relay()!, d1 = load.done, wall = (performance.now() - t0) / 1000;
    const th: ThreadCounters = { comm: 'dp-relay', userMs: r1[1].userMs - r0[1].userMs, sysMs: r1[1].sysMs - r0[1].sysMs, runMs: r1[1].runMs - r0[1].runMs, vcs: r1[1].vcs - r0[1].vcs, nvcs: r1[1].nvcs - r0[1].nvcs };
    const calls = STRACE_S > 0 ? await straced(r0[0], STRACE_S, join(c.dir, 'relay.strace')) : undefined;
    if (PERF_S > 0) {
      const out = join(c.dir, 'relay.perf');
      const p = spawn('perf', ['record', '-q', '-g', '-t', String(r0[0]), '-o', out, '--', 'sleep', String(PERF_S)], { stdio: 'ignore' });
      await new Promise((r) => p.once('exit', r));
      console.log(`perf data: ${out}`);
    }
    return { tree: t, tokens: (d1 - d0) * RT_LEN, wall, th, calls };
  } finally {
    await load.stop();
    await c.stop();
  }
}

const f = (x: number, d = 2) => x.toFixed(d);
const line = (r: Result) => {
  const us = (r.th.runMs * 1000) / r.tokens, user = r.th.userMs / (r.th.userMs + r.th.sysMs || 1);
  const out = [`${r.tree}: ${r.tokens} tokens in ${f(r.wall, 1)} s (${f(r.tokens / r.wall, 1)}/s); dp-relay ${f(us)} us per token (${f(user * 100, 0)}% user), ${f(r.th.vcs / r.tokens, 3)} wake-ups, ${f(r.th.nvcs / r.tokens, 3)} preemptions per token`];
  if (r.calls) {
    const events = r.calls.get('sendto') ?? 0;
    out.push(`  system calls per send (${events} sends under strace): ` + [...r.calls].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${f(v / events, 3)}`).join(', '));
  }
  return out.join('\n');
};

const order = Array.from({ length: ROUNDS }, () => [...TREES, ...[...TREES].reverse()]).flat();
const results: Result[] = [];
console.log(`WARM_S ${WARM_S}, WINDOW_S ${WINDOW_S}, STRACE_S ${STRACE_S}, order: ${order.join(' ')}`);
for (const t of order) {
  const r = await measure(t);
  results.push(r);
  console.log(`${new Date().toISOString()} ${line(r)}`);
}
for (const t of TREES) {
  const rs = results.filter((r) => r.tree === t);
  const us = rs.map((r) => (r.th.runMs * 1000) / r.tokens);
  console.log(`${t}: dp-relay us per token ${us.map((u) => f(u)).join(', ')}; over all its windows ${f((rs.reduce((a, r) => a + r.th.runMs, 0) * 1000) / rs.reduce((a, r) => a + r.tokens, 0))}`);
}
