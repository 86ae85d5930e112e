import { describe, expect, it } from 'vitest';
import { classifyLengths, createPerfModel, DEFAULT_REQUEST_TYPES, getGpuSpec, getModelSpec, MODELS, UnknownIdError } from '../../src/model/index.ts';

const pm = createPerfModel('llama2-70b', 'h100');
const decode = (b: number, ctx = 600) => ({ prefillTokens: 0, decodeSeqs: b, decodeContextTokens: b * ctx });

describe('catalog', () => {
  it('has the required models with real dimensions and errors on unknown ids', () => {
    for (const id of ['llama2-7b', 'llama2-13b', 'llama2-70b', 'llama3.1-8b', 'llama3.1-70b', 'qwen3-8b', 'qwen3-14b', 'qwen3-32b', 'mixtral-8x7b']) expect(getModelSpec(id).id).toBe(id);
    expect(getModelSpec('llama2-70b')).toMatchObject({ layers: 80, hiddenSize: 8192, kvHeads: 8 });
    expect(MODELS['mixtral-8x7b']!.experts).toBe(8);
    expect(() => getModelSpec('gpt-5')).toThrow(/known models: .*llama2-70b/);
    expect(() => getGpuSpec('tpu')).toThrow(UnknownIdError);
    expect(getGpuSpec('h100').tdpW).toBe(700);
    expect([getGpuSpec('h100').family, getGpuSpec('h200').family, getGpuSpec('a100-80gb').family, getGpuSpec('a100-40gb').family]).toEqual(['hopper', 'hopper', 'ampere', 'ampere']);
  });
  it('streams every weight but an untied input-embedding table', async () => {
    const { stepBytesPerGpu } = await import('../../src/model/perf.ts');
    const m = getModelSpec('llama3.1-8b');
    const one = { prefillTokens: 0, decodeSeqs: 1, decodeContextTokens: 0 };
    expect(stepBytesPerGpu(m, one, 1)).toBeCloseTo((m.paramsB * 1e9 - m.vocab * m.hiddenSize) * 2, -3);
    const g = getModelSpec('gemma3-12b'); // tied: the LM head reads the embedding matrix
    expect(stepBytesPerGpu(g, one, 1)).toBeCloseTo(g.paramsB * 1e9 * 2, -3);
  });
});

describe('perf model sanity', () => {
  it('H200 beats H100 on memory-bound decode by about its bandwidth ratio; A100 is slower', () => {
    const b = decode(8, 2000);
    const h100 = createPerfModel('llama3.1-8b', 'h100').stepTimeMs(b, 1, 1980), h200 = createPerfModel('llama3.1-8b', 'h200').stepTimeMs(b, 1, 1980);
    expect(h100 / h200).toBeGreaterThan(1.15);
    expect(h100 / h200).toBeLessThan(4800 / 3350 + 0.01);
    expect(createPerfModel('llama3.1-8b', 'a100-80gb').stepTimeMs(b, 1, 1410)).toBeGreaterThan(h100);
  });
  it('the power cap throttles the clock: a long prefill runs at TDP below max clock, and takes longer than uncapped', () => {
    const pm8 = createPerfModel('llama3.1-8b', 'h100');
    const bd = pm8.breakdown({ prefillTokens: 16384, decodeSeqs: 0, decodeContextTokens: 0 }, 1, 1980);
    expect(bd.powerW).toBeLessThanOrEqual(700);
    if (bd.powerW === 700) expect(bd.effClockMhz).toBeLessThan(1980);
    const small = pm8.breakdown(decode(1, 100), 1, 1980);
    expect(small.effClockMhz).toBe(1980);
    expect(small.powerW).toBeLessThan(700);
  });
  // power: the paper-era engine's CPU-side per-sequence time (the GPU waits at loaded idle meanwhile) grows faster
  // with batch than the GPU work (SplitwiseSim: ~0.26 ms per sequence), so its step power falls a few % with batch,
  // as ML.ENERGY v2's old-vLLM runs show; today's engine's power rises with batch
  it('more batch -> longer steps (both engines) and more power (today\'s engine); the paper-era engine within a few %', () => {
    const now = createPerfModel('llama2-70b', 'h100', { engine: 'vllm' });
    for (const tp of [2, 4, 8]) {
      let t = 0, p = 0, t0 = 0, p0 = 0;
      for (const b of [1, 4, 16, 64]) {
        const nt = now.stepTimeMs(decode(b), tp, 1980), np = now.stepPowerW(decode(b), tp, 1980);
        expect(nt).toBeGreaterThan(t);
        expect(np).toBeGreaterThan(p);
        t = nt; p = np;
        const ot = pm.stepTimeMs(decode(b), tp, 1980), op = pm.stepPowerW(decode(b), tp, 1980);
        expect(ot).toBeGreaterThan(t0);
        expect(op).toBeGreaterThan(p0 * 0.95);
        t0 = ot; p0 = op;
      }
      expect(now.stepPowerW(decode(64), tp, 1980)).toBeGreaterThan(now.stepPowerW(decode(1), tp, 1980));
    }
  });
  it('lower clock -> less power, longer prefill; decode slows at most in proportion to the clock', () => {
    const pre = { prefillTokens: 4096, decodeSeqs: 0, decodeContextTokens: 0 };
    let lastPow = Infinity, lastPre = 0;
    for (const f of [1980, 1600, 1200, 800]) {
      expect(pm.stepPowerW(decode(16), 4, f)).toBeLessThan(lastPow);
      expect(pm.stepTimeMs(pre, 4, f)).toBeGreaterThan(lastPre);
      lastPow = pm.stepPowerW(decode(16), 4, f); lastPre = pm.stepTimeMs(pre, 4, f);
    }
    const preSlow = pm.stepTimeMs(pre, 4, 800) / pm.stepTimeMs(pre, 4, 1980);
    const decSlow = pm.stepTimeMs(decode(8), 4, 800) / pm.stepTimeMs(decode(8), 4, 1980);
    expect(preSlow).toBeGreaterThan(1.8);
    // decode is memory-bound: its time follows the SM clock through L2/load pipes (memClockBeta) at most in proportion
    expect(decSlow).toBeGreaterThan(1);
    expect(decSlow).toBeLessThanOrEqual(1980 / 800 + 1e-9);
  });
  it('power stays within [idle, TDP] and loaded idle exceeds idle', () => {
    const big = { prefillTokens: 16384, decodeSeqs: 256, decodeContextTokens: 256 * 2000 };
    expect(pm.stepPowerW(big, 8, 1980)).toBeLessThanOrEqual(700);
    expect(pm.idlePowerW(8, 1980, true)).toBeGreaterThan(pm.idlePowerW(8, 1980, false));
    expect(pm.idlePowerW(8, 1980, false) * 8).toBeCloseTo(552, -1); // paper: 8 idle H100s ~550 W
  });
  it('rejects bad inputs with a clear error', () => {
    expect(() => pm.stepTimeMs(decode(1), 3.5, 1980)).toThrow(/tp must be an integer/);
    expect(() => pm.stepTimeMs(decode(1), 4, 2500)).toThrow(/outside h100's supported range/);
    expect(() => pm.stepTimeMs({ prefillTokens: -1, decodeSeqs: 0, decodeContextTokens: 0 }, 4, 1980)).toThrow(/prefillTokens/);
  });
  it('KV capacity grows with TP and TP2 of a 70B model is tight', () => {
    expect(pm.kvCapacityTokens(2)).toBeLessThan(pm.kvCapacityTokens(4));
    expect(pm.kvCapacityTokens(1)).toBe(0); // 138 GB of weights do not fit one 80 GB GPU
  });
});

describe('request types', () => {
  it('classifies by Table IV thresholds', () => {
    expect(classifyLengths(255, 99)).toBe('SS');
    expect(classifyLengths(256, 100)).toBe('MM');
    expect(classifyLengths(1024, 350)).toBe('LL');
    expect(classifyLengths(8192, 5000)).toBe('LL');
    expect(() => classifyLengths(8193, 10)).toThrow(/exceeds/);
    expect(DEFAULT_REQUEST_TYPES.find((t) => t.type === 'LS')).toMatchObject({ ttftSloMs: 2000, tbtSloMs: 100 });
    for (const t of DEFAULT_REQUEST_TYPES) expect(classifyLengths(t.inputTokens, t.outputTokens)).toBe(t.type);
  });
});
