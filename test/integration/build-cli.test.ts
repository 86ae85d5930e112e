/**
 * The compiled CLI (`npm run build` -> dist/, run through bin/dynamollm.js) works without TypeScript: with
 * the no-tsx hook in NODE_OPTIONS (inherited by child processes and worker threads), importing tsx or
 * loading a .ts module fails the process. test/e2e/cluster.test.ts runs a whole `up` cluster the same way.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { NO_TSX } from '../helpers/cluster.ts';

const run = (args: string[]) =>
  promisify(execFile)(process.execPath, ['bin/dynamollm.js', ...args], { env: { ...process.env, NODE_OPTIONS: NO_TSX }, timeout: 60_000 });

describe('built CLI (dist/)', () => {
  it('exists after the build (the tests global setup builds it when the source is newer)', () => {
    expect(existsSync('dist/src/cli/main.js')).toBe(true);
    expect(existsSync('dist/actors/node-agent/main.js')).toBe(true);
  });

  it('the no-tsx hook really refuses TypeScript', async () => {
    const err = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--help'], { env: { ...process.env, NODE_OPTIONS: NO_TSX } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as { stderr?: string }).stderr)).toMatch(/no-tsx/);
  });

  it('--help lists the commands', async () => {
    const { stdout } = await run(['--help']);
    for (const c of ['up', 'actor', 'simulate', 'replay', 'status']) expect(stdout).toContain(c);
  });

  it('simulate runs its policies in worker threads from the compiled tree', async () => {
    const { stdout } = await run(['simulate', '--trace', 'synth:flat:0.005:2', '--policy', 'single-pool,dynamollm', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '1', '--fidelity', 'fluid']);
    expect(stdout).toMatch(/^single-pool\s+fluid/m);
    expect(stdout).toMatch(/^dynamollm\s+fluid/m);
    expect(stdout).toContain('energy is modelled');
  });
});
