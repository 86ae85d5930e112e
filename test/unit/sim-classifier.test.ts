/**
 * The simulator's intake classification (src/sim/classifier.ts). With `predictor: 'online'` a request's predicted
 * type is the live intake's (policy OnlineOutputPredictor over prompt tokens, max_tokens = the trace's output, the
 * model; it learns from completed requests), so the twin check's simulated pools see the mix the live pools see:
 * early in a run, before long answers have completed, the live intake predicts short outputs.
 */
import { describe, it, expect } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimClassifier } from '../../src/sim/classifier.ts';
import { DEFAULT_THRESHOLDS } from '../../src/policy/slo.ts';
import { OnlineOutputPredictor } from '../../src/policy/predictor.ts';
import { simulate } from '../../src/sim/index.ts';

const base = { seed: 7, oracle: false, thresholds: DEFAULT_THRESHOLDS, model: 'llama3.1-8b' };

describe('simulated intake classification', () => {
  it("'online' predicts what the live intake's predictor predicts, learning from completed requests only", () => {
    const c = new SimClassifier({ ...base, predictor: 'online' });
    const live = new OnlineOutputPredictor();
    const recs = [
      { tMs: 0, inputTokens: 500, outputTokens: 600 }, // ML
      { tMs: 1, inputTokens: 520, outputTokens: 700 }, // ML
      { tMs: 2, inputTokens: 510, outputTokens: 40 }, // MS
      { tMs: 3, inputTokens: 505, outputTokens: 650 }, // ML
    ];
    const preds: string[] = [];
    const expected: string[] = [];
    for (const [k, r] of recs.entries()) {
      preds.push(c.classify(r, `r${k}`)!.pred);
      expected.push(`M${live.predict({ inputTokens: r.inputTokens, maxTokens: r.outputTokens, model: base.model }).outputClass}`);
      // the first two complete before the next arrives (the third is refused: nothing learnt from it)
      if (k < 2) {
        c.completed(`r${k}`);
        live.observe({ inputTokens: r.inputTokens, maxTokens: r.outputTokens, model: base.model }, r.outputTokens);
      } else c.forget(`r${k}`);
    }
    expect(preds).toEqual(expected);
    // no observation yet: the live predictor's uniform prior says S; after two long answers it says L
    expect(preds[0]).toBe('MS');
    expect(preds[3]).toBe('ML');
    // max_tokens caps the class: a 40-token answer is never predicted longer
    expect(preds[2]).toBe('MS');
    // the true types are the trace's
    expect(c.classify(recs[0]!, 'x')!.type).toBe('ML');
  });

  it("a run with 'online' classifies long answers arriving together, before any completes, as short (the proxy gets 81% right)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cls-'));
    try {
      const path = join(dir, 'burst.csv');
      // 20 LL requests within one second: none completes before the last arrives
      const rows = Array.from({ length: 20 }, (_, k) => `2023-11-16 18:15:${String(10 + Math.floor(k / 20)).padStart(2, '0')}.${String(k * 40).padStart(3, '0')}0000,2000,500`);
      writeFileSync(path, `TIMESTAMP,ContextTokens,GeneratedTokens\n${rows.join('\n')}\n`);
      const opts = {
        model: 'llama3.1-8b', gpu: 'h100', servers: 1, gpusPerServer: 8, instanceTp: 2, profilePath: 'profiles/llama3.1-8b.h100.chunked.json', policy: 'dynamollm',
        fidelity: 'step', rateScale: 1, dispatch: 'policy', trace: { kind: 'file', path }, knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
      } as const;
      const online = await simulate({ ...opts, predictor: 'online' });
      const proxy = await simulate(opts);
      expect(online.requests).toBe(20);
      expect(online.misclassified).toBe(20);
      expect(proxy.misclassified).toBeLessThan(10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("'online' needs step fidelity (it learns from completions)", async () => {
    await expect(simulate({ model: 'llama3.1-8b', gpu: 'h100', servers: 1, policy: 'dynamollm', fidelity: 'fluid', predictor: 'online', trace: { kind: 'synth', shape: 'poisson', durationS: 60, meanRps: 1, seed: 1 } })).rejects.toThrow(/step fidelity/);
  });
});
