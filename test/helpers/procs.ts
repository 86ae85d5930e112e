/**
 * Processes of one test suite. Several suites (and several engineers' runs) share this machine and start
 * actors with the same ids (`--id pool-all-n0-g0x1`), so a process found by its command line alone may be
 * another suite's: a suite looks for its processes only among the descendants of the ones it started.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** pid -> command line of every descendant of `roots` (the roots included). */
export function descendants(roots: readonly number[]): Map<number, string> {
  const table = execFileSync('ps', ['-eo', 'pid=,ppid=,args=']).toString();
  const children = new Map<number, { pid: number; args: string }[]>();
  const all = new Map<number, string>();
  for (const line of table.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const ppid = Number(m[2]);
    all.set(pid, m[3]!);
    const list = children.get(ppid) ?? [];
    list.push({ pid, args: m[3]! });
    children.set(ppid, list);
  }
  const out = new Map<number, string>();
  const stack = roots.filter((p) => all.has(p));
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (out.has(pid)) continue;
    out.set(pid, all.get(pid)!);
    for (const c of children.get(pid) ?? []) stack.push(c.pid);
  }
  return out;
}

/** The pids, among the descendants of `roots`, whose command line contains `pattern`, in ascending order. */
export function suitePids(roots: readonly number[], pattern: string): number[] {
  return [...descendants(roots)].filter(([pid, args]) => args.includes(pattern) && pid !== process.pid).map(([pid]) => pid).sort((a, b) => a - b);
}

/**
 * SIGKILL `roots` and every process under them, found before any dies: once a parent is gone its children are
 * re-parented and can no longer be told apart from another suite's (a supervised instance manager would then
 * drain on its own for seconds, still publishing its status).
 */
export function killTree(roots: readonly number[]): number[] {
  const pids = [...descendants(roots).keys()].filter((p) => p !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids;
}

/** The pids of the children of `pid` now ([] when it has none or is gone). */
export function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').map(Number).filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** The command line of `pid`, its arguments joined by spaces ('' when it is gone). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
