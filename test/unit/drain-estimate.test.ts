/**
 * A draining instance's estimate of a request's remaining output (src/policy/drain-migration.ts remainingTokens): its
 * predicted output while it has sent fewer tokens, about as many again as it has sent past it, the rest of max_tokens
 * without a prediction; the live instance manager (actors/instance-manager/drain-migrate.ts legOf) and the simulator
 * (src/sim/classifier.ts predTokens, src/sim/drain-migration.ts) feed it the request's prediction.
 */
import { describe, expect, it } from 'vitest';
import { drainingRequests, legsToMigrate, remainingTokens, type RunningLeg } from '../../src/policy/drain-migration.ts';
import { legOf } from '../../actors/instance-manager/drain-migrate.ts';
import { OnlineOutputPredictor } from '../../src/policy/predictor.ts';
import { SimClassifier } from '../../src/sim/classifier.ts';
import { DEFAULT_THRESHOLDS } from '../../src/policy/slo.ts';
import { outputClassOf } from '../../protocols/request-types.ts';

// 2 s after its first token at 50 ms a token: 41 tokens sent
const leg = (id: string, maxTokens: number, predictedTokens?: number): RunningLeg => ({
  id, firstTokenMs: 1000, tbtSumMs: 40 * 50, tbtN: 40, maxTokens, continued: false, movable: true, ...(predictedTokens !== undefined ? { predictedTokens } : {}),
});

describe('drainingRequests: the remaining output from the prediction', () => {
  it('a chat request sent without max_tokens (the context left as its limit) near its predicted end stays; one predicted long moves', () => {
    const legs = [leg('near-end', 7000, 50), leg('long', 7000, 600)];
    expect(drainingRequests(legs, 3000, [])).toEqual([
      { id: 'near-end', generated: 41, remaining: 9, tbtMs: 50, continued: false }, // 0.45 s left
      { id: 'long', generated: 41, remaining: 559, tbtMs: 50, continued: false }, // 28 s left
    ]);
    expect(legsToMigrate(legs, 3000, [], { minRemainingS: 5 })).toEqual(['long']);
  });

  it('past its prediction a request is expected to run as long again as it has, capped by what max_tokens leaves', () => {
    expect(drainingRequests([leg('past', 7000, 30)], 3000, [])[0]!.remaining).toBe(41);
    expect(drainingRequests([leg('past-capped', 50, 30)], 3000, [])[0]!.remaining).toBe(9);
    // at its prediction it is past it
    expect(remainingTokens(30, 7000, 30)).toBe(30);
    expect(remainingTokens(29, 7000, 30)).toBe(1);
    // a prediction above max_tokens is capped by it
    expect(remainingTokens(41, 100, 500)).toBe(59);
    // 41 x 50 ms = 2.05 s left: moves at 2 s, not at 3 s
    expect(legsToMigrate([leg('past', 7000, 30)], 3000, [], { minRemainingS: 2 })).toEqual(['past']);
    expect(legsToMigrate([leg('past', 7000, 30)], 3000, [], { minRemainingS: 3 })).toEqual([]);
  });

  it('without a prediction, the rest of max_tokens', () => {
    expect(drainingRequests([leg('none', 7000)], 3000, [])[0]!.remaining).toBe(6959);
    expect(remainingTokens(41, 7000)).toBe(6959);
  });

  it("the live instance manager's legOf passes the request's predicted output (InferenceRequest.predictedOutputTokens)", () => {
    const running = (id: string, predictedOutputTokens?: number) => ({
      req: { id, direct: true, maxTokens: 7000, messages: [], ...(predictedOutputTokens !== undefined ? { predictedOutputTokens } : {}) }, firstTokenMs: 1000, tbtSum: 40 * 50, tbtN: 40,
    });
    expect(legOf(running('a', 50)).predictedTokens).toBe(50);
    expect(legOf(running('b'))).not.toHaveProperty('predictedTokens');
    expect(legsToMigrate([running('near-end', 50), running('long', 600), running('unpredicted')].map(legOf), 3000, [], { minRemainingS: 5 })).toEqual(['unpredicted', 'long']);
  });
});

describe("the simulator's predicted output (src/sim/classifier.ts predTokens)", () => {
  const rec = (inputTokens: number, outputTokens: number) => ({ tMs: 0, inputTokens, outputTokens });
  const opts = { seed: 3, oracle: false, thresholds: DEFAULT_THRESHOLDS, model: 'm' };

  it("the proxy's class mapped to tokens by the live predictor's estimate for that class, learning from completions; the classes unchanged", () => {
    const plain = new SimClassifier(opts), withTokens = new SimClassifier({ ...opts, predictTokens: true });
    const mirror = new OnlineOutputPredictor({ thresholds: DEFAULT_THRESHOLDS });
    for (let i = 0; i < 200; i++) {
      const r = rec(200 + (i % 7) * 300, 20 + ((i * 37) % 900));
      const a = plain.classify(r, `r${i}`)!, b = withTokens.classify(r, `r${i}`)!;
      expect(b.pred).toBe(a.pred);
      expect(a.predTokens).toBeUndefined();
      const f = { inputTokens: r.inputTokens, maxTokens: r.outputTokens, model: 'm' };
      expect(b.predTokens).toBe(mirror.predictClass(f, outputClassOf(b.pred)).tokens);
      withTokens.completed(`r${i}`);
      mirror.observe(f, r.outputTokens);
    }
    // learnt: a long request's M estimate is the M class's mean, not the 200-token default
    const f = { inputTokens: 500, maxTokens: 5000, model: 'm' };
    expect(mirror.predictClass(f, 'M').tokens).not.toBe(200);
  });

  it("the online predictor's own token estimate; the oracle's, the true output", () => {
    const online = new SimClassifier({ ...opts, predictor: 'online' });
    const mirror = new OnlineOutputPredictor({ thresholds: DEFAULT_THRESHOLDS });
    const r = rec(300, 400);
    expect(online.classify(r, 'x')!.predTokens).toBe(mirror.predict({ inputTokens: 300, maxTokens: 400, model: 'm' }).tokens);
    expect(new SimClassifier({ ...opts, oracle: true, predictTokens: true }).classify(r, 'y')!.predTokens).toBe(400);
  });
});
