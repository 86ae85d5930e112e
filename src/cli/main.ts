/**
 * `dynamollm` CLI entry. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `run(argv: string[]): Promise<number | undefined>` plus a one-line `summary`. Modules load lazily so
 * `dynamollm model predict` does not pay for NATS or HTTP imports.
 */
const COMMANDS: Record<string, string> = {
  up: 'up',
  replay: 'replay',
  status: 'status',
  top: 'top',
  events: 'events',
  telemetry: 'telemetry',
  simulate: 'simulate',
  model: 'model',
  profile: 'profile',
  fidelity: 'fidelity',
  'engine-emulator': 'engine-emulator',
  actor: 'actor',
  nats: 'nats',
};

interface CommandModule {
  run(argv: string[]): Promise<number | undefined>;
  summary?: string;
}

async function load(name: string): Promise<CommandModule> {
  return (await import(`./commands/${COMMANDS[name]}.ts`)) as CommandModule;
}

async function usage(): Promise<void> {
  const lines = ['usage: dynamollm <command> [options]', '', 'commands:'];
  for (const name of Object.keys(COMMANDS)) {
    let summary = '';
    try {
      summary = (await load(name)).summary ?? '';
    } catch {
      summary = '(unavailable)';
    }
    lines.push(`  ${name.padEnd(16)} ${summary}`);
  }
  lines.push('', 'Run `dynamollm <command> --help` for its options.');
  process.stdout.write(lines.join('\n') + '\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    await usage();
    return cmd ? 0 : 2;
  }
  if (!(cmd in COMMANDS)) {
    process.stderr.write(`dynamollm: unknown command '${cmd}'\n`);
    await usage();
    return 2;
  }
  const mod = await load(cmd);
  const code = await mod.run(rest);
  return typeof code === 'number' ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { name?: string; message?: string };
    process.stderr.write(`dynamollm: ${e?.name ?? 'Error'}: ${e?.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
