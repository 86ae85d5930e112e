/**
 * `dynamollm profile run` against the engine emulator (the emulated GPU backend) reproduces the model's own
 * profile (generateProfile + interpolate from src/model) within 10% on TBT p50 and power, and on TTFT p50
 * within 10% plus a client-side allowance (below), on a small grid: 2 clocks x 2 request types (SM, MS: prompts
 * under one 512-token prefill chunk, where model and emulator schedule prefill alike) x 2 loads (0 and one at
 * which the engine is busy nearly all the time), llama3.1-8b at TP1 on an emulated H100, real time.
 * p99s are not compared: a few dozen requests per window make them a matter of the arrival draw and of this
 * machine's scheduling noise, not of the engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createPerfModel, DEFAULT_REQUEST_TYPES, generateProfile, interpolate } from '../../src/model/index.ts';
import { loadProfile } from '../../src/model/profile-io.ts';
import type { Profile } from '../../src/model/profile-types.ts';

const MODEL = 'llama3.1-8b';
const TP = 1;
const CLOCKS = [1200, 1980];
const TYPES = ['SM', 'MS'] as const;
const LOAD = 2; // req/s: the engine is busy nearly all the time, below either type's max load at these clocks
const SCALE = 1;
const BIN = resolve('bin/dynamollm.js');
/** client-side allowance on TTFT, ms (see below). */
const CLIENT_ALLOWANCE_MS = 30;

let emu: ChildProcess | undefined;
let endpoint = '';

beforeAll(async () => {
  emu = spawn(process.execPath, [BIN, 'engine-emulator', '--model', MODEL, '--gpu', 'h100', '--tp', String(TP), '--port', '0', '--time-scale', String(SCALE)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((res, rej) => {
    const rl = createInterface({ input: emu!.stdout! });
    rl.on('line', (l) => {
      try {
        const ev = JSON.parse(l) as { event?: string; port?: number };
        if (ev.event === 'listening' && ev.port) res(ev.port);
      } catch {
        /* not our line */
      }
    });
    emu!.once('exit', (code) => rej(new Error(`emulator exited with ${code}`)));
  });
  endpoint = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  if (emu && emu.exitCode === null) {
    emu.kill('SIGTERM');
    await new Promise((r) => emu!.once('exit', r));
  }
});

function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [BIN, 'profile', 'run', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('exit', (code) => res({ code, stderr }));
  });
}

describe('dynamollm profile run against the engine emulator', () => {
  it('measures a profile that matches the model within 10% and leaves the clocks reset', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'profiler-')), 'measured.json');
    const r = await runCli([
      '--endpoint', endpoint, '--gpu-backend', 'emulated', '--model', MODEL, '--tp', String(TP), '--clocks', CLOCKS.join(','),
      '--types', TYPES.join(','), '--loads', `0,${LOAD}`, '--window', '3', '--warmup', '0.5', '--time-scale', String(SCALE), '--out', out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const measured: Profile = loadProfile(out); // validates the profile format
    expect(measured.source.kind).toBe('measured');
    expect(measured.clocksMhz).toEqual(CLOCKS);
    expect(measured.cells).toHaveLength(CLOCKS.length * TYPES.length * 2);

    const perf = createPerfModel(MODEL, 'h100');
    const requestTypes = DEFAULT_REQUEST_TYPES.filter((t) => (TYPES as readonly string[]).includes(t.type));
    const model = generateProfile(perf, { tpDegrees: [TP], clocksMhz: CLOCKS, requestTypes, loadSteps: 32 });
    const rows: string[] = [];
    const misses: string[] = [];
    for (const c of measured.cells) {
      const m = interpolate(model, c.type, TP, c.clockMhz, c.load);
      for (const k of ['ttftP50Ms', 'tbtP50Ms', 'powerW'] as const) {
        const err = (c[k] - m[k]) / m[k];
        rows.push(`${c.type} ${c.clockMhz} MHz load ${c.load} ${k}: measured ${c[k]} model ${m[k].toFixed(2)} (${(err * 100).toFixed(1)}%)`);
        // TTFT as a client sees it includes the HTTP path and this machine's scheduling delay on top of the
        // engine's: seen here as +5..25 ms with 2 cores at load average > 10 (the emulator's own TTFT histogram
        // matches the model exactly). So TTFT may exceed the model's +10% by at most CLIENT_ALLOWANCE_MS.
        const ok = k === 'ttftP50Ms' ? c[k] >= m[k] * 0.9 && c[k] <= m[k] * 1.1 + CLIENT_ALLOWANCE_MS : Math.abs(err) <= 0.1;
        if (!ok) misses.push(rows.at(-1)!);
      }
    }
    console.log(rows.join('\n'));
    expect(misses, misses.join('\n')).toEqual([]);

    // the profiler reset the clocks on its way out
    const gpu = (await (await fetch(`${endpoint}/admin/gpu`, { signal: AbortSignal.timeout(5000) })).json()) as { lockedMaxMhz: number | null };
    expect(gpu.lockedMaxMhz).toBeNull();
  });
});
