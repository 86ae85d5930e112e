/**
 * `dynamollm` CLI entry (commander; plumbing in ./program.ts). Each command lives in src/cli/commands/<name>.ts
 * and exports `register(cmd, exit)`, which declares its options and subcommands on `cmd` and sets its action.
 * Only the command named on the command line is loaded, so `dynamollm model predict` does not pay for NATS or
 * HTTP imports; the others are listed with the summary below.
 */
// first: marks the process's boot (an actor's start-up steps, src/runtime/startup.ts)
import '../runtime/startup.ts';
// second: a supervised process beats for its supervisor's liveness watchdog from its start (src/runtime/liveness-beat.ts)
import '../runtime/liveness-beat.ts';
// third: takes the supervisor's readiness descriptor out of the environment before anything can start a process
import '../runtime/ready-notify.ts';
import { Command } from 'commander';
import { configure, ExitCode, runProgram } from './program.ts';

interface CommandModule {
  register(cmd: Command, exit: ExitCode): void;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  up: { summary: 'start a local cluster: NATS, managers, emulated engines, gateway + dashboard', load: () => import('./commands/up.ts') },
  chaos: { summary: 'a local cluster under load while random actors and engines are SIGKILLed; a JSON report of what survived', load: () => import('./commands/chaos.ts') },
  replay: { summary: 'replay a request trace against the gateway and summarise latency, SLOs and energy', load: () => import('./commands/replay.ts') },
  status: { summary: 'one-shot cluster status: pools, instances, clocks, power, energy', load: () => import('./commands/status.ts') },
  top: { summary: 'live terminal view of pools, instances, clocks, power and energy', load: () => import('./commands/top.ts') },
  events: { summary: 'decision events: stored (--since 1h|SEQ) and live (--follow), by kind', load: () => import('./commands/events.ts') },
  telemetry: { summary: 'live telemetry of the cluster, pools and instances (--follow), optionally per request', load: () => import('./commands/telemetry.ts') },
  simulate: { summary: 'trace-driven cluster simulation: energy, power, latency and SLOs per policy', load: () => import('./commands/simulate.ts') },
  model: { summary: 'model predict: TBT, TTFT, power and J/token from the performance and power model', load: () => import('./commands/model.ts') },
  profile: { summary: 'profile generate (from the model) | profile run (measure a live endpoint)', load: () => import('./commands/profile.ts') },
  fidelity: { summary: "the model's cross-validated error against public data, the measured H200 slice, and the paper's tables", load: () => import('./commands/fidelity.ts') },
  'engine-emulator': { summary: 'run a vLLM-compatible emulated engine (HTTP API + batching core + emulated GPU)', load: () => import('./commands/engine-emulator.ts') },
  actor: { summary: 'run one actor process (gateway, cluster, pool, instance, node)', load: () => import('./commands/actor.ts') },
  nats: { summary: 'nats up: start the local NATS server when none is reachable', load: () => import('./commands/nats.ts') },
};

export const COMMAND_NAMES = Object.keys(COMMANDS);

/** The program with every command listed and `selected` (if any) fully declared. */
export async function buildProgram(selected: string | undefined, exit: ExitCode): Promise<Command> {
  const program = configure(new Command('dynamollm'))
    .description('Energy-aware control plane for LLM inference clusters (DynamoLLM)')
    .option('--verbose', 'print stack traces with errors (also env DEBUG=1)')
    .helpCommand('help [command]', 'show help for a command');
  for (const [name, c] of Object.entries(COMMANDS)) {
    const cmd = program.command(name).description(c.summary);
    if (name === selected) (await c.load()).register(cmd, exit);
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // the command word: the first argument that is not an option (`help X` selects X)
  const words = argv.filter((a) => !a.startsWith('-'));
  const selected = words[0] === 'help' ? words[1] : words[0];
  const exit = new ExitCode();
  const program = await buildProgram(selected !== undefined && selected in COMMANDS ? selected : undefined, exit);
  return runProgram(program, argv, exit);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`dynamollm: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
