import { describe, expect, it } from 'vitest';
import { BatchingCore, KV_BLOCK_TOKENS } from '../../src/engine/core.ts';
import { QueueFullError } from '../../src/engine/errors.ts';
import type { PerfModel, StepBatch } from '../../src/model/types.ts';
import type { CoreEvent } from '../../src/engine/core-types.ts';

/** A small linear perf model, so expected step times can be computed by hand. */
function linearPerf(): PerfModel & { calls: StepBatch[] } {
  const calls: StepBatch[] = [];
  return {
    calls,
    model: { id: 'toy', name: 'toy', layers: 1, hiddenSize: 1, heads: 1, kvHeads: 1, ffnSize: 1, vocab: 1, experts: 1, activeExperts: 1, paramsB: 1, activeParamsB: 1, dtypeBytes: 2, maxContext: 4096 },
    gpu: { id: 'toy', family: 'hopper', name: 'toy', peakBf16Tflops: 1, hbmGBps: 1, memGiB: 1, nvlinkGBps: 1, minClockMhz: 1000, maxClockMhz: 2000, clockStepMhz: 500, idlePowerW: 50, tdpW: 700, gpusPerServer: 8 },
    // 10 ms fixed + 0.01 ms per prefill token + 0.1 ms per decode seq, scaled by 2000/clock
    stepTimeMs(b, _tp, clock) {
      calls.push({ ...b });
      return (10 + 0.01 * b.prefillTokens + 0.1 * b.decodeSeqs) * (2000 / clock);
    },
    stepPowerW(_b, _tp, clock) {
      return 100 + 0.2 * clock;
    },
    idlePowerW(_tp, _clock, loaded) {
      return loaded ? 80 : 60;
    },
    kvCapacityTokens() {
      return 1600;
    },
    ttftMs(p, tp, clock) {
      return this.stepTimeMs({ prefillTokens: p, decodeSeqs: 0, decodeContextTokens: 0 }, tp, clock);
    },
    supportedClocks() {
      return [1000, 1500, 2000];
    },
  };
}

function runAll(core: BatchingCore, from = 0): { events: CoreEvent[]; end: number; steps: number } {
  let t = from;
  const events: CoreEvent[] = [];
  let steps = 0;
  for (;;) {
    const r = core.step(t);
    if (!r) break;
    steps++;
    t = r.startMs + r.durationMs;
    events.push(...r.events);
    if (steps > 100_000) throw new Error('runaway');
  }
  return { events, end: t, steps };
}

describe('BatchingCore', () => {
  it('prefills then decodes one request with the model step times and energy', () => {
    const perf = linearPerf();
    const core = new BatchingCore({ perf, tp: 2, clockMhz: 2000 });
    core.submit({ id: 'a', arrivalMs: 0, promptTokens: 100, outputTokens: 3 });
    const r1 = core.step(0)!;
    expect(r1.prefillTokens).toBe(100);
    expect(r1.durationMs).toBeCloseTo(11, 9);
    expect(r1.powerW).toBeCloseTo((100 + 400) * 2, 9);
    expect(r1.events).toEqual([{ kind: 'first_token', id: 'a', atMs: 11 }]);
    const r2 = core.step(11)!;
    expect(r2.decodeSeqs).toBe(1);
    expect(r2.prefillTokens).toBe(0);
    expect(perf.calls[1]).toMatchObject({ decodeSeqs: 1, decodeContextTokens: 101 });
    expect(r2.events).toEqual([{ kind: 'token', id: 'a', atMs: 21.1, index: 1 }]);
    const r3 = core.step(r2.startMs + r2.durationMs)!;
    const fin = r3.events.find((e) => e.kind === 'finished');
    expect(fin).toMatchObject({ id: 'a', promptTokens: 100, outputTokens: 3 });
    // all the energy went to the only request: 1000 W x (11 + 10.1 + 10.1) ms
    expect((fin as { energyJ: number }).energyJ).toBeCloseTo(1000 * (11 + 10.1 + 10.1) / 1000, 9);
    expect(core.step(100)).toBeNull();
    expect(core.stats()).toMatchObject({ running: 0, waiting: 0, kvUsedTokens: 0 });
    // idle energy from the end of the last step (31.2 ms) to 1031.2 ms at loaded idle 80 W x 2
    const before = core.stats().energyJ;
    core.idleUntil(31.2 + 1000);
    expect(core.stats().energyJ - before).toBeCloseTo(160, 6);
  });

  it('chunks a long prefill by max_num_batched_tokens and runs decodes first', () => {
    const perf = linearPerf();
    const core = new BatchingCore({ perf, tp: 1, clockMhz: 2000, maxNumBatchedTokens: 64 });
    core.submit({ id: 'short', arrivalMs: 0, promptTokens: 10, outputTokens: 5 });
    core.submit({ id: 'long', arrivalMs: 0, promptTokens: 150, outputTokens: 2 });
    const r1 = core.step(0)!;
    // short gets all 10 tokens, long a 54-token chunk
    expect(r1.prefillTokens).toBe(64);
    expect(r1.events.map((e) => e.id)).toEqual(['short']);
    const r2 = core.step(r1.startMs + r1.durationMs)!;
    // short decodes (1 token) and long continues with a 63-token chunk
    expect(r2.decodeSeqs).toBe(1);
    expect(r2.prefillTokens).toBe(63);
    const rest = runAll(core, r2.startMs + r2.durationMs);
    const longFirst = rest.events.find((e) => e.id === 'long' && e.kind === 'first_token');
    expect(longFirst).toBeDefined();
    expect(rest.events.filter((e) => e.kind === 'finished').map((e) => e.id).sort()).toEqual(['long', 'short']);
  });

  it('reports its prefill backlog: uncomputed prompt tokens in prefill order, the step in progress pro rata', () => {
    const core = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000, maxNumBatchedTokens: 64 });
    expect(core.prefillBacklog()).toEqual([]);
    expect(core.pendingPrefillTokens(0)).toBe(0);
    core.submit({ id: 'a', arrivalMs: 0, promptTokens: 100, outputTokens: 3, ttftDeadlineMs: 250 });
    core.submit({ id: 'b', arrivalMs: 0, promptTokens: 20, outputTokens: 3, ttftDeadlineMs: 400 });
    expect(core.prefillBacklog()).toEqual([{ tokens: 100, deadlineMs: 250 }, { tokens: 20, deadlineMs: 400 }]);
    expect(core.pendingPrefillTokens(0)).toBe(120);
    const r = core.step(0)!; // a's first 64-token chunk, committed: 36 of a and all of b left
    expect(r.prefillTokens).toBe(64);
    expect(core.prefillBacklog()).toEqual([{ tokens: 36, deadlineMs: 250 }, { tokens: 20, deadlineMs: 400 }]);
    expect(core.busyUntilMs(0)).toBe(r.startMs + r.durationMs);
    // halfway through the step, half of its 64 tokens are still to do
    expect(core.pendingPrefillTokens(r.durationMs / 2)).toBeCloseTo(56 + 32, 9);
    expect(core.pendingPrefillTokens(r.durationMs)).toBe(56);
    expect(core.busyUntilMs(r.durationMs)).toBeNull();
    runAll(core, r.durationMs);
    expect(core.prefillBacklog()).toEqual([]);
  });

  it('long_prefill_token_threshold: a long prompt takes at most that many tokens a step, a short one behind it is not held up', () => {
    const firstOf = (threshold: number) => {
      const core = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000, maxNumBatchedTokens: 64, longPrefillTokenThreshold: threshold });
      core.submit({ id: 'long', arrivalMs: 0, promptTokens: 300, outputTokens: 2 });
      core.submit({ id: 'short', arrivalMs: 0, promptTokens: 10, outputTokens: 2 });
      const r1 = core.step(0)!;
      const { events } = runAll(core, r1.startMs + r1.durationMs);
      const all = [...r1.events, ...events];
      const at = (id: string) => all.find((e) => e.id === id && e.kind === 'first_token')!.atMs;
      return { r1, short: at('short'), long: at('long') };
    };
    const off = firstOf(0), on = firstOf(32);
    // off (vLLM's default): the long prompt's chunks fill every step until it is done; the short one waits
    expect(off.r1.prefillTokens).toBe(64);
    expect(off.short).toBeGreaterThan(off.long - 1e-9);
    // on: 32 tokens of the long prompt and the whole short prompt share the first step
    expect(on.r1.prefillTokens).toBe(42);
    expect(on.short).toBe(on.r1.startMs + on.r1.durationMs);
    expect(on.short).toBeLessThan(off.short);
    expect(on.long).toBeGreaterThan(off.long); // the long prompt pays for it
    expect(() => new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000, longPrefillTokenThreshold: -1 })).toThrow(RangeError);
  });

  it('a step takes only the requests that have arrived by its start; with nothing running it starts at the first arrival', () => {
    const perf = linearPerf();
    const core = new BatchingCore({ perf, tp: 1, clockMhz: 2000 });
    core.submit({ id: 'a', arrivalMs: 0, promptTokens: 100, outputTokens: 3 });
    const r1 = core.step(0)!; // 0 - 11 ms
    // b arrives at 11.5 ms, after a's step ended at 11 ms; an engine whose timer ran late forms the next step at 11 ms
    core.submit({ id: 'b', arrivalMs: 11.5, promptTokens: 100, outputTokens: 2 });
    const r2 = core.step(r1.startMs + r1.durationMs)!;
    expect(r2.startMs).toBe(11);
    expect(r2).toMatchObject({ prefillTokens: 0, decodeSeqs: 1 });
    // b joins the step after, at the end of a's decode
    const r3 = core.step(r2.startMs + r2.durationMs)!;
    expect(r3.startMs).toBeCloseTo(21.1, 9);
    expect(r3.prefillTokens).toBe(100);
    expect(r3.events).toContainEqual({ kind: 'first_token', id: 'b', atMs: r3.startMs + r3.durationMs });
    runAll(core, r3.startMs + r3.durationMs);
    // an idle engine asked to step before its only request arrived starts at the arrival (it idled until then)
    core.submit({ id: 'c', arrivalMs: 500, promptTokens: 10, outputTokens: 1 });
    const r4 = core.step(400)!;
    expect(r4.startMs).toBe(500);
    expect(r4.events[0]).toMatchObject({ kind: 'first_token', id: 'c' });
  });

  it('caps running sequences at max_num_seqs', () => {
    const core = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000, maxNumSeqs: 2 });
    for (let i = 0; i < 5; i++) core.submit({ id: `r${i}`, arrivalMs: 0, promptTokens: 8, outputTokens: 4 });
    core.step(0);
    expect(core.stats()).toMatchObject({ running: 2, waiting: 3 });
    const all = runAll(core, 100);
    expect(all.events.filter((e) => e.kind === 'finished')).toHaveLength(5);
  });

  it('preempts the newest request when the KV cache is full and still finishes everything', () => {
    // capacity 1600 tokens = 100 blocks; three requests of 400 + 300 tokens cannot all fit at the end
    const core = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000 });
    for (const id of ['a', 'b', 'c']) core.submit({ id, arrivalMs: 0, promptTokens: 400, outputTokens: 300 });
    const all = runAll(core);
    const pre = all.events.filter((e) => e.kind === 'preempted');
    expect(pre.length).toBeGreaterThan(0);
    expect(pre[0].id).toBe('c');
    expect(core.preemptionCount()).toBe(pre.length);
    const fin = all.events.filter((e) => e.kind === 'finished');
    expect(fin.map((e) => e.id).sort()).toEqual(['a', 'b', 'c']);
    for (const f of fin) expect(f).toMatchObject({ outputTokens: 300 });
    // each request emits each token index exactly once despite recompute
    const cTokens = all.events.filter((e) => e.id === 'c' && (e.kind === 'token' || e.kind === 'first_token'));
    expect(cTokens).toHaveLength(300);
    expect(core.stats().kvUsedTokens).toBe(0);
    expect(core.stats().kvCapacityTokens).toBe(100 * KV_BLOCK_TOKENS);
  });

  it('splits step energy between requests by tokens processed and conserves it', () => {
    const core = new BatchingCore({ perf: linearPerf(), tp: 4, clockMhz: 1500 });
    core.submit({ id: 'a', arrivalMs: 0, promptTokens: 30, outputTokens: 10 });
    core.submit({ id: 'b', arrivalMs: 0, promptTokens: 90, outputTokens: 10 });
    const all = runAll(core);
    const fin = all.events.filter((e) => e.kind === 'finished') as Extract<CoreEvent, { kind: 'finished' }>[];
    const total = fin.reduce((s, f) => s + f.energyJ, 0);
    expect(total).toBeCloseTo(core.stats().energyJ, 9);
    const a = fin.find((f) => f.id === 'a')!;
    const b = fin.find((f) => f.id === 'b')!;
    expect(b.energyJ).toBeGreaterThan(a.energyJ);
  });

  it('a lower clock makes prefill slower and steps lower power', () => {
    const fast = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000 });
    const slow = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000 });
    slow.setClock(1000);
    fast.submit({ id: 'x', arrivalMs: 0, promptTokens: 500, outputTokens: 1 });
    slow.submit({ id: 'x', arrivalMs: 0, promptTokens: 500, outputTokens: 1 });
    const f = fast.step(0)!;
    const s = slow.step(0)!;
    expect(s.durationMs).toBeCloseTo(f.durationMs * 2, 9);
    expect(s.powerW).toBeLessThan(f.powerW);
  });

  it('bounds the waiting queue, cancels, reorders and hands out waiting requests', () => {
    const core = new BatchingCore({ perf: linearPerf(), tp: 1, clockMhz: 2000, maxWaiting: 3 });
    core.submit({ id: 'a', arrivalMs: 0, promptTokens: 8, outputTokens: 2, ttftDeadlineMs: 300 });
    core.submit({ id: 'b', arrivalMs: 1, promptTokens: 8, outputTokens: 2, ttftDeadlineMs: 100 });
    core.submit({ id: 'c', arrivalMs: 2, promptTokens: 8, outputTokens: 2, ttftDeadlineMs: 200 });
    let err: unknown;
    try {
      core.submit({ id: 'd', arrivalMs: 3, promptTokens: 8, outputTokens: 2 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as QueueFullError).retryable).toBe(true);
    core.reorderWaiting((x, y) => (x.ttftDeadlineMs ?? 0) - (y.ttftDeadlineMs ?? 0));
    expect(core.waiting().map((r) => r.id)).toEqual(['b', 'c', 'a']);
    expect(core.takeWaiting(['c']).map((r) => r.id)).toEqual(['c']);
    expect(core.cancel('a')).toBe(true);
    expect(core.cancel('zz')).toBe(false);
    const all = runAll(core);
    expect(all.events.filter((e) => e.kind === 'finished').map((e) => e.id)).toEqual(['b']);
  });

  it('sleeping drops idle power to the unloaded level and refuses work-in-progress', () => {
    const core = new BatchingCore({ perf: linearPerf(), tp: 2, clockMhz: 2000 });
    core.idleUntil(0);
    core.idleUntil(1000);
    expect(core.stats().energyJ).toBeCloseTo(160, 9); // 80 W x 2 GPUs x 1 s
    core.setSleeping(true, 1000);
    core.idleUntil(2000);
    expect(core.stats().energyJ).toBeCloseTo(160 + 120, 9); // 60 W x 2 x 1 s
    core.setSleeping(false, 2000);
    core.submit({ id: 'a', arrivalMs: 2000, promptTokens: 8, outputTokens: 2 });
    expect(() => core.setSleeping(true, 2000)).toThrow();
  });
});
