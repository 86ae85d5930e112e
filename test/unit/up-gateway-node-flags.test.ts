/**
 * `dynamollm up` starts each gateway process with the node flags of DYNAMOLLM_GATEWAY_NODE_FLAGS
 * (actors/gateway/node-flags.ts) before the CLI's module, and no other child with them. NATS is not started (a stub
 * handle) and the supervisor only records the children it is given.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';
import type { ChildSpec } from '../../src/runtime/supervisor.ts';
import { cliArgs } from '../../src/runtime/code-path.ts';

const given: ChildSpec[] = [];
vi.mock('../../src/runtime/nats-launcher.ts', async (importActual) => {
  const actual = await importActual<typeof import('../../src/runtime/nats-launcher.ts')>();
  return { ...actual, startOwnNats: () => Promise.resolve({ url: 'nats://127.0.0.1:1', started: true, stop: () => Promise.resolve() }) };
});
vi.mock('../../src/runtime/supervisor.ts', async (importActual) => {
  const actual = await importActual<typeof import('../../src/runtime/supervisor.ts')>();
  // a constructor that records the children and throws: up stops there, nothing started
  const Recording = function (o: { children: ChildSpec[] }) {
    given.push(...o.children);
    throw new Error('test: the supervisor records its children only');
  };
  return { ...actual, Supervisor: Recording };
});
const { register } = await import('../../src/cli/commands/up.ts');

const runDir = mkdtempSync(join(tmpdir(), 'up-node-flags-'));
afterAll(() => rmSync(runDir, { recursive: true, force: true }));
afterEach(() => {
  given.length = 0;
  delete process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS;
});

async function children(): Promise<ChildSpec[]> {
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const exit = new ExitCode();
    const program = configure(new Command('dynamollm'));
    register(program.command('up'), exit);
    await runProgram(program, ['up', '--run-dir', runDir, '--log-level', 'silent'], exit);
  } finally {
    stderr.mockRestore();
  }
  return [...given];
}
/** a child's node flags: its args before the CLI's (tsx's import and the module from source, the module from dist/). */
function flagsOf(c: ChildSpec): string[] {
  const args = c.args ?? [], cli = cliArgs();
  const at = args.findIndex((_, i) => cli.every((a, j) => args[i + j] === a));
  expect(at).toBeGreaterThanOrEqual(0);
  return args.slice(0, at);
}

describe('up: the gateway processes\' node flags', () => {
  it('starts every gateway process (the serving one and its standby) with DYNAMOLLM_GATEWAY_NODE_FLAGS before the CLI, no other child', async () => {
    process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS = ' --single-threaded-gc  --v8-pool-size=2 ';
    const all = await children();
    const gateways = all.filter((c) => c.name.startsWith('gateway-'));
    expect(gateways.map((c) => c.name)).toEqual(['gateway-0', 'gateway-0-standby']);
    for (const g of gateways) expect(flagsOf(g)).toEqual(['--single-threaded-gc', '--v8-pool-size=2']);
    for (const c of all.filter((c) => !c.name.startsWith('gateway-'))) expect(flagsOf(c), c.name).toEqual([]);
    // unset or empty: none
    for (const v of [undefined, '']) {
      given.length = 0;
      if (v === undefined) delete process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS;
      else process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS = v;
      expect((await children()).filter((c) => c.name.startsWith('gateway-')).map(flagsOf)).toEqual([[], []]);
    }
  });
});
