/**
 * The datapath bench's CPU per token by thread (test/bench/datapath.bench.ts, the real-time run): each thread's
 * utime, stime and context switches from /proc/<pid>/task/<tid>/{stat,status}, at the idle window's ends and the
 * loaded window's, and the arithmetic over them: per thread, its idle rate, its CPU per token in the loaded window
 * (user and system apart), its marginal CPU per token (less its idle rate), and its voluntary (slept and woke) and
 * involuntary (preempted) context switches per token.
 *
 * A thread's label: `main` (tid = pid), its name where it has one of its own (the native data plane's thread is
 * `dp-relay`), else `node #k`, its rank among the process's other unnamed threads by tid (creation order: Node 20
 * starts V8's delayed-task thread, its platform workers and the inspector's signal thread at start, libuv's pool on
 * its first use).
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100;

/**
 * One thread's counters: its name (comm), user and system CPU ms (10-ms ticks), its time on a CPU in ms from the
 * scheduler's own clock (schedstat, ns: what the rows' totals use), voluntary and involuntary context switches.
 */
export interface ThreadCounters { comm: string; userMs: number; sysMs: number; runMs: number; vcs: number; nvcs: number }

/** A process's threads' counters by tid (empty once it is gone; a thread gone while read is left out). */
export function threadCounters(pid: number): Map<number, ThreadCounters> {
  const out = new Map<number, ThreadCounters>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const status = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      const sched = readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(Number(t), {
        comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')),
        userMs: (Number(f[11]) * 1000) / CLK_TCK,
        sysMs: (Number(f[12]) * 1000) / CLK_TCK,
        runMs: Number(sched.split(' ')[0]) / 1e6,
        vcs: Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0),
        nvcs: Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0),
      });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Each thread's label (the module's doc): `main`, its own name, or `node #k` by tid among the unnamed others. */
export function threadLabels(pid: number, threads: Map<number, ThreadCounters>): Map<number, string> {
  const labels = new Map<number, string>();
  let k = 0;
  for (const tid of [...threads.keys()].sort((a, b) => a - b)) {
    const comm = threads.get(tid)!.comm;
    labels.set(tid, tid === pid ? 'main' : comm !== 'node' ? comm : `node #${++k}`);
  }
  return labels;
}

/**
 * One thread's row: idle CPU ms per s; per token in the loaded window: CPU us (schedstat), its user and system shares
 * (the ticks' split of it), marginal us (less the idle rate), context switches.
 */
export interface ThreadRow { label: string; idleMsPerS: number; us: number; userUs: number; sysUs: number; marginalUs: number; vcsPerToken: number; nvcsPerToken: number }

/**
 * Per-thread rows of one process from four snapshots: the idle window's ends (`i0`, `i1`, `idleS` apart) and the loaded
 * window's (`l0`, `l1`, `wallS` apart, `tokens` streamed in it). A thread absent from the loaded window's snapshots is
 * left out; one absent from the idle window's counts as idle at 0. Rows of threads with no CPU and no switch in the
 * loaded window are left out; the busiest first.
 */
export function threadRows(pid: number, snaps: { i0: Map<number, ThreadCounters>; i1: Map<number, ThreadCounters>; l0: Map<number, ThreadCounters>; l1: Map<number, ThreadCounters> }, idleS: number, wallS: number, tokens: number): ThreadRow[] {
  const labels = threadLabels(pid, snaps.l1);
  const rows: ThreadRow[] = [];
  for (const [tid, b] of snaps.l0) {
    const a = snaps.l1.get(tid);
    if (!a) continue;
    const ib = snaps.i0.get(tid), ia = snaps.i1.get(tid);
    const idleMsPerS = ib && ia ? (ia.runMs - ib.runMs) / idleS : 0;
    const run = a.runMs - b.runMs, user = a.userMs - b.userMs, sys = a.sysMs - b.sysMs, vcs = a.vcs - b.vcs, nvcs = a.nvcs - b.nvcs;
    if (run === 0 && vcs + nvcs === 0) continue;
    const userShare = user + sys > 0 ? user / (user + sys) : 0;
    rows.push({
      label: labels.get(tid) ?? String(tid), idleMsPerS, us: (run * 1000) / tokens,
      userUs: (run * userShare * 1000) / tokens, sysUs: (run * (1 - userShare) * 1000) / tokens, marginalUs: ((run - idleMsPerS * wallS) * 1000) / tokens,
      vcsPerToken: vcs / tokens, nvcsPerToken: nvcs / tokens,
    });
  }
  return rows.sort((x, y) => y.us - x.us);
}

/** A markdown caption and table of a process's rows (threadRows), with their sums. */
export function threadTable(caption: string, rows: ThreadRow[]): string {
  const f = (x: number) => x.toFixed(2), f3 = (x: number) => x.toFixed(3);
  const all = rows.reduce((s, r) => ({ ...s, idleMsPerS: s.idleMsPerS + r.idleMsPerS, us: s.us + r.us, userUs: s.userUs + r.userUs, sysUs: s.sysUs + r.sysUs, marginalUs: s.marginalUs + r.marginalUs, vcsPerToken: s.vcsPerToken + r.vcsPerToken, nvcsPerToken: s.nvcsPerToken + r.nvcsPerToken }), { label: 'all threads', idleMsPerS: 0, us: 0, userUs: 0, sysUs: 0, marginalUs: 0, vcsPerToken: 0, nvcsPerToken: 0 });
  return [
    caption,
    '',
    '| thread | idle ms/s | us/token (user + system, split as the ticks) | marginal us/token | voluntary switches/token | involuntary/token |',
    '|---|---|---|---|---|---|',
    ...[...rows, all].map((r) => `| ${r.label} | ${f(r.idleMsPerS)} | ${f(r.us)} (${f(r.userUs)} + ${f(r.sysUs)}) | ${f(r.marginalUs)} | ${f3(r.vcsPerToken)} | ${f3(r.nvcsPerToken)} |`),
  ].join('\n');
}
