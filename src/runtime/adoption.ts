/**
 * Adoption of a supervised child whose supervisor died: a node agent's instance managers outlive the node agent.
 *
 * A node agent that dies (a crash, SIGKILL, OOM) is restarted by its own supervisor within about a second, while
 * the instance managers it started are healthy and serving: draining them with it would take the server's whole
 * capacity away for an instance-manager and engine start (tens of seconds for a real vLLM). So such a child is
 * started adoptable: its supervisor keeps a record per child (`<dir>/<name>.json`: the child's pid and the pid of
 * the supervisor that watches it), and the child's own watchdog (src/runtime/actor.ts) tolerates its supervisor's
 * death for `ADOPT_WAIT_MS`: a new supervisor that finds the record and the child alive adopts it (Supervisor.adopt,
 * which rewrites the record with its own pid), and the child goes on; a child nobody adopts by then drains and exits
 * (as an unadoptable child does at once), so a supervisor that is not coming back leaves no orphan serving stale state.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** env of an adoptable child: the path of its adoption record. */
export const ADOPT_FILE_ENV = 'DYNAMOLLM_ADOPT_FILE';

/** how long a child whose supervisor died waits to be adopted before it drains, ms. */
export const ADOPT_WAIT_MS = 15_000;

/** A child's adoption record. */
export interface AdoptionRecord {
  v: 1;
  /** the child's name in its supervisor (an instance id). */
  name: string;
  pid: number;
  /** the supervisor that watches it now. */
  supervisorPid: number;
  /** what the supervisor needs to supervise it again (a node agent: pool, TP, GPUs). */
  meta: Record<string, unknown>;
}

/**
 * The directory of the records of one supervisor's children, the same across its restarts: `key` names the supervisor
 * (a node agent: its cluster, NATS servers and node id, so two clusters on one host never share it).
 */
export function adoptionDir(key: string, base = tmpdir()): string {
  const dir = join(base, 'dynamollm-adopt', createHash('sha256').update(key).digest('hex').slice(0, 24));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** The record's path for child `name` (a name the supervisor chose: [A-Za-z0-9_.-]). */
export function recordPath(dir: string, name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name)) throw new RangeError(`adoption record name ${JSON.stringify(name)} is not a plain file name`);
  return join(dir, `${name}.json`);
}

/** Writes a record (atomically: a reader never sees half of it). */
export function writeRecord(dir: string, rec: AdoptionRecord): void {
  const path = recordPath(dir, rec.name);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec), { mode: 0o600 });
  renameSync(tmp, path);
}

export function removeRecord(dir: string, name: string): void {
  rmSync(recordPath(dir, name), { force: true });
}

/** The record at `path`, or undefined (absent, unreadable, not a record). */
export function readRecord(path: string): AdoptionRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<AdoptionRecord>;
    if (r.v !== 1 || typeof r.name !== 'string' || !Number.isInteger(r.pid) || !Number.isInteger(r.supervisorPid)) return undefined;
    return { v: 1, name: r.name, pid: r.pid!, supervisorPid: r.supervisorPid!, meta: typeof r.meta === 'object' && r.meta !== null ? r.meta : {} };
  } catch {
    return undefined;
  }
}

/** Every record in `dir`. */
export function readRecords(dir: string): AdoptionRecord[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  return names.flatMap((f) => readRecord(join(dir, f)) ?? []);
}

/** Whether process `pid` runs (and is not a zombie, where /proc says so). */
export function pidAlive(pid: number): boolean {
  if (!(pid > 1)) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (macOS): kill(0) said it is there
  }
}

/** Whether `pid` is still the child the record names (its command line names it), not a pid reused since; true where /proc cannot tell. */
export function pidIsChild(pid: number, name: string): boolean {
  let cmd: string[];
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return process.platform !== 'linux' && pidAlive(pid);
  }
  return cmd.includes(name);
}

/**
 * The child's side (its watchdog, once a second): whether a supervisor watches it now. Its first one while it is
 * its parent (`ppid === startedBy`); after that, the one its record names when that one runs and is not the first
 * (a restarted supervisor that adopted it).
 */
export function supervised(o: { ppid: number; startedBy: number; pid: number; record?: AdoptionRecord; alive?: (pid: number) => boolean }): boolean {
  if (o.ppid === o.startedBy) return true;
  const r = o.record;
  return r !== undefined && r.pid === o.pid && r.supervisorPid !== o.startedBy && r.supervisorPid !== o.pid && (o.alive ?? pidAlive)(r.supervisorPid);
}
