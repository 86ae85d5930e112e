/**
 * The gateway's CPU per short request by its number of worker processes (gateway.workers): one cluster per count (the
 * datapath bench's one-instance cluster, scripts/bench-cluster.ts: zero-delay emulator, direct path, no standby,
 * gateway.dataPlane js as the bench's closed loop, PLANE to change it), all up at once, the same load sent to each in
 * turn in ABBA blocks after WARM seconds of it (2-s blocks, alternating): by default RATE requests a second (streamed
 * 4-token completions of an 8-token-id prompt, the lean HTTP/1.1 client, round robin over CONNS clients so that every
 * worker gets its share), or a closed loop of CLIENTS clients. Per count: requests served by each process (its
 * x-dynamollm-gateway), how the gateway admitted them (its /metrics: credited, routed with the admission round trip,
 * intake), and per request for each gateway process (the primary and each worker), the instance manager, the engine
 * and nats-server: CPU (utime + stime, raw and less the process's idle rate read over IDLE seconds), the main thread's
 * CPU (schedstat), its sleeps (voluntary context switches), preemptions (involuntary ones), read/write-like system
 * calls (/proc/PID/io), minor page faults, and each thread's CPU by name.
 *   npm run build; RATE=300 WARM=60 nice -n 10 npx tsx scripts/gateway-workers.ts <tree> [counts=1,2] [blocks=4] [blockSeconds=8]
 * counts: `W` (workers), `WxC` (workers, and that target's closed-loop clients), `Wp` (worker i on CPU i mod the CPUs),
 * each optionally followed by `:` and node flags for that cluster's processes (`+` for a space).
 * TREES=<treeA>,<treeB> with one count: that count on two trees (a same-run A/B of a change), the first tree as A.
 * NATS=1, PSTAT=1, PERF=1, PIN=1: below.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Http1Pool, http1Request } from '../src/engine/http1.ts';
import { completionBody } from '../test/bench/closed-loop-client.ts';
import { cpuMs, tree, wakes } from '../test/bench/datapath-cpu.ts';
import { BENCH_MODEL, startBenchCluster, type BenchCluster } from './bench-cluster.ts';

const [treeArg, countsArg = '1,2', blocksArg = '4', secsArg = '8'] = process.argv.slice(2);
if (!treeArg && !process.env.TREES) throw new Error('usage: gateway-workers.ts <tree> [counts=1,2] [blocks] [blockSeconds]');
const RATE = Number(process.env.RATE ?? 300);
/** the paced load's requests go round robin over CONNS clients (each its own kept-alive connections), so that each worker gets its share. */
const CONNS = Number(process.env.CONNS ?? 8);
/** CLIENTS=N: a closed loop of N clients instead of the paced load (each client its own kept-alive connection). */
const CLIENTS = Number(process.env.CLIENTS ?? 0);
const WARM_S = Number(process.env.WARM ?? 10);
const IDLE_S = Number(process.env.IDLE ?? 6);
/**
 * NATS=1: every gateway process (its primary and workers) counts, from its start, the NATS protocol lines on its
 * sockets (`MSG`/`HMSG` read, `PUB`/`HPUB` written, by subject, a request id or inbox token shown as `<id>`) and its
 * socket reads and writes; on SIGUSR2 it writes the counts so far to `<run dir>/nats-<pid>.json`.
 */
const NATS = process.env.NATS === '1';
const PRELOAD = `
import { writeFileSync } from 'node:fs';
import net from 'node:net';
const a = process.argv.indexOf('actor');
if (a >= 0 && process.argv[a + 1] === 'gateway') {
  const dir = process.env.DYN_GWW_DIR;
  const c = { writes: 0, reads: 0, msgIn: 0, msgOut: 0, subjectsIn: {}, subjectsOut: {} };
  const key = (s) => s.replace(/\\.[A-Za-z0-9_-]{16,}$/, '.<id>').replace(/^(_INBOX\\.[^.]+\\.[^.]+)\\..*$/, '$1.<id>');
  const lines = (d, re, n, by) => { for (const m of Buffer.from(d).toString('latin1').matchAll(re)) { c[n]++; const k = key(m[1]); c[by][k] = (c[by][k] ?? 0) + 1; } };
  const write = net.Socket.prototype.write;
  net.Socket.prototype.write = function (d, ...rest) {
    c.writes++;
    if (typeof d !== 'string' || d.length < 4096) lines(d, /(?:^|\\r\\n)H?PUB ([^ ]+)/g, 'msgOut', 'subjectsOut');
    return write.call(this, d, ...rest);
  };
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (ev, d, ...rest) {
    if (ev === 'data') { c.reads++; lines(d, /(?:^|\\r\\n)H?MSG ([^ ]+)/g, 'msgIn', 'subjectsIn'); }
    return emit.call(this, ev, d, ...rest);
  };
  process.on('SIGUSR2', () => writeFileSync(dir + '/nats-' + process.pid + '.json', JSON.stringify(c)));
}
`;
/**
 * PERF=1: instead of the blocks, one window of blockSeconds per target under `perf record -e cpu-clock -F 1999` of the
 * target's gateway processes (every node process started with --perf-basic-prof, so JIT code has names): on-CPU time
 * per request by shared object and by symbol, the symbols whose time per request differs most between the first target
 * and the last first.
 */
const PERF = process.env.PERF === '1';
const PERF_HZ = 1999;
/** PSTAT=1: `perf stat` of the target's gateway processes over each block: system calls (all, epoll_pwait, reads and writes), context switches, migrations and page faults per request. */
const PSTAT = process.env.PSTAT === '1';
const PSTAT_EVENTS = ['raw_syscalls:sys_enter', 'syscalls:sys_enter_epoll_pwait', 'syscalls:sys_enter_read', 'syscalls:sys_enter_write', 'syscalls:sys_enter_writev', 'context-switches', 'cpu-migrations', 'page-faults'];
/** Starts `perf stat` of the target's gateway processes; the returned function stops it and resolves its counts. */
function perfStat(t: Target): () => Promise<Record<string, number>> {
  const gw = t.procs.filter((p) => p.role.startsWith('gateway')).map((p) => p.pid);
  const ps = spawn('perf', ['stat', '-x', ',', '-e', PSTAT_EVENTS.join(','), '-p', gw.join(',')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  ps.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return async () => {
    const ended = new Promise((r) => ps.once('exit', r));
    ps.kill('SIGINT');
    await ended;
    const out: Record<string, number> = {};
    for (const line of err.split('\n')) {
      const f = line.split(',');
      if (f.length > 3 && /^\d+$/.test(f[0]!)) out[f[2]!.replace(/^(raw_)?syscalls:sys_enter_?/, 'sys:') || 'sys:all'] = Number(f[0]);
    }
    return out;
  };
}
/**
 * PIN=1: the gateway's processes (every thread) on CPU 1 at nice 0, the rest of each cluster and this load generator
 * on CPU 0 (run the script under nice 10): the gateway is served whenever it has work, as on a host with cores to spare,
 * rather than queued behind the engine, NATS and the instance manager on a saturated 2-core VM.
 */
const PIN = process.env.PIN === '1';
/**
 * each count: `W` (workers) or `WxC` (workers, and that target's closed-loop clients over CLIENTS), then optionally
 * `:` and node flags for every process of that target's cluster (NODE_OPTIONS, `+` for a space), e.g. `4x16:--max-semi-space-size=2`.
 */
const counts = countsArg.split(',').map((c) => {
  const [spec, flags] = c.split(':');
  const pinWorkers = spec!.endsWith('p');
  const [w, k] = spec!.replace(/p$/, '').split('x').map(Number);
  return { workers: w!, clients: k ?? CLIENTS, pinWorkers, ...(flags ? { flags: flags.replaceAll('+', ' ') } : {}) };
});
const targets: TargetSpec[] = process.env.TREES
  ? process.env.TREES.split(',').map((t, i) => ({ label: `${'AB'[i] ?? i}:w${counts[0]!.workers}`, tree: resolve(t), ...counts[0]! }))
  : counts.map((c) => ({ label: `w${c.workers}${c.clients ? `x${c.clients}` : ''}${c.pinWorkers ? ' pinned' : ''}${c.flags ? ` ${c.flags}` : ''}`, tree: resolve(treeArg!), ...c }));
/** pinWorkers (a count ending in `p`): worker i's threads on CPU i mod the CPUs, the rest left to the scheduler. */
interface TargetSpec { label: string; tree: string; workers: number; clients: number; pinWorkers?: boolean; flags?: string }

/** main-thread ns of a process (its event loop), from its schedstat. */
function mainNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}
const COUNTERS = ['routed', 'credited', 'intake', 'native_spans', 'native_events'] as const;
async function counters(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const c of COUNTERS) out[c] = Number(new RegExp(`^dynamollm_gateway_${c}_total(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return out;
}

/** One streamed request through `pool`; resolves the process that served it (x-dynamollm-gateway), throws on anything but a whole stream. */
type Sender = (() => Promise<string>) & { close(): void };
function sender(base: string): Sender {
  const u = new URL('/v1/completions', base);
  const pool = new Http1Pool();
  const body = completionBody(BENCH_MODEL, 4);
  const send = async (): Promise<string> => {
    const r = await http1Request(pool, { host: u.hostname, port: Number(u.port), method: 'POST', path: u.pathname, headers: { 'content-type': 'application/json' }, body });
    let tail = '';
    await r.pipe((b) => (tail = (tail + b.toString('latin1')).slice(-64)));
    r.close();
    if (r.status !== 200 || !tail.includes('[DONE]')) throw new Error(`HTTP ${r.status}: ${tail}`);
    return r.headers['x-dynamollm-gateway'] ?? '?';
  };
  return Object.assign(send, { close: () => pool.destroy() });
}
/** CPU ms of a process's threads by name (/proc/PID/task/TID/comm): the main thread as `main`. */
function threadsByName(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const name = Number(t) === pid ? 'main' : readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      out[name] = (out[name] ?? 0) + cpuMs(pid, Number(t));
    }
  } catch {
    /* gone */
  }
  return out;
}

interface Target { label: string; workers: number; nClients: number; c: BenchCluster; send: Sender; clients?: Sender[]; paced?: Sender[]; procs: { pid: number; role: string }[] }
async function start(t: TargetSpec): Promise<Target> {
  const c = await startBenchCluster({
    tree: t.tree, name: 'gateway-workers', gateway: { workers: t.workers, dataPlane: process.env.PLANE ?? 'js' }, upArgs: ['--gateway-standbys', '0'],
    env: (dir: string) => {
      const opts = [t.flags ?? '', ...(PERF ? ['--perf-basic-prof'] : [])];
      if (NATS) {
        writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
        opts.push(`--import=${pathToFileURL(join(dir, 'preload.mjs')).href}`);
      }
      return { NODE_OPTIONS: opts.join(' ').trim(), DYN_GWW_DIR: dir };
    },
  });
  // the workers listen once forked: wait for every one to have started
  await new Promise((r) => setTimeout(r, 2000));
  const tr = tree(c.up.pid!);
  if (PIN) {
    for (const [pid, role] of tr.roles) {
      const gw = role.startsWith('gateway');
      try {
        execFileSync('taskset', ['-a', '-p', '-c', gw ? '1' : '0', String(pid)], { stdio: 'ignore' });
        if (gw) for (const tid of readdirSync(`/proc/${pid}/task`)) execFileSync('renice', ['-n', '0', '-p', tid], { stdio: 'ignore' });
      } catch {
        /* a process that ended meanwhile */
      }
    }
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  }
  if (t.pinWorkers) {
    let i = 0;
    for (const [pid, role] of tr.roles) if (role === 'gateway-worker') execFileSync('taskset', ['-a', '-p', '-c', String(i++ % cpus().length), String(pid)], { stdio: 'ignore' });
  }
  const procs = [...tr.roles].filter(([, r]) => r.startsWith('gateway') || r === 'instance' || r === 'nats-server' || r === 'engine').map(([pid, role]) => ({ pid, role }));
  return { label: t.label, workers: t.workers, nClients: t.clients, c, send: sender(c.base), procs };
}

/** read-like and write-like system calls of a process so far (/proc/PID/io syscr + syscw). */
function syscalls(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0) + Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0);
  } catch {
    return 0;
  }
}
/** involuntary context switches of a process's main thread (preempted while runnable), 0 once it is gone. */
function preempts(pid: number): number {
  try {
    return Number(/nonvoluntary_ctxt_switches:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
/** minor page faults of a process so far (/proc/PID/stat field 10). */
function faults(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return 0;
  }
}
interface Snap { cpu: number[]; main: number[]; wakes: number[]; pre: number[]; flt: number[]; sys: number[]; threads: Record<string, number>[]; at: number }
const snap = (t: Target): Snap => ({ cpu: t.procs.map((p) => cpuMs(p.pid)), main: t.procs.map((p) => mainNs(p.pid)), wakes: t.procs.map((p) => wakes(p.pid)), pre: t.procs.map((p) => preempts(p.pid)), flt: t.procs.map((p) => faults(p.pid)), sys: t.procs.map((p) => syscalls(p.pid)), threads: t.procs.map((p) => threadsByName(p.pid)), at: performance.now() });

/** RATE requests a second for `s` seconds (started on a 5-ms tick, as many as are due); resolves the requests served, counted by serving process into `by`. */
async function paced(t: Target, s: number, by: Record<string, number> = {}): Promise<number> {
  if (t.nClients > 0) return closed(t, s, by);
  const t0 = performance.now();
  let started = 0, done = 0, inflight = 0;
  const all: Promise<void>[] = [];
  while (performance.now() - t0 < s * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
    while (started < due && inflight < 256) {
      started++;
      inflight++;
      t.paced ??= Array.from({ length: CONNS }, () => sender(t.c.base));
      all.push(t.paced[started % CONNS]!().then((who) => {
        inflight--;
        done++;
        by[who] = (by[who] ?? 0) + 1;
      }));
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(all);
  return done;
}

/** CLIENTS clients, each sending one request after another for `s` seconds on its own connection. */
async function closed(t: Target, s: number, by: Record<string, number>): Promise<number> {
  const until = performance.now() + s * 1000;
  let done = 0;
  t.clients ??= Array.from({ length: t.nClients }, () => sender(t.c.base));
  await Promise.all(t.clients.map(async (send) => {
    while (performance.now() < until) {
      const who = await send();
      done++;
      by[who] = (by[who] ?? 0) + 1;
    }
  }));
  return done;
}

type NatsCounts = { writes: number; reads: number; msgIn: number; msgOut: number; subjectsIn: Record<string, number>; subjectsOut: Record<string, number> };
/** Every gateway process's NATS counts so far (NATS=1), summed over them. */
async function natsCounts(t: Target): Promise<NatsCounts | undefined> {
  if (!NATS) return undefined;
  const gw = t.procs.filter((p) => p.role.startsWith('gateway'));
  for (const p of gw) process.kill(p.pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 300));
  const sum: NatsCounts = { writes: 0, reads: 0, msgIn: 0, msgOut: 0, subjectsIn: {}, subjectsOut: {} };
  for (const p of gw) {
    const c = JSON.parse(readFileSync(join(t.c.dir, `nats-${p.pid}.json`), 'utf8')) as NatsCounts;
    sum.writes += c.writes;
    sum.reads += c.reads;
    sum.msgIn += c.msgIn;
    sum.msgOut += c.msgOut;
    for (const k of ['subjectsIn', 'subjectsOut'] as const) for (const [s, n] of Object.entries(c[k])) sum[k][s] = (sum[k][s] ?? 0) + n;
  }
  return sum;
}
const diffCounts = (a: NatsCounts, b: NatsCounts, into: NatsCounts) => {
  into.writes += b.writes - a.writes;
  into.reads += b.reads - a.reads;
  into.msgIn += b.msgIn - a.msgIn;
  into.msgOut += b.msgOut - a.msgOut;
  for (const k of ['subjectsIn', 'subjectsOut'] as const) for (const [s, n] of Object.entries(b[k])) into[k][s] = (into[k][s] ?? 0) + n - (a[k][s] ?? 0);
};

/** PERF=1: each target's gateway processes under perf over one window; on-CPU us per request by object and by symbol. */
async function perfs(): Promise<void> {
  const bySym: Record<string, Record<string, number>> = {}, byDso: Record<string, Record<string, number>> = {};
  for (const t of targetsUp) {
    const gw = t.procs.filter((p) => p.role.startsWith('gateway')).map((p) => p.pid);
    const data = join(t.c.dir, 'perf.data');
    const rec = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(PERF_HZ), '-o', data, '-p', gw.join(',')], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const done = await paced(t, Number(secsArg));
    const ended = new Promise((r) => rec.once('exit', r));
    rec.kill('SIGINT');
    await ended;
    const per = (n: number) => +((n * 1e6) / PERF_HZ / done).toFixed(2);
    const read = (sort: string) => {
      const out: Record<string, number> = {};
      const text = execFileSync('perf', ['report', '-i', data, '--stdio', '--no-children', '--sort', sort, '-F', 'sample,' + sort], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
      for (const line of text.split('\n')) {
        const m = /^\s*(\d+)\s+(.*\S)\s*$/.exec(line);
        if (!m || line.startsWith('#')) continue;
        const key = m[2]!.replace(/^\[[.k]\]\s+/, '').replace(/\s+/g, ' ');
        out[key] = (out[key] ?? 0) + per(Number(m[1]));
      }
      out['(requests)'] = done;
      return out;
    };
    bySym[t.label] = read('sym');
    byDso[t.label] = read('dso');
  }
  const labels = Object.keys(bySym);
  const show = (m: Record<string, Record<string, number>>, top: number) => {
    const gap = (k: string) => (m[labels[labels.length - 1]!]![k] ?? 0) - (m[labels[0]!]![k] ?? 0);
    const keys = [...new Set(labels.flatMap((l) => Object.keys(m[l]!)))].sort((x, y) => Math.abs(gap(y)) - Math.abs(gap(x)));
    const total = (l: string) => Object.entries(m[l]!).reduce((s, [k, v]) => s + (k === '(requests)' ? 0 : v), 0).toFixed(1);
    console.log(`on-CPU us per request: ${labels.map((l) => `${l} ${total(l)}`).join(', ')}`);
    for (const k of keys.slice(0, top)) console.log(`${labels.map((l) => (m[l]![k] ?? 0).toFixed(1).padStart(8)).join(' ')}  ${k.slice(0, 140)}`);
  };
  show(byDso, 15);
  show(bySym, Number(process.env.TOP ?? 60));
}

/** The ABBA blocks: each target's CPU, sleeps, preemptions, I/O calls, faults and admissions per request, raw and less idle. */
async function blocks(): Promise<void> {
  // idle CPU per process, all over the same window
  const i0 = targetsUp.map(snap);
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const i1 = targetsUp.map(snap);
  const idle = targetsUp.map((_, k) => i1[k]!.cpu.map((x, j) => (x - i0[k]!.cpu[j]!) / ((i1[k]!.at - i0[k]!.at) / 1000)));
  const zeros = (t: Target) => t.procs.map(() => 0);
  const acc = targetsUp.map((t) => ({
    done: 0, wall: 0, cpu: zeros(t), main: zeros(t), wakes: zeros(t), pre: zeros(t), flt: zeros(t), sys: zeros(t),
    threads: t.procs.map(() => ({}) as Record<string, number>), by: {} as Record<string, number>, pstat: {} as Record<string, number>,
    nats: { writes: 0, reads: 0, msgIn: 0, msgOut: 0, subjectsIn: {}, subjectsOut: {} } as NatsCounts,
    counts: Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<string, number>,
  }));
  const nBlocks = Number(blocksArg);
  for (let b = 0; b < nBlocks; b++) {
    for (const k of b % 2 ? [...targetsUp.keys()].reverse() : [...targetsUp.keys()]) {
      const t = targetsUp[k]!, a = acc[k]!;
      const c0 = await counters(t.c.base);
      const n0 = await natsCounts(t);
      const stat = PSTAT ? perfStat(t) : undefined;
      const s0 = snap(t);
      const done = await paced(t, Number(secsArg), a.by);
      const s1 = snap(t);
      if (stat) for (const [ev, n] of Object.entries(await stat())) a.pstat[ev] = (a.pstat[ev] ?? 0) + n;
      const n1 = await natsCounts(t);
      const c1 = await counters(t.c.base);
      if (n0 && n1) diffCounts(n0, n1, a.nats);
      a.done += done;
      a.wall += (s1.at - s0.at) / 1000;
      t.procs.forEach((_, j) => {
        for (const f of ['cpu', 'main', 'wakes', 'pre', 'flt', 'sys'] as const) a[f][j]! += s1[f][j]! - s0[f][j]!;
        for (const [n, ms] of Object.entries(s1.threads[j]!)) a.threads[j]![n] = (a.threads[j]![n] ?? 0) + ms - (s0.threads[j]![n] ?? 0);
      });
      for (const c of COUNTERS) a.counts[c]! += c1[c]! - c0[c]!;
    }
  }
  const out = targetsUp.map((t, k) => {
    const a = acc[k]!;
    const per = (x: number, scale = 1) => +((x * scale) / a.done).toFixed(1);
    const per2 = (x: number) => +(x / a.done).toFixed(2);
    const procs = t.procs.map((p, j) => ({
      role: p.role, pid: p.pid, rawUsReq: per(a.cpu[j]!, 1000), usReq: per(a.cpu[j]! - idle[k]![j]! * a.wall, 1000), idleMsPerS: +idle[k]![j]!.toFixed(1),
      mainUsReq: per(a.main[j]!, 1e-3), wakesPerReq: per2(a.wakes[j]!), ioCallsPerReq: per2(a.sys[j]!), preemptsPerReq: per2(a.pre[j]!), faultsPerReq: per2(a.flt[j]!),
      threadsUsReq: Object.fromEntries(Object.entries(a.threads[j]!).filter(([, ms]) => ms > 0).map(([n, ms]) => [n, per(ms, 1000)])),
    }));
    const gw = procs.filter((p) => p.role.startsWith('gateway'));
    const sumOf = (f: 'rawUsReq' | 'usReq' | 'mainUsReq' | 'wakesPerReq' | 'ioCallsPerReq' | 'preemptsPerReq' | 'faultsPerReq') => +gw.reduce((s, p) => s + p[f], 0).toFixed(2);
    const perSubject = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).filter(([, n]) => n > 0).sort((x, y) => y[1] - x[1]).map(([s, n]) => [s, +(n / a.done).toFixed(4)]));
    return {
      target: t.label, workers: t.workers, reqPerS: +(a.done / a.wall).toFixed(1), served: a.done, servedBy: a.by, admissions: a.counts,
      gateway: { rawUsReq: sumOf('rawUsReq'), usReq: sumOf('usReq'), mainUsReq: sumOf('mainUsReq'), wakesPerReq: sumOf('wakesPerReq'), ioCallsPerReq: sumOf('ioCallsPerReq'), preemptsPerReq: sumOf('preemptsPerReq'), faultsPerReq: sumOf('faultsPerReq') },
      ...(PSTAT ? { perfStatPerReq: Object.fromEntries(Object.entries(a.pstat).map(([ev, n]) => [ev, +(n / a.done).toFixed(3)])) } : {}),
      ...(NATS ? { natsPerReq: { writes: per2(a.nats.writes), reads: per2(a.nats.reads), msgIn: per2(a.nats.msgIn), msgOut: per2(a.nats.msgOut), subjectsIn: perSubject(a.nats.subjectsIn), subjectsOut: perSubject(a.nats.subjectsOut) } } : {}),
      procs,
    };
  });
  console.log(JSON.stringify({ rate: RATE, blocks: nBlocks, blockS: Number(secsArg), loadavg: readFileSync('/proc/loadavg', 'utf8').trim(), results: out }, null, 1));
}

const targetsUp: Target[] = [];
try {
  for (const t of targets) targetsUp.push(await start(t));
  for (let w = 0; w < WARM_S / 2; w++) for (const t of w % 2 ? [...targetsUp].reverse() : targetsUp) await paced(t, 2);
  await (PERF ? perfs() : blocks());
} finally {
  for (const t of targetsUp) for (const s of [t.send, ...(t.clients ?? []), ...(t.paced ?? [])]) s.close();
  await Promise.all(targetsUp.map((t) => t.c.stop()));
}
