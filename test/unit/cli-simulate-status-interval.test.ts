/**
 * `dynamollm simulate`: the simulated instances publish their statuses at the interval the live cluster's would, the
 * instances' status interval of the cluster config it is given (--config), else the live default; --status-interval-ms
 * sets it outright (a measured interval, as the twin check passes SimOptions.instanceStatusIntervalMs). The pools
 * suspect a silent instance after the config's liveness.suspectAfterMs where it sets one, and call it dead after its
 * liveness.deadAfterMs.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';
import type { SimOptions } from '../../src/sim/types.ts';

const seen: SimOptions[][] = [];
vi.mock('../../src/sim/parallel.ts', async (importActual) => {
  const actual = await importActual<typeof import('../../src/sim/parallel.ts')>();
  return {
    ...actual,
    simulateMany: (list: SimOptions[], ...rest: Parameters<typeof actual.simulateMany> extends [unknown, ...infer R] ? R : never) => {
      seen.push(list);
      return actual.simulateMany(list, ...rest);
    },
  };
});

const { register } = await import('../../src/cli/commands/simulate.ts');
const { defaultConfig } = await import('../../actors/common/config.ts');

/** `dynamollm simulate ARGS` as src/cli/main.ts runs it (its exit code). */
const main = (argv: string[]): Promise<number> => {
  const exit = new ExitCode();
  const program = configure(new Command('dynamollm'));
  register(program.command('simulate'), exit);
  return runProgram(program, argv, exit);
};

const dir = mkdtempSync(join(tmpdir(), 'sim-status-interval-'));
const configWith = (liveness: string): string => {
  const path = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, `model: llama2-70b\ngpu: h100\n${liveness}\n`);
  return path;
};
const simulate = async (extra: string[]): Promise<{ code: number; opts: SimOptions[] }> => {
  seen.length = 0;
  const code = await main(['simulate', '--trace', 'synth:flat:1:0.5', '--duration-s', '30', '--policy', 'dynamollm,single-pool', '--serial',
    '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '2', ...extra]);
  return { code, opts: seen[0] ?? [] };
};
const run = async (...extra: string[]): Promise<{ code: number; every: (number | undefined)[] }> => {
  const { code, opts } = await simulate(extra);
  return { code, every: opts.map((o) => o.instanceStatusIntervalMs) };
};

describe('dynamollm simulate: the status interval of the simulated instances', () => {
  beforeEach(() => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterEach(() => vi.restoreAllMocks());

  it('is the live default (the instances\' status interval, 250 ms) without a config', async () => {
    expect(defaultConfig().liveness.statusIntervalMs).toBe(1000);
    expect(await run()).toEqual({ code: 0, every: [250, 250] });
  });

  it("is the given cluster config's instances' status interval (instanceStatusIntervalMs, else 250 ms or statusIntervalMs where shorter)", async () => {
    expect(await run('--config', configWith('liveness: { statusIntervalMs: 1000, instanceStatusIntervalMs: 1000, deadAfterMs: 4000, leaseTtlMs: 3000 }'))).toEqual({ code: 0, every: [1000, 1000] });
    expect(await run('--config', configWith('liveness: { statusIntervalMs: 750, deadAfterMs: 3000, leaseTtlMs: 3000 }'))).toEqual({ code: 0, every: [250, 250] });
    expect(await run('--config', configWith('liveness: { statusIntervalMs: 200, deadAfterMs: 3000, leaseTtlMs: 3000 }'))).toEqual({ code: 0, every: [200, 200] });
    expect(await run('--config', 'deploy/twin.yaml')).toEqual({ code: 0, every: [500, 500] });
    expect(await run('--config', configWith(''))).toEqual({ code: 0, every: [250, 250] });
  });

  it("passes the config's liveness.suspectAfterMs where it sets one (else the simulator derives it from the status interval)", async () => {
    const got = await simulate(['--config', configWith('liveness: { instanceStatusIntervalMs: 250, suspectAfterMs: 1200 }')]);
    expect(got.code).toBe(0);
    expect(got.opts.map((o) => o.suspectAfterMs)).toEqual([1200, 1200]);
    expect((await simulate(['--config', configWith('liveness: { instanceStatusIntervalMs: 250 }')])).opts.map((o) => o.suspectAfterMs)).toEqual([undefined, undefined]);
    expect((await simulate([])).opts.map((o) => o.suspectAfterMs)).toEqual([undefined, undefined]);
    // a suspicion no shorter than the death is the config's error
    expect((await simulate(['--config', configWith('liveness: { suspectAfterMs: 3000 }')])).code).toBe(2);
  });

  it("passes the config's liveness.deadAfterMs (its default, 3000 ms, where it sets none); nothing without a config", async () => {
    const got = await simulate(['--config', configWith('liveness: { instanceStatusIntervalMs: 250, deadAfterMs: 4500 }')]);
    expect(got.code).toBe(0);
    expect(got.opts.map((o) => o.deadAfterMs)).toEqual([4500, 4500]);
    expect((await simulate(['--config', configWith('')])).opts.map((o) => o.deadAfterMs)).toEqual([3000, 3000]);
    expect((await simulate([])).opts.map((o) => o.deadAfterMs)).toEqual([undefined, undefined]);
  });

  it('is --status-interval-ms where given (over the config); a bad value or config is a usage error', async () => {
    expect(await run('--config', 'deploy/twin.yaml', '--status-interval-ms', '501.6')).toEqual({ code: 0, every: [501.6, 501.6] });
    expect((await run('--status-interval-ms', '0.5')).code).toBe(2);
    expect((await run('--config', configWith('liveness: { statusIntervalMs: -1 }'))).code).toBe(2);
    expect((await run('--config', join(dir, 'absent.yaml'))).code).toBe(2);
  });
});
