/**
 * A --config file its schema refuses is a usage error wherever a command loads one (src/cli/program.ts): exit 2 with
 * the schema's message naming the key, as a file that is not YAML at all; nothing starts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';

const dir = mkdtempSync(join(tmpdir(), 'cli-config-errors-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
/** bad configs, each with what the message must name */
const BAD: [string, string, RegExp][] = [
  ['servers.yaml', 'servers: 3\n', /servers/],
  ['port.yaml', 'gateway:\n  port: "abc"\n', /gateway\.port/],
  ['typo.yaml', 'gatewy:\n  port: 8001\n', /gatewy/],
  ['key.yaml', 'gateway:\n  apiKeys: ["short"]\n', /at least 8 characters/],
  ['liveness.yaml', 'liveness:\n  suspectAfterMs: 5000\n  deadAfterMs: 3000\n', /liveness|suspectAfterMs|deadAfterMs/],
  ['syntax.yaml', 'model: [unclosed\n', /not valid YAML/],
];

/** `dynamollm <command> ARGS` as src/cli/main.ts runs it: its exit code and stderr. */
async function run(command: 'up' | 'chaos' | 'simulate', argv: string[]): Promise<{ code: number; err: string }> {
  const mod = (await import(`../../src/cli/commands/${command}.ts`)) as { register: (c: Command, e: ExitCode) => void };
  const exit = new ExitCode();
  const program = configure(new Command('dynamollm'));
  mod.register(program.command(command), exit);
  const code = await runProgram(program, [command, ...argv], exit);
  return { code, err: stderr.mock.calls.map((c: unknown[]) => String(c[0])).join('') };
}

let stderr: { mock: { calls: unknown[][] }; mockRestore: () => void };
beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(() => stderr.mockRestore());

describe('a bad --config exits 2 with the schema\'s message', () => {
  for (const [name, text, names] of BAD) {
    it(`up --config ${name}`, async () => {
      const { code, err } = await run('up', ['--config', file(name, text)]);
      expect(code).toBe(2);
      expect(err).toMatch(names);
      expect(err).not.toMatch(/run with --verbose/);
    });
    it(`chaos --config ${name}`, async () => {
      const { code, err } = await run('chaos', ['--config', file(name, text), '--duration', '1']);
      expect(code).toBe(2);
      expect(err).toMatch(names);
    });
  }

  it('simulate --config with a cluster-schema error', async () => {
    const { code, err } = await run('simulate', ['--config', file('sim.yaml', 'servers: 3\n'), '--trace', 'synth:conversation:0.01:1', '--policy', 'dynamollm', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '2']);
    expect(code).toBe(2);
    expect(err).toMatch(/servers/);
  });
});
