/**
 * A lease record's process identity (src/runtime/lease.ts): the process that wrote it, and whether that process is
 * gone (a restart under the same id takes its lease at once).
 */
import { readFileSync, readlinkSync } from 'node:fs';

/** This process as `<boot id>/<pid namespace>/<pid>` (Linux); undefined where /proc does not tell. */
export function processName(): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const ns = readlinkSync('/proc/self/ns/pid');
    if (!boot || !ns || boot.includes('/') || ns.includes('/')) return undefined;
    return `${boot}/${ns}/${process.pid}`;
  } catch {
    return undefined;
  }
}

/**
 * True only when `proc` names another process of this boot and pid namespace (`self`, processName's) that does not
 * exist any more. A pid taken again by another process reads as alive: the lease then waits for its expiry.
 */
export function processGone(proc: string, self: string): boolean {
  const [boot, ns, pid] = proc.split('/');
  const [myBoot, myNs, myPid] = self.split('/');
  if (boot !== myBoot || ns !== myNs || pid === myPid || !/^[1-9]\d*$/.test(pid ?? '')) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
