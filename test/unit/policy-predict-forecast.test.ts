import { describe, it, expect } from 'vitest';
import { OnlineOutputPredictor, LoadForecaster, classifyRequest, RequestLengthError } from '../../src/policy/index.ts';

describe('classifyRequest', () => {
  it('uses Table IV thresholds and accepts a predicted class', () => {
    expect(classifyRequest(100, 50)).toBe('SS');
    expect(classifyRequest(255, 99)).toBe('SS');
    expect(classifyRequest(256, 100)).toBe('MM');
    expect(classifyRequest(1024, 350)).toBe('LL');
    expect(classifyRequest(8192, 'M')).toBe('LM');
    expect(() => classifyRequest(8193, 'S')).toThrow(RequestLengthError);
  });
});

describe('OnlineOutputPredictor', () => {
  it('learns a per-tenant pattern: accuracy rises well above chance', () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pred = new OnlineOutputPredictor();
    // tenant A writes short answers, B long ones; C depends on prompt length; 10% noise
    const sample = () => {
      const tenant = ['A', 'B', 'C'][Math.floor(rnd() * 3)]!;
      const inputTokens = Math.floor(20 + rnd() * 3000);
      let out = tenant === 'A' ? 40 : tenant === 'B' ? 600 : inputTokens > 1000 ? 200 : 30;
      if (rnd() < 0.1) out = Math.floor(rnd() * 900);
      return { f: { inputTokens, model: 'llama2-70b', tenant }, out };
    };
    const window = (n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) {
        const { f, out } = sample();
        const c = pred.predict(f).outputClass;
        ok += c === (out < 100 ? 'S' : out < 350 ? 'M' : 'L') ? 1 : 0;
        pred.observe(f, out);
      }
      return ok / n;
    };
    const first = window(30);
    window(500);
    const later = window(300);
    console.log(`predictor accuracy: first 30 ${first.toFixed(2)}, after 530 ${later.toFixed(2)}; overall ${JSON.stringify(pred.accuracy())}`);
    expect(later).toBeGreaterThan(0.8);
    expect(later).toBeGreaterThan(first);
    expect(pred.accuracy().total).toBe(830);
  });

  it('never predicts above max_tokens', () => {
    const pred = new OnlineOutputPredictor();
    for (let i = 0; i < 50; i++) pred.observe({ inputTokens: 500, model: 'm' }, 800);
    expect(pred.predict({ inputTokens: 500, model: 'm' })).toEqual({ outputClass: 'L', tokens: 800 });
    const capped = pred.predict({ inputTokens: 500, model: 'm', maxTokens: 64 });
    expect(capped.outputClass).toBe('S');
    expect(capped.tokens).toBeLessThanOrEqual(64);
    expect(pred.predict({ inputTokens: 500, model: 'm', maxTokens: 300 })).toEqual({ outputClass: 'M', tokens: 200 });
  });
});

describe('LoadForecaster', () => {
  it('follows a step up within a few minutes and a step down after the recent window', () => {
    const f = new LoadForecaster({ safetyMargin: 0 });
    const MIN = 60_000;
    let t = 0;
    for (; t < 60 * MIN; t += MIN) f.observe(t, { MM: 10 });
    expect(f.forecast(t, 30 * MIN).MM).toBeCloseTo(10, 1);
    for (let i = 0; i < 3; i++, t += MIN) f.observe(t, { MM: 30 });
    const justAfter = f.forecast(t, 30 * MIN).MM!;
    expect(justAfter).toBeGreaterThanOrEqual(30);
    for (let i = 0; i < 20; i++, t += MIN) f.observe(t, { MM: 30 });
    const settled = f.forecast(t, 30 * MIN).MM!;
    expect(settled).toBeGreaterThanOrEqual(30);
    expect(settled).toBeLessThan(33);
    for (let i = 0; i < 20; i++, t += MIN) f.observe(t, { MM: 5 });
    expect(f.forecast(t, 30 * MIN).MM!).toBeLessThan(6);
  });

  it('uses the daily template to anticipate a peak seen one day earlier', () => {
    const f = new LoadForecaster({ safetyMargin: 0 });
    const MIN = 60_000, DAY = 24 * 60 * MIN;
    const load = (t: number) => ((t % DAY) >= 12 * 60 * MIN && (t % DAY) < 13 * 60 * MIN ? 50 : 10);
    let t = 0;
    for (; t < DAY + 11.75 * 60 * MIN; t += MIN) f.observe(t, { LL: load(t) });
    // 15 min before the daily peak: the trend alone says 10, the template says 50
    expect(f.forecast(t, 30 * MIN).LL!).toBeGreaterThan(45);
    const snap = f.snapshot();
    expect(new LoadForecaster({ safetyMargin: 0 }, snap).forecast(t, 30 * MIN)).toEqual(f.forecast(t, 30 * MIN));
  });
});
