/**
 * Restart backoff (src/policy/restart-backoff.ts, run by src/runtime/supervisor.ts): a process killed after it became
 * ready, or after it lived longer than the cap, restarts after initialMs however often it is killed (a gateway replica's
 * serving process under repeated SIGKILLs); a process that dies before it is ready (a crash loop), or just after it
 * said so, backs off to the cap and is flapping. The policy on virtual times, then the Supervisor on a ManualClock with
 * real child processes: one that says it is ready through the descriptor the supervisor gives it (ready-notify.ts),
 * SIGKILLed from outside as `dynamollm chaos` does.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { NO_RESTARTS, restartAfter, type RestartBackoff, type RestartHistory } from '../../src/policy/restart-backoff.ts';
import { ManualClock, Supervisor, silentLogger } from '../../src/runtime/index.ts';

const B: RestartBackoff = { initialMs: 250, maxMs: 5000, factor: 2, flapMaxRestarts: 5, flapWindowMs: 60_000, minReadyMs: 1000 };

/** Runs of the given shape one after another (each starts when the previous restart's delay ends): their delays. */
function delays(n: number, run: (spawnedMs: number) => { readyAfterMs?: number; diesAfterMs: number }): { delays: number[]; flappingAt: number[]; history: RestartHistory } {
  let h = NO_RESTARTS;
  let t = 0;
  const out: number[] = [];
  const flappingAt: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = run(t);
    const d = restartAfter(h, { spawnedMs: t, exitedMs: t + r.diesAfterMs, ...(r.readyAfterMs !== undefined ? { readyMs: t + r.readyAfterMs } : {}) }, B);
    if (d.flappingStarts) flappingAt.push(i);
    out.push(d.delayMs);
    h = d.history;
    t += r.diesAfterMs + d.delayMs;
  }
  return { delays: out, flappingAt, history: h };
}

describe('restart backoff policy', () => {
  it('a process killed 12 times in a minute after it became ready restarts after initialMs each time, never flapping', () => {
    // ready 2 s after its spawn (a gateway at load), killed 3 s later: 12 deaths within 60 s
    const r = delays(12, () => ({ readyAfterMs: 2000, diesAfterMs: 5000 - 1 }));
    expect(r.delays).toEqual(Array(12).fill(250));
    expect(r.flappingAt).toEqual([]);
    expect(r.history).toEqual(NO_RESTARTS);
  });

  it('a process that lived longer than the cap restarts after initialMs, however many such deaths the window holds', () => {
    const r = delays(10, () => ({ diesAfterMs: 5001 }));
    expect(r.delays).toEqual(Array(10).fill(250));
    expect(r.flappingAt).toEqual([]);
  });

  it('a crash loop (dies before ready) backs off exponentially to the cap, then flaps at the cap', () => {
    const r = delays(9, () => ({ diesAfterMs: 300 }));
    expect(r.delays).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
    expect(r.flappingAt).toEqual([5]);
  });

  it('a process that dies within minReadyMs of saying it is ready is a failed start', () => {
    const r = delays(8, () => ({ readyAfterMs: 400, diesAfterMs: 400 + 999 }));
    expect(r.delays).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    expect(r.flappingAt).toEqual([5]);
  });

  it('one stable run ends a flapping episode: the next failed start begins at initialMs again', () => {
    let h = delays(7, () => ({ diesAfterMs: 300 })).history;
    expect(h.flapping).toBe(true);
    const stable = restartAfter(h, { spawnedMs: 1_000_000, readyMs: 1_001_000, exitedMs: 1_010_000 }, B);
    expect(stable).toMatchObject({ delayMs: 250, stable: true, flappingStarts: false });
    h = stable.history;
    const next = restartAfter(h, { spawnedMs: 1_010_250, exitedMs: 1_010_500 }, B);
    expect(next).toMatchObject({ delayMs: 250, stable: false, flappingStarts: false });
    expect(next.history).toEqual({ failures: 1, recent: [1_010_500], flapping: false });
  });

  it('failed starts older than the window no longer count toward flapping', () => {
    let h = NO_RESTARTS;
    for (let i = 0; i < 5; i++) h = restartAfter(h, { spawnedMs: i * 1000, exitedMs: i * 1000 + 100 }, B).history;
    // 5 failed starts in the window: the sixth would flap; 61 s later none of them counts
    expect(restartAfter(h, { spawnedMs: 5000, exitedMs: 5100 }, B).flappingStarts).toBe(true);
    const late = restartAfter(h, { spawnedMs: 65_000, exitedMs: 65_100 }, B);
    expect(late.flappingStarts).toBe(false);
    expect(late.delayMs).toBe(5000); // still the 6th failed start in a row: exponential, capped
    expect(late.history.recent).toEqual([65_100]);
  });
});

// a child that says it is ready on the descriptor its supervisor named (none named: it only waits), then lives
const READY_CHILD = "const fd = Number(process.env.DYNAMOLLM_READY_FD); if (fd > 2) require('fs').writeSync(fd, 'ready\\n'); setInterval(() => {}, 1000);";

function next<T>(sup: Supervisor, event: string): Promise<T> {
  return new Promise((resolve) => sup.once(event, resolve));
}

const SUP_BACKOFF = { initialMs: 100, maxMs: 5000, factor: 2, minReadyMs: 1000 };

describe('Supervisor restarts on the restart backoff policy', () => {
  it('a child SIGKILLed again and again after it said it was ready restarts after initialMs each time, never flapping', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({ children: [{ name: 'ready', command: process.execPath, args: ['-e', READY_CHILD], output: 'ignore' }], log: silentLogger(), backoff: SUP_BACKOFF, flapping: { maxRestarts: 3, windowMs: 60_000 }, clock });
    const got: number[] = [];
    const flapping: unknown[] = [];
    sup.on('flapping', (e) => flapping.push(e));
    let spawned = next<{ pid: number }>(sup, 'spawn');
    await sup.start();
    for (let i = 0; i < 6; i++) {
      const { pid } = await spawned;
      // its ready line (a supervisor that gives no descriptor never hears one: 3 s of real time, then on)
      const ready = await Promise.race([next<{ pid: number }>(sup, 'ready').then((e) => e.pid === pid), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      // ready for 2 s of the manual clock (past minReadyMs, short of the cap): then killed from outside
      clock.advance(2000);
      const restart = next<{ delayMs: number }>(sup, 'restart');
      process.kill(pid, 'SIGKILL');
      got.push((await restart).delayMs);
      expect(ready).toBe(true);
      spawned = next<{ pid: number }>(sup, 'spawn');
      clock.advance(5000);
    }
    await spawned;
    // ready deaths are stable runs: initialMs every time (a failed start each: 100, 200, 400, then the cap)
    expect(got).toEqual([100, 100, 100, 100, 100, 100]);
    expect(flapping).toEqual([]);
    await sup.stop();
  }, 60_000);

  it('a child that lived longer than the cap, SIGKILLed more often than the flapping threshold, restarts after initialMs each time', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({ children: [{ name: 'long', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], output: 'ignore' }], log: silentLogger(), backoff: SUP_BACKOFF, flapping: { maxRestarts: 3, windowMs: 60_000 }, clock });
    const got: number[] = [];
    const flapping: unknown[] = [];
    sup.on('flapping', (e) => flapping.push(e));
    let spawned = next<{ pid: number }>(sup, 'spawn');
    await sup.start();
    // 6 kills within 60 s of the manual clock, each after 6 s of life (past the 5-s cap)
    for (let i = 0; i < 6; i++) {
      const { pid } = await spawned;
      clock.advance(6000);
      const restart = next<{ delayMs: number }>(sup, 'restart');
      process.kill(pid, 'SIGKILL');
      got.push((await restart).delayMs);
      spawned = next<{ pid: number }>(sup, 'spawn');
      clock.advance(got.at(-1)!);
    }
    await spawned;
    expect(got).toEqual([100, 100, 100, 100, 100, 100]);
    expect(flapping).toEqual([]);
    await sup.stop();
  }, 60_000);

  it('a child that says it is ready and dies at once, again and again, backs off to the cap and is flapping', async () => {
    const clock = new ManualClock(0);
    const child = "const fd = Number(process.env.DYNAMOLLM_READY_FD); if (fd > 2) require('fs').writeSync(fd, 'ready\\n'); setTimeout(() => process.exit(3), 200);";
    const sup = new Supervisor({ children: [{ name: 'crash', command: process.execPath, args: ['-e', child], output: 'ignore' }], log: silentLogger(), backoff: { ...SUP_BACKOFF, maxMs: 1000 }, flapping: { maxRestarts: 3, windowMs: 60_000 }, clock });
    const got: number[] = [];
    const flapping: unknown[] = [];
    sup.on('flapping', (e) => flapping.push(e));
    sup.on('restart', (e: { delayMs: number }) => got.push(e.delayMs));
    const sixth = new Promise<void>((resolve) => {
      let exits = 0;
      sup.on('exit', () => {
        if (++exits === 6) resolve();
        else setImmediate(() => clock.advance(1000));
      });
    });
    await sup.start();
    await sixth;
    expect(got).toEqual([100, 200, 400, 1000, 1000, 1000]);
    expect(flapping).toHaveLength(1);
    await sup.stop();
  }, 60_000);
});

describe('ready-notify', () => {
  it('writes one ready line to the descriptor its supervisor named, and takes the name out of its environment', async () => {
    const mod = new URL('../../src/runtime/ready-notify.ts', import.meta.url).href;
    // what a process this one starts would inherit, then two notices (the second a no-op)
    const script = `const m = await import(${JSON.stringify(mod)}); process.stdout.write(JSON.stringify({ env: process.env.DYNAMOLLM_READY_FD ?? null })); m.notifyReady(); m.notifyReady();`;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'], env: { ...process.env, DYNAMOLLM_READY_FD: '3' } });
    let out = '';
    let ready = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    (p.stdio[3] as Readable).on('data', (d: Buffer) => (ready += d.toString()));
    const code = await new Promise<number | null>((r) => p.once('close', (c) => r(c)));
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ env: null });
    expect(ready).toBe('ready\n');
  }, 60_000);
});
