/**
 * The command-line plumbing every `dynamollm` command shares (commander underneath):
 * - exit codes: 0 ok, 1 runtime failure (an error while running: a server unreachable, a failed check),
 *   2 usage error (unknown command or option, a missing or bad argument, an unreadable input file, a config file its
 *   schema refuses: ConfigError, with the schema's message);
 * - did-you-mean suggestions for unknown commands and options (commander's);
 * - errors are one line `dynamollm <command>: <message>`; the stack only with --verbose or env DEBUG set;
 * - `--json` means one thing wherever it is offered: the command's result as JSON on stdout, in place of
 *   the human-readable text (progress and notes stay on stderr).
 */
import { Command, CommanderError, Option } from 'commander';
import { UsageError } from './args.ts';
import { UnknownIdError } from '../model/catalog.ts';
import { ConfigError } from '../../actors/common/config.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The exit code an action reports (actions that only succeed or throw need not call it). */
export class ExitCode {
  code = EXIT_OK;
}

/** A command's settings that subcommands inherit: our error output, exit override, strict arguments. */
export function configure(cmd: Command): Command {
  return cmd
    .exitOverride()
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .configureOutput({ outputError: (str, write) => write(`dynamollm: ${str.replace(/^error: /, '')}`) });
}

/** `--json` with the one meaning it has everywhere. */
export const jsonOption = (note = '') => new Option('--json', `print the result as JSON on stdout instead of text${note}`);

/** The NATS connection flags of every command that talks to the cluster (src/runtime/nats-settings.ts). */
export function natsOptions(cmd: Command): Command {
  return cmd
    .option('--nats <url>', 'NATS server URL(s), comma-separated (env NATS_URL; default nats://127.0.0.1:4222)')
    .option('--user <user>', 'NATS user (env NATS_USER)')
    .option('--password <password>', 'NATS password (env NATS_PASSWORD)')
    .addOption(new Option('--pass <password>', 'alias of --password').hideHelp())
    .option('--creds <file>', 'NATS credentials file (env NATS_CREDS)')
    .option('--nkey <file>', 'NATS nkey seed file (env NATS_NKEY)')
    .option('--tlscert <file>', 'TLS client certificate (env NATS_CERT)')
    .option('--tlskey <file>', 'TLS client key (env NATS_KEY)')
    .option('--tlsca <file>', 'TLS CA bundle (env NATS_CA)');
}

const EXIT_CODES_HELP = '\nExit codes: 0 ok, 1 runtime failure, 2 usage error.';

/** The action wrapper: its return value (a number) becomes the exit code. */
export function action<A extends unknown[]>(exit: ExitCode, fn: (...args: A) => Promise<number | undefined> | number | undefined) {
  return async (...args: A): Promise<void> => {
    const r = await fn(...args);
    if (typeof r === 'number') exit.code = r;
  };
}

export function verboseErrors(argv: string[]): boolean {
  return argv.includes('--verbose') || (process.env.DEBUG !== undefined && process.env.DEBUG !== '' && process.env.DEBUG !== '0');
}

/** One line naming the error; nested causes (e.g. fetch's ECONNREFUSED) are appended. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const msg = e instanceof Error ? e.message : typeof e === 'string' ? e : JSON.stringify(e);
    if (msg && !parts.some((p) => p.includes(msg))) parts.push(msg);
    e = e instanceof Error ? (e as { cause?: unknown }).cause : undefined;
  }
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}

/**
 * Parses argv with `program`, runs the action, and returns the exit code (never calls process.exit).
 * `name` prefixes error lines (`dynamollm up: ...`).
 */
export async function runProgram(program: Command, argv: string[], exit: ExitCode): Promise<number> {
  const addExitCodes = (c: Command) => {
    c.addHelpText('after', EXIT_CODES_HELP);
    c.commands.forEach(addExitCodes);
  };
  addExitCodes(program);
  const verbose = verboseErrors(argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exit.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // commander.help: `help X` (0), or help printed because a subcommand was missing (1 from commander: a usage error)
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      const j = argv.indexOf('--json');
      if (err.code === 'commander.excessArguments' && j >= 0 && argv[j + 1] !== undefined && !argv[j + 1]!.startsWith('-')) {
        process.stderr.write(`(--json takes no value: it prints the result as JSON on stdout; --out FILE writes it to a file)\n`);
      }
      return EXIT_USAGE;
    }
    const cmd = commandPath(program, argv);
    if (err instanceof UsageError || err instanceof UnknownIdError || err instanceof ConfigError) {
      process.stderr.write(`dynamollm${cmd}: ${describeError(err)}\n(see 'dynamollm${cmd} --help')\n`);
      if (verbose) process.stderr.write(`${(err as Error).stack}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`dynamollm${cmd}: ${describeError(err)}\n`);
    if (verbose && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    else process.stderr.write(`(run with --verbose for details)\n`);
    return EXIT_FAILURE;
  }
}

/** ' model predict' for argv ['model', 'predict', '--tp', ...]: the command words the program knows. */
function commandPath(program: Command, argv: string[]): string {
  let cmd: Command = program;
  let path = program.name() && program.name() !== 'dynamollm' ? ` ${program.name()}` : '';
  for (const a of argv) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    path += ` ${sub.name()}`;
    cmd = sub;
  }
  return path;
}
