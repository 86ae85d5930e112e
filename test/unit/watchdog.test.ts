import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unresponsive, watchdogProbe, watchdogSettings, watchdogStart, type WatchdogSettings, type WatchdogState } from '../../src/policy/watchdog.ts';
import { ManualClock, Supervisor, silentLogger } from '../../src/runtime/index.ts';

const W: WatchdogSettings = { intervalMs: 1000, misses: 4, startGraceMs: 5000 };

/** Probes at the given times (ms after a start at 0) with their answers; the verdicts' kinds. */
function run(probes: [number, boolean][], w = W): { kinds: string[]; state: WatchdogState } {
  let state = watchdogStart(0);
  const kinds: string[] = [];
  for (const [t, answered] of probes) {
    const r = watchdogProbe(state, t, answered, w);
    state = r.state;
    kinds.push(r.verdict.kind);
  }
  return { kinds, state };
}

describe('watchdog decisions (policy)', () => {
  it('kills after `misses` probes missed in a row, once silent misses x intervalMs; an answer starts the count over', () => {
    const a = run([[1000, true], [2000, false], [3000, false], [4000, false]]);
    expect(a.kinds).toEqual(['ok', 'miss', 'miss', 'miss']);
    // the 4th miss, silent 4000 ms since the answer at 1000: kill
    expect(run([[1000, true], [2000, false], [3000, false], [4000, false], [5000, false]]).kinds).toEqual(['ok', 'miss', 'miss', 'miss', 'kill']);
    const b = run([[1000, true], [2000, false], [3000, false], [4000, false], [5000, true], [6000, false], [7000, false], [8000, false]]);
    expect(b.kinds).toEqual(['ok', 'miss', 'miss', 'miss', 'ok', 'miss', 'miss', 'miss']);
    expect(b.state.misses).toBe(3);
  });

  it('a stall of the whole host (the supervisor too) costs one miss, not a kill', () => {
    // answered at 1 s, then nothing ran for 30 s; the child beats again right after
    const r = run([[1000, true], [31_000, false], [32_000, true], [33_000, true]]);
    expect(r.kinds).toEqual(['ok', 'miss', 'ok', 'ok']);
  });

  it('probes bunched together do not kill before misses x intervalMs of silence', () => {
    // four late timers fired within 40 ms: four misses, 1040 ms of silence
    const r = run([[1000, true], [2000, false], [2010, false], [2020, false], [2030, false], [2040, false]]);
    expect(r.kinds).toEqual(['ok', 'miss', 'miss', 'miss', 'miss', 'miss']);
    expect(run([[1000, true], [2000, false], [2010, false], [2020, false], [2030, false], [5000, false]]).kinds.at(-1)).toBe('kill');
  });

  it('a starting child is not counted silent within its start grace; after it, its silence counts from its start', () => {
    const r = run([[1000, false], [4000, false], [4999, false], [5000, false], [6000, false], [7000, false], [8000, false]]);
    expect(r.kinds).toEqual(['grace', 'grace', 'grace', 'miss', 'miss', 'miss', 'kill']);
    // its first answer ends the grace: silence after it counts at once
    expect(run([[500, true], [1500, false]]).kinds).toEqual(['ok', 'miss']);
  });

  it('is unresponsive (replaced on a start request) after two probes missed in a row', () => {
    expect(unresponsive(run([[1000, true], [2000, false]]).state)).toBe(false);
    expect(unresponsive(run([[1000, true], [2000, false], [3000, false]]).state)).toBe(true);
    expect(unresponsive(run([[1000, true], [2000, false], [3000, false], [4000, true]]).state)).toBe(false);
  });

  it('settings: defaults, and positive integers only', () => {
    expect(watchdogSettings()).toEqual({ intervalMs: 1000, misses: 8, startGraceMs: 30_000 });
    expect(watchdogSettings({ misses: 3 }).misses).toBe(3);
    expect(() => watchdogSettings({ intervalMs: 0 })).toThrow(RangeError);
    expect(() => watchdogSettings({ misses: 1.5 })).toThrow(RangeError);
  });
});

const dir = mkdtempSync(join(tmpdir(), 'dyn-watchdog-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A process's state letter from /proc (T: stopped). */
const procState = (pid: number) => spawnSync('ps', ['-o', 'stat=', '-p', String(pid)]).stdout.toString().trim();

describe('Supervisor liveness watchdog (manual clock, a real child)', () => {
  it('SIGKILLs a child that stopped beating after `misses` probes in a row and restarts it; a beating child is left alone', async () => {
    const clock = new ManualClock(0);
    const file = join(dir, 'quiet');
    const sup = new Supervisor({
      // the child itself never beats: the test writes its beats into the file, probe by probe
      children: [{ name: 'quiet', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], output: 'ignore', liveness: { file } }],
      log: silentLogger(),
      backoff: { initialMs: 100, maxMs: 1000 },
      watchdog: { intervalMs: 1000, misses: 3, startGraceMs: 2000 },
      clock,
    });
    const events: string[] = [];
    const spawned: number[] = [];
    let onSpawn: (() => void) | undefined;
    let onExit: ((signal: string | null) => void) | undefined;
    sup.on('spawn', (e: { pid: number }) => {
      spawned.push(e.pid);
      onSpawn?.();
    });
    sup.on('exit', (e: { signal: string | null }) => onExit?.(e.signal));
    sup.on('unresponsive', (e: { name: string; misses: number; silentMs: number }) => events.push(`unresponsive ${e.name} ${e.misses} ${e.silentMs}`));
    const first = new Promise<void>((r) => (onSpawn = r));
    await sup.start();
    await first;
    // beating: 10 probes, each after a new beat
    for (let i = 1; i <= 10; i++) {
      writeFileSync(file, `x ${i}`);
      clock.advance(1000);
    }
    expect(events).toEqual([]);
    expect(sup.children()[0]).toMatchObject({ state: 'running', misses: 0, hangKills: 0 });
    // silent: two probes missed, then unresponsive (not killed yet)
    clock.advance(2000);
    expect(sup.unresponsive('quiet')).toBe(true);
    expect(events).toEqual([]);
    const exited = new Promise<string | null>((r) => (onExit = r));
    const again = new Promise<void>((r) => (onSpawn = r));
    clock.advance(1000);
    expect(events).toEqual(['unresponsive quiet 3 3000']);
    expect(await exited).toBe('SIGKILL');
    // restarted after the backoff, as after any death, and watched again from its start
    await new Promise((r) => setImmediate(r));
    clock.advance(100);
    await again;
    expect(spawned).toHaveLength(2);
    expect(sup.children()[0]).toMatchObject({ state: 'running', restarts: 1, misses: 0, hangKills: 1 });
    await sup.stop();
  }, 20_000);

  it('replace(): a child is SIGKILLed on demand (a start request for an unresponsive instance) and restarted', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({
      children: [{ name: 'c', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], output: 'ignore', liveness: { file: join(dir, 'c') } }],
      log: silentLogger(),
      backoff: { initialMs: 100, maxMs: 1000 },
      clock,
    });
    const pids: number[] = [];
    let onSpawn: (() => void) | undefined;
    sup.on('spawn', (e: { pid: number }) => {
      pids.push(e.pid);
      onSpawn?.();
    });
    const signals: (string | null)[] = [];
    sup.on('exit', (e: { signal: string | null }) => signals.push(e.signal));
    let spawned = new Promise<void>((r) => (onSpawn = r));
    await sup.start();
    await spawned;
    process.kill(pids[0]!, 'SIGSTOP');
    expect(procState(pids[0]!)).toMatch(/^T/);
    spawned = new Promise<void>((r) => (onSpawn = r));
    expect(sup.replace('c', 'test')).toBe(true);
    for (let i = 0; i < 100 && signals.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(signals).toEqual(['SIGKILL']);
    clock.advance(100);
    await spawned;
    expect(pids).toHaveLength(2);
    expect(sup.children()[0]).toMatchObject({ hangKills: 1, restarts: 1 });
    await sup.stop();
  }, 20_000);
});
