/**
 * The child's side of a supervisor's liveness watchdog (src/policy/watchdog.ts): a process started with env
 * DYNAMOLLM_LIVENESS_FILE writes a beat to that file every DYNAMOLLM_LIVENESS_BEAT_MS (default 500 ms) from a timer of
 * its own event loop: its pid and a count, so each beat differs from the last. The supervisor reads the file at each
 * probe; a process stopped (SIGSTOP) or whose event loop is stuck writes nothing, and is killed once it missed the
 * watchdog's probes in a row. A file, not a pipe or an IPC channel: a node agent's instance managers outlive it and
 * are adopted by its successor (src/runtime/adoption.ts), which reads the same file; and no NATS is involved (an
 * outage of NATS must not look like every process hanging).
 *
 * The file is opened once and each beat overwrites its start in place (one pwrite: no open, truncate and close every
 * beat, and no read of the supervisor ever finds it empty); the beat only grows, so nothing of an earlier one is left.
 * A write that fails opens the file again at the next beat.
 *
 * The variables are removed from this process's environment once read: a process it starts (a gateway's workers,
 * an instance's engine) does not beat for it.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export const LIVENESS_FILE_ENV = 'DYNAMOLLM_LIVENESS_FILE';
export const LIVENESS_BEAT_ENV = 'DYNAMOLLM_LIVENESS_BEAT_MS';

let started = false;

/** Starts the beat when the environment names a file (once per process); returns whether it beats. */
export function startLivenessBeat(env: NodeJS.ProcessEnv = process.env): boolean {
  const file = env[LIVENESS_FILE_ENV];
  const every = Number(env[LIVENESS_BEAT_ENV]) || 500;
  delete env.DYNAMOLLM_LIVENESS_FILE;
  delete env.DYNAMOLLM_LIVENESS_BEAT_MS;
  if (!file || started) return started;
  started = true;
  let n = 0;
  let fd: number | undefined;
  const beat = () => {
    try {
      fd ??= openSync(file, 'w');
      writeSync(fd, `${process.pid} ${++n}\n`, 0);
    } catch {
      // the supervisor's directory is gone (it stopped): nobody reads the beat; a later beat opens the file again
      if (fd !== undefined) closeQuietly(fd);
      fd = undefined;
    }
  };
  beat();
  setInterval(beat, Math.max(50, every)).unref();
  return true;
}

startLivenessBeat();

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    /* closed already */
  }
}
