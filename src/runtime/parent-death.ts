/**
 * A child process that must not outlive the process that started it: an engine (vLLM holds its GPUs' memory and
 * its port until it exits) or a private nats-server (it holds the cluster's credentials and state). Exit handlers
 * do not run when the parent is SIGKILLed or killed for memory, and a real `vllm serve` does not watch its stdin,
 * so the kernel has to do it: on Linux the child is started through util-linux `setpriv --pdeathsig SIG`, which
 * sets PR_SET_PDEATHSIG and execs the program (the same pid, no process in between). The kernel then sends SIG to
 * the child when its parent dies, however it dies.
 *
 * Where there is no setpriv that knows --pdeathsig (macOS, an image without util-linux or with one older than 2.33:
 * probed once by running `setpriv --pdeathsig TERM -- true`) or the program cannot be found (its spawn then
 * fails with ENOENT as before, and the caller's message says what is missing), the command is left as it is and
 * `tied` is false.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

export interface TiedCommand {
  command: string;
  args: string[];
  /** true when the child gets `signal` from the kernel once this process dies. */
  tied: boolean;
}

export interface TieOptions {
  /** the signal the child gets; default SIGTERM (vLLM and nats-server shut down on it). */
  signal?: NodeJS.Signals;
  /** defaults: process.platform, process.env.PATH; injectable for tests. */
  platform?: NodeJS.Platform;
  path?: string;
}

/** The executable `command` names: itself when it has a slash, else the first match on `path`; undefined if none. */
export function findExecutable(command: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = command.includes('/') ? [command] : path.split(delimiter).filter((d) => d && isAbsolute(d)).map((d) => join(d, command));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `command args` started so that the child gets `signal` when this process dies (see the module comment). */
export function tiedToParent(command: string, args: readonly string[], o: TieOptions = {}): TiedCommand {
  const untied = { command, args: [...args], tied: false };
  if ((o.platform ?? process.platform) !== 'linux') return untied;
  const path = o.path ?? process.env.PATH ?? '';
  const setpriv = findExecutable('setpriv', path);
  const program = findExecutable(command, path);
  if (!setpriv || !program || !pdeathsigWorks(setpriv)) return untied;
  return { command: setpriv, args: ['--pdeathsig', o.signal ?? 'SIGTERM', '--', program, ...args], tied: true };
}

const probed = new Map<string, boolean>();

/** Whether this setpriv sets a parent-death signal (util-linux >= 2.33); probed once per binary. */
function pdeathsigWorks(setpriv: string): boolean {
  let ok = probed.get(setpriv);
  if (ok === undefined) {
    try {
      execFileSync(setpriv, ['--pdeathsig', 'TERM', '--', 'true'], { stdio: 'ignore', timeout: 5000 });
      ok = true;
    } catch {
      ok = false;
    }
    probed.set(setpriv, ok);
  }
  return ok;
}
