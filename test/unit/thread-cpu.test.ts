/**
 * The datapath bench's CPU per token by thread (test/bench/thread-cpu.ts): this process's own threads read from /proc
 * (the main thread's counters grow with the work it does, a busy worker thread is one of its rows), labels (main, a
 * thread's own name, the unnamed ones ranked by tid), and the rows' arithmetic over four snapshots whose answers are
 * known (the idle rate taken out, the ticks' user/system split applied to schedstat's time, switches per token).
 */
import { Worker } from 'node:worker_threads';
import { readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { threadCounters, threadLabels, threadRows, threadTable, type ThreadCounters } from '../bench/thread-cpu.ts';

/** this thread's id and its time on a CPU (ms, schedstat) */
const self = () => ({ tid: Number(readlinkSync('/proc/thread-self').split('/').pop()), runMs: Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6 });

/** spins until this thread has had `ms` more of CPU (a loaded host gives it less than the wall time), 10 s at most */
const spin = (ms: number) => {
  const start = self().runMs, end = performance.now() + 10_000;
  let x = 0;
  while (self().runMs - start < ms && performance.now() < end) for (let i = 0; i < 1e4; i++) x += Math.sqrt(x + i);
  return x;
};

describe('threadCounters', () => {
  it("reads this process's threads: this thread's time on a CPU grows by the work it does", () => {
    const { tid } = self();
    const a = threadCounters(process.pid).get(tid)!;
    spin(80);
    const b = threadCounters(process.pid).get(tid)!;
    expect(b.runMs - a.runMs).toBeGreaterThanOrEqual(80);
    expect(b.userMs + b.sysMs).toBeGreaterThanOrEqual(a.userMs + a.sysMs);
    expect(b.vcs).toBeGreaterThanOrEqual(a.vcs);
  });

  it("a busy worker thread is a row of its own, with the worker's CPU", async () => {
    // the worker: its tid, then ~150 ms of CPU on a message; its listener stays, so its thread lives until terminate()
    // (with none left it would end on its own, and a loaded machine reads the threads after it is gone)
    const w = new Worker(`const { parentPort } = require('node:worker_threads'); const { readFileSync, readlinkSync } = require('node:fs');
      const run = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
      parentPort.on('message', () => {
        const start = run(), end = performance.now() + 10000; let x = 0;
        while (run() - start < 150 && performance.now() < end) for (let i = 0; i < 1e4; i++) x += Math.sqrt(x + i);
        parentPort.postMessage(x);
      });
      parentPort.postMessage(Number(readlinkSync('/proc/thread-self').split('/').pop()));`, { eval: true });
    const tid = await new Promise<number>((r) => w.once('message', r));
    const before = threadCounters(process.pid);
    const done = new Promise((r) => w.once('message', r));
    w.postMessage('go');
    await done;
    const after = threadCounters(process.pid);
    await w.terminate();
    // 1,000 tokens: the worker's 150 ms are 150 us per token, a row of an unnamed thread ranked by tid
    const rows = threadRows(process.pid, { i0: before, i1: before, l0: before, l1: after }, 1, 1, 1000);
    const row = rows.find((r) => r.label === threadLabels(process.pid, after).get(tid));
    expect(row?.label).toMatch(/^node #\d+$/);
    expect(row!.us).toBeGreaterThanOrEqual(150);
    expect(row!.us).toBeLessThan(400);
  });
});

const c = (comm: string, userMs: number, sysMs: number, runMs: number, vcs: number, nvcs: number): ThreadCounters => ({ comm, userMs, sysMs, runMs, vcs, nvcs });

describe('threadLabels', () => {
  it('main for the pid, a thread its own name, the unnamed others ranked by tid', () => {
    const t = new Map([[107, c('node', 0, 0, 0, 0, 0)], [100, c('node', 0, 0, 0, 0, 0)], [120, c('dp-relay', 0, 0, 0, 0, 0)], [101, c('node', 0, 0, 0, 0, 0)]]);
    expect([...threadLabels(100, t)].sort((a, b) => a[0] - b[0])).toEqual([[100, 'main'], [101, 'node #1'], [107, 'node #2'], [120, 'dp-relay']]);
  });
});

describe('threadRows', () => {
  it('per token: schedstat time split as the ticks split, less the idle rate, switches; idle threads left out', () => {
    const i0 = new Map([[1, c('node', 0, 0, 0, 0, 0)], [2, c('dp-relay', 0, 0, 0, 0, 0)]]);
    const i1 = new Map([[1, c('node', 100, 0, 100, 50, 0)], [2, c('dp-relay', 0, 0, 0, 0, 0)]]); // main: 10 ms/s idle over 10 s
    const l0 = new Map([[1, c('node', 100, 0, 100, 50, 0)], [2, c('dp-relay', 0, 0, 0, 0, 0)], [3, c('node', 5, 0, 5, 1, 0)]]);
    // 20 s, 20,000 tokens: main 600 ms (ticks 450 user, 150 system), the relay 400 ms (100 user, 300 system), #3 idle
    const l1 = new Map([[1, c('node', 550, 150, 700, 250, 20)], [2, c('dp-relay', 100, 300, 400, 4000, 0)], [3, c('node', 5, 0, 5, 1, 0)]]);
    const rows = threadRows(1, { i0, i1, l0, l1 }, 10, 20, 20_000);
    expect(rows.map((r) => r.label)).toEqual(['main', 'dp-relay']);
    const [main, relay] = rows as [(typeof rows)[0], (typeof rows)[0]];
    expect(main.idleMsPerS).toBeCloseTo(10);
    expect(main.us).toBeCloseTo(30);
    expect(main.userUs).toBeCloseTo(22.5);
    expect(main.sysUs).toBeCloseTo(7.5);
    expect(main.marginalUs).toBeCloseTo(20); // 600 ms less 10 ms/s x 20 s, over 20,000 tokens
    expect(main.vcsPerToken).toBeCloseTo(0.01);
    expect(main.nvcsPerToken).toBeCloseTo(0.001);
    expect(relay.us).toBeCloseTo(20);
    expect(relay.sysUs).toBeCloseTo(15);
    expect(relay.marginalUs).toBeCloseTo(20);
    expect(relay.vcsPerToken).toBeCloseTo(0.2);
    const table = threadTable('caption', rows);
    expect(table).toContain('| main | 10.00 | 30.00 (22.50 + 7.50) | 20.00 | 0.010 | 0.001 |');
    expect(table).toContain('| all threads | 10.00 | 50.00 (27.50 + 22.50) | 40.00 | 0.210 | 0.001 |');
  });
});
