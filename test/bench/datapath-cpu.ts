/**
 * The datapath bench's CPU accounting (test/bench/datapath.bench.ts): each process's utime+stime from /proc, the
 * cluster's process tree split by role (its actor kind; a gateway's primary and workers apart; nats-server;
 * the engines), snapshots of every process's and its main thread's CPU, and the pure arithmetic over two snapshots:
 * each role's cores busy (CPU seconds per wall second) and CPU per request, and the engine-alone baseline taken twice.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100;

/** utime+stime of a process (of one of its threads with `tid`), ms (0 once it is gone). */
export function cpuMs(pid: number, tid?: number): number {
  try {
    const st = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

export const sum = (pids: number[]) => pids.reduce((a, p) => a + cpuMs(p), 0);

/** Voluntary context switches of a process's main thread (its event loop's waits that slept), 0 once it is gone. */
export function wakes(pid: number): number {
  try {
    return Number(/voluntary_ctxt_switches:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * A process's role from its command line (NUL-separated, as /proc/PID/cmdline) and its parent's role: `engine` (the
 * emulator), its actor kind, `nats-server`, or `up`; a gateway whose parent is a gateway (node:cluster forks its
 * workers with the primary's command line) is `gateway-worker`. (A replica's serving process and its standby share one
 * command line, both `gateway`: the role's busiest process is the serving one.)
 */
export function roleOf(cmd: string, parentRole?: string): string {
  if (cmd.includes('engine-emulator')) return 'engine';
  const argv = cmd.split('\0');
  const a = argv.indexOf('actor');
  const role = a >= 0 ? argv[a + 1] ?? '?' : cmd.includes('nats-server') ? 'nats-server' : 'up';
  if (role !== 'gateway') return role;
  return parentRole?.startsWith('gateway') ? 'gateway-worker' : 'gateway';
}

/** The processes of one measured target: engines, the control path (NATS included), the gateway's, and each one's role. */
export interface ProcTree { engines: number[]; control: number[]; gateway: number[]; roles: Map<number, string> }

/**
 * pid's descendants, split into engines (the emulator processes, role `engine`) and the rest (the control path, NATS
 * included), each with its role (roleOf; the parent of a `gateway-worker` is `gateway-primary`); the gateway's processes
 * among the control path's (its standby, its primary and workers included).
 */
export function tree(root: number): ProcTree {
  const out: ProcTree = { engines: [], control: [root], gateway: [], roles: new Map([[root, 'up']]) };
  for (const { pid, parent, cmd } of descendants(root)) {
    const role = roleOf(cmd, out.roles.get(parent));
    (role === 'engine' ? out.engines : out.control).push(pid);
    out.roles.set(pid, role);
    if (role === 'gateway-worker') out.roles.set(parent, 'gateway-primary');
    if (cmd.includes('actor\0gateway\0')) out.gateway.push(pid);
  }
  return out;
}

/** root's descendants from /proc, each after its parent (depth first), with its command line (NUL-separated; '' when it ended while read). */
export function descendants(root: number): { pid: number; parent: number; cmd: string }[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone */
    }
  }
  const out: { pid: number; parent: number; cmd: string }[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent) {
      if (pp !== p) continue;
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${c}/cmdline`, 'utf8');
      } catch {
        /* gone */
      }
      out.push({ pid: c, parent: p, cmd });
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** CPU ms of a process and of each of its threads (tid -> ms), at one moment. */
export interface ProcCpu { procMs: number; threadMs: Map<number, number> }
export type CpuSnapshot = Map<number, ProcCpu>;

/** The thread ids of a process (none once it is gone). */
function threadsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

export const cpuSnapshot = (pids: number[]): CpuSnapshot => new Map(pids.map((p) => [p, { procMs: cpuMs(p), threadMs: new Map(threadsOf(p).map((t) => [t, cpuMs(p, t)])) }]));

/** CPU ms of the whole host, busy (not idle or iowait) and in all, from /proc/stat (every CPU, whatever this process's affinity). */
export function hostCpuMs(): { busyMs: number; allMs: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const all = f.reduce((a, x) => a + x, 0);
  return { busyMs: ((all - f[3]! - f[4]!) * 1000) / CLK_TCK, allMs: (all * 1000) / CLK_TCK };
}

/** Each role's CPU ms in a snapshot, summed over its processes. */
export function msByRole(snap: CpuSnapshot, roles: Map<number, string>): Record<string, number> {
  const r: Record<string, number> = {};
  for (const [pid, { procMs }] of snap) r[roles.get(pid) ?? '?'] = (r[roles.get(pid) ?? '?'] ?? 0) + procMs;
  return r;
}

/** One role over a window: cores busy summed over its processes, its busiest process's and busiest thread's, CPU us per request. */
export interface RoleLoad { role: string; processes: number; cores: number; busiestCores: number; busiestThreadCores: number; usPerReq: number }

/** The most CPU ms one thread spent between two snapshots of a process (threads in both only). */
export function busiestThreadMs(before: Map<number, number>, after: Map<number, number>): number {
  let most = 0;
  for (const [tid, b] of before) {
    const a = after.get(tid);
    if (a !== undefined) most = Math.max(most, a - b);
  }
  return most;
}

/**
 * Each role's load between two snapshots over `wallS` seconds in which `requests` completed, busiest first. A process
 * absent from either snapshot (started or gone in the window) is left out.
 */
export function roleLoads(before: CpuSnapshot, after: CpuSnapshot, roles: Map<number, string>, wallS: number, requests: number): RoleLoad[] {
  const by = new Map<string, RoleLoad>();
  for (const [pid, b] of before) {
    const a = after.get(pid);
    if (!a) continue;
    const role = roles.get(pid) ?? '?';
    const r = by.get(role) ?? { role, processes: 0, cores: 0, busiestCores: 0, busiestThreadCores: 0, usPerReq: 0 };
    const ms = a.procMs - b.procMs, threadMs = busiestThreadMs(b.threadMs, a.threadMs);
    r.processes++;
    r.cores += ms / 1000 / wallS;
    r.usPerReq += (ms * 1000) / requests;
    r.busiestCores = Math.max(r.busiestCores, ms / 1000 / wallS);
    r.busiestThreadCores = Math.max(r.busiestThreadCores, threadMs / 1000 / wallS);
    by.set(role, r);
  }
  return [...by.values()].sort((x, y) => y.cores - x.cores);
}

/** A closed-loop window's load: its length, the requests completed, the host's busy cores, and each role's load. */
export interface WindowLoad { wallS: number; requests: number; hostCores: number; hostCpus: number; roles: RoleLoad[] }

/** A markdown caption and table of a window's load by role. */
export function loadTable(target: string, w: WindowLoad): string {
  const f = (x: number) => x.toFixed(2);
  return [
    `Closed loop, ${target}: ${f(w.wallS)} s, ${w.requests} requests (${f(w.requests / w.wallS)} req/s); the host ${f(w.hostCores)} of ${w.hostCpus} CPUs busy (/proc/stat, every process); by role, cores busy (CPU s per wall s, /proc utime+stime) and CPU us per request:`,
    '',
    '| role | processes | cores busy | busiest process | busiest thread | CPU us/request |',
    '|---|---|---|---|---|---|',
    ...w.roles.map((r) => `| ${r.role} | ${r.processes} | ${f(r.cores)} | ${f(r.busiestCores)} | ${f(r.busiestThreadCores)} | ${f(r.usPerReq)} |`),
  ].join('\n');
}

/**
 * The engine-alone throughput measured before and after the paths: their mean (the ratios' baseline), their spread
 * (|a - b| over the smaller) and, past `limit`, a warning that the baseline moved within the run.
 */
export function engineBaseline(before: number, after: number, limit = 0.2): { mean: number; spread: number; warning?: string } {
  const mean = (before + after) / 2, spread = Math.abs(before - after) / Math.min(before, after);
  return spread > limit
    ? { mean, spread, warning: `WARNING: the engine alone's closed-loop throughput moved ${(spread * 100).toFixed(0)}% within the run (${before.toFixed(2)} req/s before the paths, ${after.toFixed(2)} after; over ${(limit * 100).toFixed(0)}%): the host was not quiet, ratios against their mean are not robust` }
    : { mean, spread };
}
