/**
 * The TTFT SLO of prompts past Table IV's range (8,192 tokens): the L class's pace (2 s per 8,192 tokens) instead of
 * its flat 2 s, which no instance meets for a prompt of some tens of thousands of tokens even alone at max clock.
 */
import { describe, expect, it } from 'vitest';
import { createPerfModel, FLAT_TTFT_SLO_TOKENS, promptTtftSloMs, TTFT_SLO_MS } from '../../src/model/index.ts';
import { promptSloOf } from '../../src/policy/classify.ts';
import { withSlo } from '../../src/policy/slo.ts';
import { parseConfig } from '../../actors/common/config.ts';
import type { InferenceRequest } from '../../protocols/index.ts';

describe('TTFT SLO of long prompts', () => {
  it('keeps Table IV up to 8,192 tokens and scales linearly beyond', () => {
    expect(promptTtftSloMs(TTFT_SLO_MS.S, 200)).toBe(250);
    expect(promptTtftSloMs(TTFT_SLO_MS.L, 3000)).toBe(2000);
    expect(promptTtftSloMs(TTFT_SLO_MS.L, FLAT_TTFT_SLO_TOKENS)).toBe(2000);
    expect(promptTtftSloMs(TTFT_SLO_MS.L, 4 * FLAT_TTFT_SLO_TOKENS)).toBe(8000);
    expect(promptTtftSloMs(TTFT_SLO_MS.L, 131_072)).toBe(32_000);
  });

  it('the flat 2 s is out of reach for a long prompt alone on TP8 at max clock; the scaled SLO is met on TP4 and TP8', () => {
    const perf = createPerfModel('llama3.1-70b', 'h100');
    const alone = (n: number, tp: number) => perf.ttftMs(n, tp, perf.gpu.maxClockMhz);
    expect(alone(64_000, 8)).toBeGreaterThan(2000);
    for (const n of [16_384, 32_768, 65_536, 120_000]) {
      expect(alone(n, 8)).toBeLessThan(promptTtftSloMs(2000, n));
      expect(alone(n, 4)).toBeLessThan(promptTtftSloMs(2000, n));
    }
  });

  it('classification gives a long prompt its scaled SLO and deadline (live path)', () => {
    const c = parseConfig({});
    const req = { v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'x', inputTokens: 40_000, maxTokens: 10, arrivalMs: 1000 } as unknown as InferenceRequest;
    const r = withSlo(req, 'LS', c);
    expect(r.slo.ttftMs).toBeCloseTo((c.slo.ttftMs.L * 40_000) / 8192, 6);
    expect(r.ttftDeadlineMs).toBeCloseTo(1000 + r.slo.ttftMs, 6);
    expect(withSlo({ ...req, inputTokens: 3000 }, 'LS', c).slo.ttftMs).toBe(c.slo.ttftMs.L);
  });

  it('a request\'s SLO before classification (the gateway\'s journal bounds) is the one classification sets: its prompt decides it', () => {
    const c = parseConfig({});
    const req = { v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'x', inputTokens: 0, maxTokens: 10, arrivalMs: 1000 } as unknown as InferenceRequest;
    for (const [n, type] of [[100, 'SL'], [255, 'SS'], [256, 'MM'], [5000, 'LS'], [8192, 'LL'], [40_000, 'LS']] as const) {
      expect(promptSloOf(n, c), String(n)).toEqual(withSlo({ ...req, inputTokens: n }, type, c).slo);
    }
    expect(promptSloOf(100, c)).toEqual({ ttftMs: 250, tbtMs: 100 });
    expect(promptSloOf(40_000, c).ttftMs).toBeCloseTo((2000 * 40_000) / 8192, 6);
  });
});
