/**
 * A supervised process tells its Supervisor (src/runtime/supervisor.ts) that it is ready, as s6's notification-fd:
 * the supervisor gives the child a pipe as file descriptor `DYNAMOLLM_READY_FD` and the child writes one line to it
 * once its start is done. The supervisor's restart backoff counts a death after that as the end of a stable run, not
 * a failed start (src/policy/restart-backoff.ts). Without the variable (not supervised, a test's own process) it does
 * nothing.
 *
 * The variable is read and removed from the environment when this module loads (src/cli/main.ts imports it first):
 * a process this one starts (a gateway's workers, whose descriptor 3 is their IPC channel) must not write to a
 * descriptor number it did not get from a supervisor.
 */
import { closeSync, writeSync } from 'node:fs';

export const READY_FD_ENV = 'DYNAMOLLM_READY_FD';

let fd: number | undefined = ((): number | undefined => {
  const raw = process.env[READY_FD_ENV];
  delete process.env.DYNAMOLLM_READY_FD;
  const n = Number(raw);
  return raw && Number.isInteger(n) && n > 2 ? n : undefined;
})();

/** Tell the supervisor this process is ready (once; later calls, and a supervisor gone, are no-ops). */
export function notifyReady(): void {
  if (fd === undefined) return;
  const at = fd;
  fd = undefined;
  try {
    writeSync(at, 'ready\n');
  } catch {
    // the supervisor is gone (EPIPE) or the descriptor was not ours: nobody to tell
  }
  try {
    closeSync(at);
  } catch {
    // closed already
  }
}
