/**
 * The simulator carries out a re-shard as the live pool machine does (src/sim/reshard-exec.ts): the units of
 * src/policy reshardSteps one at a time; start first on free GPUs, drain first on held ones; driven event by
 * event with a host that records what it was asked to do.
 */
import { describe, expect, it } from 'vitest';
import { UnitExecutor, unitsOf, type PlacedInstance, type UnitHost } from '../../src/sim/reshard-exec.ts';
import { reshardSteps, type StaggerUnit } from '../../src/policy/pool-shards.ts';
import { simulate } from '../../src/sim/index.ts';
import { loadTrace } from '../../src/sim/trace.ts';

interface Fake { id: string; tp: number; gpus: number[]; state: 'starting' | 'active' | 'draining' | 'stopped' }

function fakeHost(initial: Fake[]) {
  const insts = [...initial];
  const log: string[] = [];
  let n = 0;
  const host: UnitHost<Fake> = {
    start: (tp, gpus) => {
      const f: Fake = { id: `new${n++}`, tp, gpus: [...gpus], state: 'starting' };
      insts.push(f);
      log.push(`start ${f.id} TP${tp} [${gpus.join(',')}]`);
      return f;
    },
    drain: (i) => {
      i.state = 'draining';
      log.push(`drain ${i.id}`);
    },
    ready: (i) => i.state === 'active',
    gone: (i) => i.state === 'stopped',
    byId: (id) => insts.find((i) => i.id === id && i.state !== 'stopped'),
    gpusOf: (i) => i.gpus,
    idOf: (i) => i.id,
    holding: () => insts.filter((i) => i.state !== 'stopped'),
  };
  return { insts, log, host, get: (id: string) => insts.find((i) => i.id === id)! };
}

describe('UnitExecutor', () => {
  it('a unit on held GPUs drains the replaced instances first, waits until they stopped, then starts the new one; units run in order', () => {
    const cur: Fake[] = [
      { id: 'a', tp: 4, gpus: [0, 1, 2, 3], state: 'active' },
      { id: 'b', tp: 4, gpus: [4, 5, 6, 7], state: 'active' },
    ];
    const units: StaggerUnit[] = [
      { kind: 'reshard', tp: 2, gpus: [0, 1], from: ['a'], savingJ: 2 },
      { kind: 'start', tp: 2, gpus: [2, 3], from: [], savingJ: 1 },
    ];
    const h = fakeHost(cur);
    const x = new UnitExecutor(units, h.host);
    x.advance(0);
    expect(h.log).toEqual(['drain a']);
    // nothing moves while a is still draining
    x.advance(1);
    expect(h.log).toEqual(['drain a']);
    h.get('a').state = 'stopped';
    x.advance(2);
    expect(h.log).toEqual(['drain a', 'start new0 TP2 [0,1]']);
    expect(x.unit).toBe(0);
    h.get('new0').state = 'active';
    x.advance(3);
    // the next unit's GPUs are free: it starts at once, with nothing to retire
    expect(h.log.at(-1)).toBe('start new1 TP2 [2,3]');
    expect(x.finished).toBe(false);
    h.get('new1').state = 'active';
    x.advance(4);
    expect(x.finished).toBe(true);
    expect(h.get('b').state).toBe('active');
  });

  it('a unit on free GPUs starts the new instance first and retires the replaced ones once it is ready', () => {
    const h = fakeHost([{ id: 'a', tp: 2, gpus: [0, 1], state: 'active' }]);
    const x = new UnitExecutor([{ kind: 'reshard', tp: 4, gpus: [4, 5, 6, 7], from: ['a'], savingJ: 1 }], h.host);
    x.advance(0);
    expect(h.log).toEqual(['start new0 TP4 [4,5,6,7]']);
    expect(h.get('a').state).toBe('active');
    h.get('new0').state = 'active';
    x.advance(1);
    expect(h.log).toEqual(['start new0 TP4 [4,5,6,7]', 'drain a']);
    expect(x.finished).toBe(false);
    h.get('a').state = 'stopped';
    x.advance(2);
    expect(x.finished).toBe(true);
  });

  it('a stop unit drains; a started instance that leaves the pool no longer holds the re-shard up', () => {
    const h = fakeHost([{ id: 'a', tp: 2, gpus: [0, 1], state: 'active' }, { id: 'b', tp: 2, gpus: [2, 3], state: 'active' }]);
    const x = new UnitExecutor([
      { kind: 'start', tp: 2, gpus: [4, 5], from: [], savingJ: 1 },
      { kind: 'stop', tp: 2, gpus: [2, 3], from: ['b'], savingJ: 0 },
    ], h.host);
    x.advance(0);
    h.get('new0').state = 'stopped'; // a cluster resize removed it while it started
    x.advance(1);
    expect(h.log).toEqual(['start new0 TP2 [4,5]', 'drain b']);
    h.get('b').state = 'stopped';
    x.advance(2);
    expect(x.finished).toBe(true);
  });

  it('runs the units the policy plans for 4xTP2 -> 2xTP4 and ends with the target layout, never two instances on one GPU', () => {
    const cur = [0, 2, 4, 6].map((g, k) => ({ id: `i${k}`, tp: 2, gpus: [g, g + 1] }));
    const units = reshardSteps(cur, [{ tp: 4, count: 2 }], 8).flat();
    const h = fakeHost(cur.map((c) => ({ ...c, state: 'active' as const })));
    const x = new UnitExecutor(units, h.host);
    for (let t = 0; t < 100 && !x.finished; t++) {
      x.advance(t);
      const held = h.insts.filter((i) => i.state !== 'stopped').flatMap((i) => i.gpus);
      expect(new Set(held).size, `t=${t}: ${JSON.stringify(h.insts)}`).toBe(held.length);
      // every instance moves one state per tick: starting -> active, draining -> stopped
      for (const i of h.insts) if (i.state === 'starting') i.state = 'active';
      else if (i.state === 'draining') i.state = 'stopped';
    }
    expect(x.finished).toBe(true);
    expect(h.insts.filter((i) => i.state === 'active').map((i) => i.tp).sort()).toEqual([4, 4]);
  });
});

describe('unitsOf: the simulator\'s instances', () => {
  it('4xTP2 -> 1xTP2 drains the busiest first and keeps the one with the fewest requests outstanding, as the live pool machine does', () => {
    const insts: PlacedInstance[] = [1, 7, 0, 2].map((outstanding, k) => ({ id: `i${k}`, tp: 2, state: 'active', outstanding }));
    const drained: string[] = [];
    const x = unitsOf(() => insts.filter((i) => i.state !== 'stopped'), [{ tp: 2, count: 1 }], 8, {
      start: () => { throw new Error('no start in a scale-in'); },
      drain: (i) => { i.state = 'draining'; drained.push(i.id); },
    });
    for (let t = 0; t < 10 && !x.finished; t++) {
      x.advance(t);
      for (const i of insts) if (i.state === 'draining') i.state = 'stopped';
    }
    expect(x.finished).toBe(true);
    expect(drained).toEqual(['i1', 'i3', 'i0']);
    expect(insts.filter((i) => i.state === 'active').map((i) => i.id)).toEqual(['i2']);
  });
});

describe('simulate: re-shard execution', () => {
  it("'units' charges the engines a re-shard starts (their GPUs held while starting), 'overlap' does not; same arrivals", async () => {
    const base = {
      policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, dispatch: 'policy',
      profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 4, asConfigured: true,
      epochs: { clusterS: 3600, poolS: 30, instanceS: 5 },
      knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
      trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 300_000, speed: 2 },
    } as const;
    const overlap = await simulate({ ...base, reshardExecution: 'overlap' });
    const units = await simulate({ ...base, reshardExecution: 'units', costs: { instanceStartS: 20 } });
    expect(overlap.reconfigurations.reshard).toBeGreaterThan(0);
    expect(units.reconfigurations.reshard).toBeGreaterThan(0);
    // same arrivals (speed 2: 300 s of trace in 150 s), each served or rejected: the engines 'units' starts for
    // 20 s may cost it a few rejections that 'overlap' does not have
    const served = (r: typeof units) => Object.values(r.latency.byType).reduce((a, x) => a + (x?.requests ?? 0), 0);
    expect(units.requests).toBe(overlap.requests);
    for (const r of [overlap, units]) expect(served(r) + r.rejected).toBe(r.requests);
    expect(overlap.durationS).toBeLessThan(160);
    expect(units.energyBreakdown!.startingKWh).toBeGreaterThan(overlap.energyBreakdown!.startingKWh);
  }, 120_000);
});

describe('simulate: engine stop', () => {
  // the twin's window (test/bench/twin-reshard.bench.ts): 4xTP2, whose first pool epoch (t = 30 s) re-shards to
  // 1xTP2 with three stop units; the instance machines' drains mark when each unit began
  const run = async (instanceStopS: number) => {
    const drains: number[] = [];
    const r = await simulate({
      policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, dispatch: 'policy', predictor: 'online',
      profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 2, asConfigured: true,
      epochs: { clusterS: 3600, poolS: 30, instanceS: 5 }, reshardExecution: 'units', costs: { instanceStartS: 4, instanceStopS },
      knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
      trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 120_000, speed: 2 },
    }, undefined, {
      onInstanceStep: (_inst, _cfg, _ev, t, fx) => {
        for (const e of fx) if (e.kind === 'event' && e.event === 'instance' && (e.decision as { state?: string }).state === 'draining') drains.push(t);
      },
    });
    return { r, drains };
  };

  it('a drained engine holds its GPUs for costs.instanceStopS: each stop unit begins once the previous engine has exited', async () => {
    const quick = await run(0);
    const slow = await run(10);
    // the same re-shard: three stop units from t = 30 s
    expect(quick.drains.length).toBe(3);
    expect(slow.drains.length).toBe(3);
    expect(quick.drains[0]).toBe(30_000);
    expect(slow.drains[0]).toBe(30_000);
    // each unit waits for the previous one's engine to exit (its drain, then 10 s), never less
    for (let k = 1; k < 3; k++) expect(slow.drains[k]! - slow.drains[k - 1]!).toBeGreaterThanOrEqual(10_000);
    expect(Math.min(...quick.drains.slice(1).map((t, k) => t - quick.drains[k]!))).toBeLessThan(10_000);
    // the exiting engines' GPUs draw loaded idle power meanwhile (charged with the starting ones)
    expect(slow.r.energyBreakdown!.startingKWh).toBeGreaterThan(quick.r.energyBreakdown!.startingKWh);
    expect(slow.r.energyKWh).toBeGreaterThan(quick.r.energyKWh);
  }, 120_000);
});

describe('trace speed', () => {
  it('compresses the window as replay --speed does: same records, times divided by the speed', async () => {
    const path = 'data/traces/AzureLLMInferenceTrace_conv.csv';
    const one = await loadTrace(path, { durationMs: 60_000, rebase: true });
    const two = await loadTrace(path, { durationMs: 60_000, rebase: true, speed: 2 });
    expect(two.length).toBe(one.length);
    expect(one.length).toBeGreaterThan(50);
    for (let k = 0; k < one.length; k++) expect(two[k]!.tMs).toBeCloseTo(one[k]!.tMs / 2, 9);
    await expect(loadTrace(path, { speed: 0 })).rejects.toThrow(RangeError);
  });
});
