/**
 * `dynamollm profile generate|run`: generate a profile from the model (src/model) or measure one against a
 * live endpoint (the paper's profiler, src/telemetry/profiler.ts).
 */
import type { Command } from 'commander';
import type { ExitCode } from '../program.ts';
import { registerGenerate } from './profile-generate.ts';
import { registerRun } from './profile-run.ts';

export function register(cmd: Command, exit: ExitCode): void {
  registerGenerate(cmd.command('generate').description('generate a profile from the performance and power model (modelled)'), exit);
  registerRun(cmd.command('run').description('measure a profile against a live OpenAI-compatible engine'), exit);
}
