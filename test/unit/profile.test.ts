import { describe, expect, it } from 'vitest';
import { createPerfModel, generateProfile, idlePowerOf, interpolate, isFeasible, maxLoadOf, parseProfile, ProfileError, ProfileRangeError, type Profile } from '../../src/model/index.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { DEFAULT_REQUEST_TYPES, representativeTypes } from '../../src/model/request-types.ts';

const perf = createPerfModel('llama2-70b', 'h100');
const small = generateProfile(perf, { tpDegrees: [4, 8], clocksMhz: [800, 1200, 1980], loadSteps: 6 });
const shipped = loadProfile(new URL('../../profiles/llama2-70b.h100.json', import.meta.url).pathname);

describe('profile parse', () => {
  it('round-trips a generated profile and names bad fields', () => {
    expect(parseProfile(JSON.parse(JSON.stringify(small))).cells.length).toBe(small.cells.length);
    const bad = JSON.parse(JSON.stringify(small));
    bad.cells[3].ttftP99Ms = 'fast';
    expect(() => parseProfile(bad)).toThrow(/cells\.3\.ttftP99Ms/);
    const v2 = { ...JSON.parse(JSON.stringify(small)), version: 2 };
    expect(() => parseProfile(v2)).toThrow(ProfileError);
    const missing = JSON.parse(JSON.stringify(small));
    missing.cells.pop();
    expect(() => parseProfile(missing)).toThrow(/missing cells/);
  });
  it('records the scheduler budget it describes; a chunked-prefill profile bounds the long-prompt TBT tail', () => {
    expect(small.scheduler).toEqual({ maxNumBatchedTokens: 8192, maxNumSeqs: 256 });
    const ls = [{ type: 'LS' as const, inputTokens: 2978, outputTokens: 61, ttftSloMs: 2000, tbtSloMs: 100 }];
    const opts = { tpDegrees: [8], clocksMhz: [1980], loadSteps: 4, requestTypes: ls };
    const chunked = generateProfile(perf, { ...opts, scheduler: { maxNumBatchedTokens: 512 } });
    const whole = generateProfile(perf, opts);
    expect(parseProfile(JSON.parse(JSON.stringify(chunked))).scheduler).toEqual({ maxNumBatchedTokens: 512, maxNumSeqs: 256 });
    const bad = { ...JSON.parse(JSON.stringify(chunked)), scheduler: { maxNumBatchedTokens: 0, maxNumSeqs: 256 } };
    expect(() => parseProfile(bad)).toThrow(/scheduler\.maxNumBatchedTokens/);
    // prefilled whole, a 2978-token prompt stalls every decode of its step past the 100 ms TBT SLO as soon as ~1%
    // of steps carry one; in 512-token chunks a decode waits for one chunk only, so the instance carries more
    const wholeMax = whole.maxLoad[0]!.maxLoad, chunkedMax = chunked.maxLoad[0]!.maxLoad;
    expect(chunkedMax).toBeGreaterThan(2 * wholeMax);
    const l = chunked.loads.LS!.filter((x) => x > wholeMax && x <= chunkedMax).at(-1)!;
    expect(interpolate(chunked, 'LS', 8, 1980, l).tbtP99Ms).toBeLessThan(100);
  });
  it('shipped profiles are valid, small and state their provenance', () => {
    expect(shipped.source.kind).toBe('model');
    expect(shipped.tpDegrees).toEqual([2, 4, 8]);
    expect(shipped.clocksMhz[0]).toBe(800);
    expect(shipped.clocksMhz.at(-1)).toBe(1980);
    expect(JSON.stringify(shipped).length).toBeLessThan(1.5e6);
  });
});

describe('interpolation', () => {
  it('is exact on grid points', () => {
    for (const c of small.cells.filter((_, i) => i % 7 === 0)) {
      const v = interpolate(small, c.type, c.tp, c.clockMhz, c.load);
      expect(v.powerW).toBe(c.powerW);
      expect(v.ttftP99Ms).toBe(c.ttftP99Ms);
      expect(v.tbtP50Ms).toBe(c.tbtP50Ms);
      expect(v.meetsSlo).toBe(c.meetsSlo);
    }
  });
  it('is linear between clocks and between loads', () => {
    const l = small.loads.MM!;
    const at = (f: number, load: number) => small.cells.find((c) => c.type === 'MM' && c.tp === 8 && c.clockMhz === f && c.load === load)!;
    const mid = interpolate(small, 'MM', 8, 1000, l[1]!);
    expect(mid.powerW).toBeCloseTo((at(800, l[1]!).powerW + at(1200, l[1]!).powerW) / 2, 6);
    const midL = interpolate(small, 'MM', 8, 1200, (l[1]! + l[2]!) / 2);
    expect(midL.tbtP50Ms).toBeCloseTo((at(1200, l[1]!).tbtP50Ms + at(1200, l[2]!).tbtP50Ms) / 2, 6);
  });
  it('throws ProfileRangeError outside the grid, never extrapolates', () => {
    const maxL = small.loads.SS!.at(-1)!;
    const cases: [number, number, number][] = [[2, 1200, 0.1], [4, 700, 0.1], [4, 2000, 0.1], [4, 1200, maxL * 1.01], [4, 1200, -1]];
    for (const [tp, f, l] of cases) {
      try {
        interpolate(small, 'SS', tp, f, l);
        expect.unreachable(`tp${tp} ${f} ${l} should throw`);
      } catch (err) {
        expect(err).toBeInstanceOf(ProfileRangeError);
        expect((err as ProfileRangeError).retryable).toBe(false);
      }
    }
  });
});

describe('derived queries', () => {
  it('maxLoad, feasibility and idle power agree with the cells', () => {
    const m = maxLoadOf(small, 'MM', 8, 1980);
    expect(m).toBeGreaterThan(0);
    expect(isFeasible(small, 'MM', 8, 1980, m * 0.99)).toBe(true);
    expect(isFeasible(small, 'MM', 8, 1980, m * 1.01)).toBe(false);
    for (const c of small.cells.filter((c) => c.type === 'MM' && c.tp === 8 && c.clockMhz === 1980)) expect(c.meetsSlo).toBe(c.load <= m);
    const between = maxLoadOf(small, 'MM', 8, 1000);
    const lo = maxLoadOf(small, 'MM', 8, 800), hi = maxLoadOf(small, 'MM', 8, 1200);
    expect(between).toBeGreaterThanOrEqual(Math.min(lo, hi));
    expect(between).toBeLessThanOrEqual(Math.max(lo, hi));
    // both stored to 4 significant digits (the idle entry per GPU, the cell for the instance)
    const idleCell = small.cells.find((c) => c.tp === 8 && c.clockMhz === 1980 && c.load === 0)!.powerW;
    expect(Math.abs(idlePowerOf(small, 8, 1980) - idleCell) / idleCell).toBeLessThan(1e-3);
    expect(idlePowerOf(small, 8, 800)).toBeLessThan(idlePowerOf(small, 8, 1980));
  });
  it('power rises with load and clock in the profile', () => {
    const p: Profile = shipped;
    expect(interpolate(p, 'SS', 4, 1980, p.loads.SS![3]!).powerW).toBeGreaterThan(interpolate(p, 'SS', 4, 1980, p.loads.SS![1]!).powerW);
    expect(interpolate(p, 'SS', 4, 1980, p.loads.SS![3]!).powerW).toBeGreaterThan(interpolate(p, 'SS', 4, 800, p.loads.SS![3]!).powerW);
  });
});

describe('latencyWithinSlo (reading latencies at a load the SLO allows)', () => {
  it('does not blend a saturated grid cell into a load under the SLO limit; above the limit it is interpolate', async () => {
    const { latencyWithinSlo } = await import('../../src/model/profile.ts');
    const code = loadProfile('profiles/llama2-70b.h100.code.json');
    const spec = code.requestTypes.find((t) => t.type === 'SL')!;
    // SL's grid steps by 0.2 req/s (sized for TP4/TP8); at TP2 and a low clock the SLO holds only up to ~0.2-0.3, and
    // the next grid load is saturated: the first such (TP, clock) of the profile
    const nextOf = (ml: number) => code.loads.SL!.find((l) => l > ml);
    const at = code.tpDegrees.flatMap((tp) => code.clocksMhz.map((f) => ({ tp, f }))).find(({ tp, f }) => {
      const n = nextOf(maxLoadOf(code, 'SL', tp, f));
      return n !== undefined && interpolate(code, 'SL', tp, f, n).ttftP99Ms > 10 * spec.ttftSloMs;
    });
    expect(at).toBeDefined();
    const { tp, f } = at!;
    const ml = maxLoadOf(code, 'SL', tp, f);
    const next = nextOf(ml)!;
    const blended = interpolate(code, 'SL', tp, f, ml);
    expect(blended.ttftP99Ms).toBeGreaterThan(spec.ttftSloMs); // the blend: minutes of TTFT inside the SLO limit
    const read = latencyWithinSlo(code, 'SL', tp, f, ml);
    expect(read.ttftP99Ms).toBeLessThanOrEqual(spec.ttftSloMs);
    expect(read.tbtP99Ms).toBeLessThanOrEqual(spec.tbtSloMs);
    expect(read).toEqual(interpolate(code, 'SL', tp, f, code.loads.SL!.filter((l) => l < ml).at(-1)!));
    // a feasible interpolated cell is returned as is; a load past the limit too
    const lo = code.loads.SL!.filter((l) => l < ml).at(-1)! / 2;
    expect(latencyWithinSlo(code, 'SL', tp, f, lo)).toEqual(interpolate(code, 'SL', tp, f, lo));
    expect(latencyWithinSlo(code, 'SL', tp, f, (ml + next) / 2)).toEqual(interpolate(code, 'SL', tp, f, (ml + next) / 2));
  });
});

describe('representative lengths from a workload', () => {
  it('takes the mean lengths of each type, keeps defaults for absent types, drops over-long prompts', () => {
    const rows = [
      { inputTokens: 100, outputTokens: 10 }, { inputTokens: 200, outputTokens: 30 }, // SS: 150/20
      { inputTokens: 3000, outputTokens: 500 }, { inputTokens: 5001, outputTokens: 700 }, // LL: 4001/600 (rounded)
      { inputTokens: 9000, outputTokens: 5 }, // beyond the longest class
    ];
    const r = representativeTypes(rows);
    const get = (t: string) => r.types.find((x) => x.type === t)!;
    expect([get('SS').inputTokens, get('SS').outputTokens]).toEqual([150, 20]);
    expect([get('LL').inputTokens, get('LL').outputTokens]).toEqual([4001, 600]);
    expect(get('MM')).toEqual(DEFAULT_REQUEST_TYPES.find((x) => x.type === 'MM'));
    expect(r.counts.SS).toBe(2);
    expect(r.counts.MM).toBe(0);
    expect(r.dropped).toBe(1);
    expect(get('SS').ttftSloMs).toBe(250); // SLOs follow the class, not the workload
  });
});

