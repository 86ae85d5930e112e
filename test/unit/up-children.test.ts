/**
 * The children `dynamollm up` supervises. Each gets a grace before SIGKILL that covers the shutdown bound of the actor
 * that child runs: the actor built as its process builds it (the kind, id, config file and settings of its command
 * line), its shutdownLimitMs(). A node agent's bound waits out its instance managers' drains and engines' stops (77 s), a
 * gateway's its drain delay and its streams' wait. Each gateway process starts with the node flags of
 * DYNAMOLLM_GATEWAY_NODE_FLAGS (actors/gateway/node-flags.ts) before the CLI's module, and no other child with them.
 * NATS is not started (a stub handle) and the supervisor only records the children it is given.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';
import type { ChildSpec } from '../../src/runtime/supervisor.ts';
import { ACTOR_REGISTRY } from '../../src/cli/actor-registry.ts';
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

const runDir = mkdtempSync(join(tmpdir(), 'up-children-'));
const cleanup: string[] = [runDir];
afterAll(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  given.length = 0;
  delete process.env.DYNAMOLLM_GATEWAY_NODE_FLAGS;
});

/** The children `up` gives its supervisor. */
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

/** The shutdown bound of the actor a child's command line runs (`... actor <kind> --id ID --config FILE --set k=v ...`). */
async function boundOf(c: ChildSpec): Promise<number> {
  const args = c.args ?? [];
  const at = args.indexOf('actor');
  const kind = args[at + 1]!;
  const flag = (name: string) => args[args.indexOf(name) + 1]!;
  const extra: Record<string, string> = {};
  args.forEach((a, i) => {
    if (a !== '--set') return;
    const kv = args[i + 1]!;
    extra[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  });
  const mod = await ACTOR_REGISTRY[kind]!();
  const actor = await mod.createActor({ id: flag('--id'), config: JSON.parse(readFileSync(flag('--config'), 'utf8')), nats: { servers: ['nats://127.0.0.1:1'] }, log: pino({ level: 'silent' }), extra });
  const adoptDir = (actor as { adoptDir?: string }).adoptDir;
  if (adoptDir) cleanup.push(adoptDir);
  return actor.shutdownLimitMs();
}

describe('up: a child\'s grace before SIGKILL', () => {
  it('covers the shutdown bound of the actor it runs (node agents, gateways, managers)', async () => {
    const given = await children();
    const kinds = new Set(given.map((c) => c.name.replace(/-.*/, '')));
    expect([...kinds].sort()).toEqual(['cluster', 'gateway', 'node', 'pool']);
    const short: string[] = [];
    for (const c of given) {
      const bound = await boundOf(c);
      // a child without its own grace gets the supervisor's default, 10 s
      if ((c.stopGraceMs ?? 10_000) < bound) short.push(`${c.name}: grace ${c.stopGraceMs ?? 'default 10000'} ms < its actor's shutdown bound ${bound} ms`);
    }
    expect(short).toEqual([]);
    const node = given.find((c) => c.name.startsWith('node-'))!;
    expect(await boundOf(node)).toBe(77_000);
  });
});

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
