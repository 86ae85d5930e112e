/**
 * How to spawn one actor process: the `dynamollm actor <kind>` command (src/cli/commands/actor.ts), in the
 * form this process runs (compiled dist/, or source through tsx). The node agent starts its instance
 * managers this way, `up` its managers, the tests their actors: one path, as the systemd units and k8s.
 */
import { cliArgs } from '../../src/runtime/code-path.ts';

/** Flags of `dynamollm actor` itself; any other `--key value` becomes `--set key=value` (the kind's own settings). */
const OWN_FLAGS = new Set(['id', 'config', 'nats', 'user', 'password', 'pass', 'creds', 'nkey', 'tlscert', 'tlskey', 'tlsca', 'set', 'log-level', 'health']);

/** node argv for an actor: launchArgs('instance', ['--id', 'i0', '--config', F, '--pool', 'p', '--tp', '2', '--gpus', '0,1']). */
export function launchArgs(kind: string, args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m || OWN_FLAGS.has(m[1]!)) {
      out.push(a);
      continue;
    }
    const value = m[2] ?? args[++i];
    if (value === undefined) throw new Error(`launchArgs: --${m[1]} needs a value`);
    out.push('--set', `${m[1]}=${value}`);
  }
  return [...cliArgs(), 'actor', kind, ...out];
}
