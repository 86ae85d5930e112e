/**
 * `dynamollm up` runs the gateway's settings as its processes will read them (the config's gateway section, --port,
 * env DYNAMOLLM_API_KEYS) through the gateway's schema and exposure check before it starts anything: a port past
 * 65535 (--port, or the last replica's port+replicas-1), a port that is no integer, or a non-loopback host without
 * keys is a usage error (exit 2), with no NATS server started. A private NATS start stands in for "anything started".
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { configure, ExitCode, runProgram } from '../../src/cli/program.ts';

const started: string[] = [];
vi.mock('../../src/runtime/nats-launcher.ts', async (importActual) => {
  const actual = await importActual<typeof import('../../src/runtime/nats-launcher.ts')>();
  const refuse = (what: string) => () => {
    started.push(what);
    return Promise.reject(new Error(`test: ${what} not started`));
  };
  return { ...actual, startOwnNats: refuse('nats'), startOwnNatsCluster: refuse('nats cluster'), checkAuthorization: refuse('nats check') };
});
const { register } = await import('../../src/cli/commands/up.ts');

const dir = mkdtempSync(join(tmpdir(), 'up-gateway-settings-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

async function up(argv: string[]): Promise<{ code: number; err: string }> {
  const exit = new ExitCode();
  const program = configure(new Command('dynamollm'));
  register(program.command('up'), exit);
  const code = await runProgram(program, ['up', ...argv], exit);
  return { code, err: stderr.mock.calls.map((c: unknown[]) => String(c[0])).join('') };
}

let stderr: { mock: { calls: unknown[][] }; mockRestore: () => void };
let keys: string | undefined;
beforeEach(() => {
  started.length = 0;
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  keys = process.env.DYNAMOLLM_API_KEYS;
  delete process.env.DYNAMOLLM_API_KEYS;
});
afterEach(() => {
  stderr.mockRestore();
  if (keys !== undefined) process.env.DYNAMOLLM_API_KEYS = keys;
});

describe('up checks the gateway settings before it starts anything', () => {
  it('--port 99999: exit 2, the port named, nothing started', async () => {
    const { code, err } = await up(['--port', '99999']);
    expect(code).toBe(2);
    expect(err).toMatch(/--port 99999: .*port/);
    expect(started).toEqual([]);
  });

  it('--port -1 and --port 80.5: exit 2, nothing started', async () => {
    for (const p of ['-1', '80.5']) {
      const { code } = await up(['--port', p]);
      expect(code, p).toBe(2);
    }
    expect(started).toEqual([]);
  });

  it('the last replica\'s port past 65535 (replicas 2, port 65535): exit 2; port 65534 passes the check', async () => {
    const cfg = file('replicas.yaml', 'gateway:\n  replicas: 2\n  port: 65535\n');
    const bad = await up(['--config', cfg]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/ports 65535\.\.65536/);
    expect(started).toEqual([]);
    await up(['--config', cfg, '--port', '65534']);
    expect(started).toEqual(['nats']);
  });

  it('a non-loopback gateway without keys: exit 2, nothing started; with env keys it passes the check', async () => {
    const cfg = file('open.yaml', 'gateway:\n  host: 0.0.0.0\n');
    const open = await up(['--config', cfg]);
    expect(open.code).toBe(2);
    expect(open.err).toMatch(/not a loopback address and no API keys are set/);
    expect(started).toEqual([]);
    process.env.DYNAMOLLM_API_KEYS = 'sk-0123456789abcdef';
    await up(['--config', cfg]);
    expect(started).toEqual(['nats']);
  });
});
