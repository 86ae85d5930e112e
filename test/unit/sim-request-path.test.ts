/**
 * The live data path's own time (SimOptions.requestPathMs, docs/DATAPATH.md): a simulated request reaches its pool's
 * dispatch `toEngineMs` after its client sent it, its first token reaches the client `toClientMs` after the engine
 * emitted it, and its TTFT (from the client's send, as the live client measures it) holds both.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'sim-path-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// three requests a second apart (ms timestamps): each finds an idle instance at its start-up clock
const trace = join(dir, 'spaced.jsonl');
writeFileSync(trace, [[0, 90, 20], [1000, 400, 30], [2000, 1200, 40]].map(([t, i, o]) => JSON.stringify({ timestamp: t, input_length: i, output_length: o })).join('\n') + '\n');

/** the twin check's clock-window shape (2 TP1 instances, the policy dispatch), epochs after the trace's last request. */
const opts = (path?: SimOptions['requestPathMs']): SimOptions => ({
  policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
  profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
  knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
  dispatch: 'policy', trace: { kind: 'file', path: trace, timeUnit: 'ms' }, instanceEpochPhaseMs: [4000, 4000],
  ...(path ? { requestPathMs: path } : {}),
});

async function run(o: SimOptions) {
  const ttft: number[] = [];
  const admits: { now: number; arrivalMs: number; deadlineMs: number; sloMs: number }[] = [];
  const r = await simulate(o, undefined, {
    onRequest: (q) => ttft.push(q.ttftMs),
    onInstanceStep: (_i, _c, ev, now) => {
      if (ev.type === 'admit') admits.push({ now, arrivalMs: ev.req.arrivalMs, deadlineMs: ev.req.ttftDeadlineMs, sloMs: ev.req.ttftSloMs });
    },
  });
  return { r, ttft, admits };
}

describe('simulated data path (requestPathMs)', () => {
  it('a request is dispatched toEngineMs after its send and its TTFT holds toEngineMs + toClientMs', async () => {
    const engine = await run(opts());
    const path = await run(opts({ toEngineMs: 7, toClientMs: 4 }));
    expect(engine.ttft).toHaveLength(3);
    expect(path.ttft).toHaveLength(3);
    // each engine TTFT is the same, the client's 11 ms longer
    for (let k = 0; k < 3; k++) expect(path.ttft[k]! - engine.ttft[k]!).toBeCloseTo(11, 6);
    // the instance machine admits it at its send + 7 ms; its arrival and its TTFT deadline stay the client's send's
    expect(engine.admits.map((a) => a.now)).toEqual([0, 1000, 2000]);
    expect(path.admits.map((a) => a.now)).toEqual([7, 1007, 2007]);
    expect(path.admits.map((a) => a.arrivalMs)).toEqual([0, 1000, 2000]);
    expect(path.admits.map((a) => a.deadlineMs - a.arrivalMs)).toEqual(engine.admits.map((a) => a.deadlineMs - a.arrivalMs));
    expect(path.r.latency.byType.SS?.ttftP50Ms).toBeCloseTo((engine.r.latency.byType.SS?.ttftP50Ms ?? 0) + 11, 6);
  }, 60_000);

  it('toGatewayMs (the send to the gateway\'s arrival stamp) delays the dispatch and each TTFT by exactly that much', async () => {
    const engine = await run(opts({ toEngineMs: 7 }));
    const gw = await run(opts({ toGatewayMs: 2.5, toEngineMs: 7 }));
    expect(gw.ttft).toHaveLength(3);
    for (let k = 0; k < 3; k++) expect(gw.ttft[k]! - engine.ttft[k]!).toBeCloseTo(2.5, 6);
    // the instance machine admits it at its send + 2.5 + 7 ms; its arrival stays the client's send
    expect(gw.admits.map((a) => a.now)).toEqual([9.5, 1009.5, 2009.5]);
    expect(gw.admits.map((a) => a.arrivalMs)).toEqual([0, 1000, 2000]);
    await expect(run(opts({ toGatewayMs: -1 }))).rejects.toThrow(/toGatewayMs/);
  }, 60_000);

  it('a started request reaches its engine startToEngineMs after its instance started it', async () => {
    const engine = await run(opts());
    const hop = await run(opts({ startToEngineMs: 5 }));
    expect(hop.ttft).toHaveLength(3);
    // the instance machine admits (and starts) it at its send, as without the hop; the engine takes it 5 ms later, so
    // each idle engine's first token comes 5 ms later
    expect(hop.admits.map((a) => a.now)).toEqual([0, 1000, 2000]);
    for (let k = 0; k < 3; k++) expect(hop.ttft[k]! - engine.ttft[k]!).toBeCloseTo(5, 6);
    // with the other two terms: all three add up
    const all = await run(opts({ toEngineMs: 7, toClientMs: 4, startToEngineMs: 5 }));
    for (let k = 0; k < 3; k++) expect(all.ttft[k]! - engine.ttft[k]!).toBeCloseTo(16, 6);
  }, 60_000);

  it('a request waiting for room in the engine is held the hop after its start, not after its admission', async () => {
    // one instance that takes one request into its engine at a time: the second waits in its machine's queue until
    // the first finishes, then starts and reaches the engine the hop later
    const one = (path?: SimOptions['requestPathMs']): SimOptions => ({ ...opts(path), gpusPerServer: 1, instanceEpochPhaseMs: [4000], instanceLimits: { maxInEngine: 1, maxQueued: 8 } });
    const burst = join(dir, 'burst.jsonl');
    writeFileSync(burst, [[0, 400, 30], [1, 400, 30]].map(([t, i, o]) => JSON.stringify({ timestamp: t, input_length: i, output_length: o })).join('\n') + '\n');
    const at = (path?: SimOptions['requestPathMs']) => run({ ...one(path), trace: { kind: 'file', path: burst, timeUnit: 'ms' } });
    const engine = await at();
    const hop = await at({ startToEngineMs: 5 });
    expect(hop.ttft).toHaveLength(2);
    // the first: 5 ms later; the second starts when the first ends (5 ms later too) and reaches its engine 5 ms after
    // that: 10 ms later in all
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const [a0, a1] = sorted(engine.ttft), [b0, b1] = sorted(hop.ttft);
    expect(b0! - a0!).toBeCloseTo(5, 6);
    expect(b1! - a1!).toBeCloseTo(10, 6);
  }, 60_000);

  it('is step fidelity only and never negative', async () => {
    await expect(simulate({ ...opts({ startToEngineMs: -1 }) })).rejects.toThrow(/startToEngineMs/);
    await expect(simulate({ ...opts({ startToEngineMs: 2 }), fidelity: 'fluid', instanceEpochPhaseMs: undefined, dispatch: undefined })).rejects.toThrow(/step fidelity/);
    await expect(simulate({ ...opts({ toEngineMs: -1 }) })).rejects.toThrow(/toEngineMs/);
    await expect(simulate({ ...opts({ toClientMs: Number.NaN }) })).rejects.toThrow(/toClientMs/);
    await expect(simulate({ ...opts({ toEngineMs: 1 }), fidelity: 'fluid', instanceEpochPhaseMs: undefined, dispatch: undefined })).rejects.toThrow(/step fidelity/);
  });
});
