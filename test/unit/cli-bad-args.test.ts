/**
 * Impossible or malformed arguments are usage errors (src/cli/program.ts: exit 2 with one line naming the flag),
 * refused before the command does anything: no simulation runs, no request is sent, no process or cluster starts.
 */
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';
import { getModelSpec, tpDegreesOf } from '../../src/model/catalog.ts';

type Name = 'simulate' | 'replay' | 'model' | 'up' | 'engine-emulator';

/** `dynamollm <command> ARGS` as src/cli/main.ts runs it: its exit code, stdout and stderr. */
async function run(command: Name, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const mod = (await import(`../../src/cli/commands/${command}.ts`)) as { register: (c: Command, e: ExitCode) => void };
  const exit = new ExitCode();
  const program = configure(new Command('dynamollm'));
  mod.register(program.command(command), exit);
  const code = await runProgram(program, [command, ...argv], exit);
  const text = (s: typeof stderr) => s.mock.calls.map((c: unknown[]) => String(c[0])).join('');
  return { code, out: text(stdout), err: text(stderr) };
}

let stderr: { mock: { calls: unknown[][] }; mockRestore: () => void };
let stdout: { mock: { calls: unknown[][] }; mockRestore: () => void };
let fetchSpy: { mock: { calls: unknown[][] }; mockRestore: () => void };
beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  // replay must refuse before it probes the endpoint: any fetch is a failure of the test
  fetchSpy = vi.spyOn(globalThis, 'fetch').mockRejectedValue(new Error('no request may be sent'));
});
afterEach(() => {
  stderr.mockRestore();
  stdout.mockRestore();
  fetchSpy.mockRestore();
});

const SIM = ['--trace', 'synth:flat:1:5', '--model', 'llama2-70b', '--gpu', 'h100', '--policy', 'dynamollm', '--servers', '2', '--duration-s', '60', '--fidelity', 'fluid'];
const with_ = (base: string[], flag: string, value: string): string[] => {
  const i = base.indexOf(flag);
  return i >= 0 ? [...base.slice(0, i + 1), value, ...base.slice(i + 2)] : [...base, flag, value];
};

/** [command, argv, what stderr must say] */
const BAD: [Name, string[], RegExp][] = [
  ['simulate', with_(SIM, '--servers', '0'), /--servers must be a whole number >= 1, got 0/],
  ['simulate', with_(SIM, '--servers', '-3'), /--servers must be a whole number >= 1, got -3/],
  ['simulate', with_(SIM, '--servers', '2.5'), /--servers must be a whole number >= 1, got 2\.5/],
  ['simulate', with_(SIM, '--slo-scale', '0'), /--slo-scale must be > 0, got 0/],
  ['simulate', with_(SIM, '--rate-scale', '-1'), /--rate-scale must be > 0, got -1/],
  ['simulate', with_(SIM, '--gpu-hour-price', '-1'), /--gpu-hour-price must be >= 0, got -1/],
  ['replay', ['--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--speed', '0'], /--speed must be > 0, got 0/],
  ['replay', ['--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--speed', '-1'], /--speed must be > 0, got -1/],
  ['replay', ['--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--url', 'notaurl'], /--url must be an http:\/\/ or https:\/\/ URL, got 'notaurl'/],
  ['replay', ['--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--limit', '-2'], /--limit must be a whole number >= 1, got -2/],
  ['model', ['predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '4', '--batch', '8', '--context', '-5'], /--context must be a whole number >= 1, got -5/],
  ['model', ['predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '4', '--batch', '8', '--context', '512', '--clock', '50'], /--clock must be within h100's SM clock range 345\.\.1980 MHz, got 50/],
  ['model', ['predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '3', '--batch', '8', '--context', '512'], /--tp must be one of 1, 2, 4, 8 for llama2-70b \(64 attention heads/],
  ['model', ['predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '8', '--batch', '100000', '--context', '100000000'], /over the \d+-token KV capacity of llama2-70b on 8 h100/],
  ['engine-emulator', ['--model', 'llama2-70b', '--tp', '3', '--port', '0'], /--tp must be one of 1, 2, 4, 8 for llama2-70b/],
  ['engine-emulator', ['--model', 'llama2-70b', '--tp', '1', '--port', '0'], /weights leave no KV cache room on 1 h100/],
  ['up', ['--log-level', 'loud'], /--log-level must be one of trace, debug, info, warn, error, fatal, silent, got 'loud'/],
  ['up', ['--ready-timeout', '-1'], /--ready-timeout must be > 0, got -1/],
];

describe('bad arguments exit 2 with a message naming the flag, before anything runs', () => {
  for (const [command, argv, says] of BAD) {
    it(`${command} ${argv.join(' ')}`, async () => {
      const { code, out, err } = await run(command, argv);
      expect(err).toMatch(says);
      expect(code).toBe(2);
      expect(err).not.toMatch(/run with --verbose|StepBatch/);
      expect(out).toBe('');
      expect(fetchSpy.mock.calls).toEqual([]);
    });
  }

  it('model predict still answers within the KV capacity, at a TP the heads divide', async () => {
    const { code, out } = await run('model', ['predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '8', '--batch', '16', '--context', '1024', '--json']);
    expect(code).toBe(0);
    const r = JSON.parse(out) as { tp: number; tbtMs: number; kvCapacityTokens: number };
    expect(r.tp).toBe(8);
    expect(r.tbtMs).toBeGreaterThan(0);
    expect(r.kvCapacityTokens).toBeGreaterThan(16 * 1024);
  });

  it("TP degrees follow the model's heads (vLLM: heads, and KV heads split or replicated, evenly)", () => {
    expect(tpDegreesOf(getModelSpec('llama2-70b'))).toEqual([1, 2, 4, 8]);
    expect(tpDegreesOf(getModelSpec('starcoder2-7b'))).toEqual([1, 2, 4]); // 36 heads
    expect(tpDegreesOf(getModelSpec('phi3-medium'))).toEqual([1, 2]); // 10 KV heads
  });
});
