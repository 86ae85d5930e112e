/**
 * End to end: `dynamollm up --config deploy/replay-ci.yaml` (real nats-server, managers, 2 emulated H100s
 * with token coalescing), then `dynamollm replay` of the first 60 s of the shipped conversation trace at
 * --speed 10 (the CLI, as a user runs it). Asserts every request is accounted for (ok + rejected + failed =
 * sent), no request hung (no client timeout, no cut stream), and that Ctrl-C leaves no process behind. The per-type
 * SLO result is NOT asserted: on 2 shared cores it depends on the other load (docs/REPLAY.md).
 */
import { freePort } from '../helpers/net.ts';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplaySummary } from '../../src/telemetry/replay.ts';

let up: ChildProcess;
let base: string;
let output = '';


beforeAll(async () => {
  const [np, gp] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${gp}`;
  const runDir = mkdtempSync(join(tmpdir(), 'dyn-replay-e2e-'));
  up = spawn(process.execPath, ['bin/dynamollm.js', 'up', '--config', 'deploy/replay-ci.yaml', '--nats', `nats://127.0.0.1:${np}`, '--port', String(gp), '--run-dir', runDir, '--ready-timeout', '60'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'warn' },
  });
  up.stdout!.on('data', (d) => (output += d.toString()));
  up.stderr!.on('data', (d) => (output += d.toString()));
  const until = Date.now() + 60_000;
  while (!output.includes('cluster ready') && Date.now() < until && up.exitCode === null) await new Promise((r) => setTimeout(r, 250));
  if (!output.includes('cluster ready')) throw new Error(`cluster did not get ready:\n${output.slice(-3000)}`);
}, 70_000);

afterAll(async () => {
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (up.exitCode === null) up.kill('SIGKILL');
  }
  expect(output).toContain('dynamollm: stopped');
  // nothing of this cluster is left: no engine, actor or nats-server naming its gateway port / run dir
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid,args']);
  const port = new URL(base).port;
  expect(stdout.split('\n').filter((l) => l.includes('dyn-replay-e2e-') || l.includes(`port=${port}`))).toEqual([]);
}, 40_000);

describe('dynamollm replay at --speed 10 (CI-sized)', () => {
  it('accounts for every request and none hung', async () => {
    const json = join(mkdtempSync(join(tmpdir(), 'dyn-replay-out-')), 'replay.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['bin/dynamollm.js', 'replay', '--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--url', base, '--speed', '10', '--duration', '60', '--json', json],
      { timeout: 80_000, maxBuffer: 1 << 22 },
    );
    const s = JSON.parse(readFileSync(json, 'utf8')) as ReplaySummary;
    console.log(stdout);
    expect(s.sent).toBeGreaterThan(100);
    expect(s.ok + s.rejected + s.failed).toBe(s.sent);
    expect(s.errors.client_timeout ?? 0).toBe(0);
    expect(s.errors.stream_incomplete ?? 0).toBe(0);
    expect(s.ok).toBeGreaterThan(0);
    for (const t of s.perType) expect(t.ok + t.rejected + t.failed).toBeGreaterThan(0);
    expect(stdout).toMatch(/requests: sent \d+ = ok \d+ \+ rejected \d+ \+ failed \d+/);
    expect(s.clusterEnergySources).toContain('modelled');
  }, 85_000);
});
