/**
 * The simulator's drain migration (src/sim/drain-migration.ts migrateDraining) picks the requests to hand to peers by
 * the live instance manager's rule, src/policy legsToMigrate, on what the instance knows (a first token sent, the
 * tokens counted from it at the request's TBT, its predicted output); the continuation carries the tokens the engine
 * did generate.
 */
import { describe, expect, it } from 'vitest';
import type { CoreRequest } from '../../src/engine/core-types.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import { DrainLog, migrateDraining, type MigrationHost } from '../../src/sim/drain-migration.ts';
import type { ReqState, SimInstance } from '../../src/sim/state.ts';

function drainingInstance(reqs: { r: CoreRequest; generated: number; firstMs: number; tbtSum: number; tbtN: number; predTokens?: number }[]) {
  const cancelled: string[] = [];
  const finished: string[] = [];
  const moved: InferenceRequest[] = [];
  const byId = new Map(reqs.map((x) => [x.r.id, x]));
  const pool = { instances: [] as unknown[] };
  const inst = {
    id: 'pool-i0', state: 'draining', pool,
    core: { requestOf: (id: string) => byId.get(id)?.r, generatedOf: (id: string) => byId.get(id)?.generated ?? 0, cancel: (id: string) => cancelled.push(id) },
    brain: { s: { queue: [], running: new Map(reqs.map((x) => [x.r.id, {}])) }, step: (ev: { type: string; id?: string }) => { if (ev.type === 'finished') finished.push(ev.id!); return []; } },
  };
  const peer = { id: 'pool-i1', state: 'active', pool, brain: {} };
  pool.instances.push(inst, peer);
  const states = new Map<string, ReqState>(reqs.map((x) => [x.r.id, { arrivalMs: 0, ttftSloMs: 500, type: 'SS', pred: 'SS', firstMs: x.firstMs, lastMs: x.firstMs, tbtSum: x.tbtSum, tbtN: x.tbtN, inst: inst as unknown as SimInstance, moves: 0, ...(x.predTokens !== undefined ? { predTokens: x.predTokens } : {}) }]));
  const host: MigrationHost = {
    reqs: states, admitted: new Map(),
    leaderOf: () => ({ move: (_from: string, rs: InferenceRequest[]) => { moved.push(...rs); return rs.map((r) => ({ id: r.id, instance: 'pool-i1' })); } }) as unknown as ReturnType<MigrationHost['leaderOf']>,
  };
  return { inst: inst as unknown as SimInstance, host, cancelled, finished, moved, states };
}

const req = (id: string, out: number): CoreRequest => ({ id, arrivalMs: 0, promptTokens: 100, outputTokens: out });

describe('simulated drain migration: the live rule', () => {
  it('a request still without its first token stays on the draining instance; one decoding moves with the tokens it generated', () => {
    const { inst, host, cancelled, finished, moved, states } = drainingInstance([
      { r: req('prefilling', 2000), generated: 0, firstMs: -1, tbtSum: 0, tbtN: 0 },
      { r: req('decoding', 2000), generated: 40, firstMs: 1000, tbtSum: 39 * 50, tbtN: 39 },
    ]);
    const log = new DrainLog();
    migrateDraining(inst, 3000, host, { minRemainingS: 1 }, log);
    expect(moved.map((r) => r.id)).toEqual(['decoding']);
    // the continuation: the prompt plus the 40 tokens the engine generated, the 1,960 left
    expect(moved[0]).toMatchObject({ inputTokens: 140, maxTokens: 1960, moves: 1 });
    expect(cancelled).toEqual(['decoding']);
    expect(finished).toEqual(['decoding']);
    expect(states.get('decoding')!.continued).toBe(true);
    expect(states.get('prefilling')!.continued).toBeUndefined();
    expect(log.migrated).toBe(1);
    expect(log.reprefillTokens).toBe(40);
  });

  it('the decision counts the tokens from the first token at its TBT (what the live instance knows), not the engine\'s count', () => {
    // 2 s after its first token at 100 ms a token: 21 counted, 19 of 40 left (1.9 s): moves at minRemainingS 1.5, though
    // the engine has generated 35 (0.5 s left)
    const { inst, host, moved } = drainingInstance([{ r: req('a', 40), generated: 35, firstMs: 1000, tbtSum: 0, tbtN: 0 }]);
    migrateDraining(inst, 3000, host, { minRemainingS: 1.5 }, new DrainLog());
    expect(moved.map((r) => r.id)).toEqual(['a']);
    expect(moved[0]).toMatchObject({ inputTokens: 135, maxTokens: 5 });
  });

  it("the decision reads the request's predicted output as the live instance does, not its true output: one near its predicted end stays", () => {
    // 41 tokens counted (2 s at 50 ms), 2,000 to generate in truth: predicted 60, 19 left (0.95 s) stays at 1 s;
    // predicted 600, 559 left, moves; the continuation still carries the true rest
    const { inst, host, moved } = drainingInstance([
      { r: req('near', 2000), generated: 41, firstMs: 1000, tbtSum: 40 * 50, tbtN: 40, predTokens: 60 },
      { r: req('long', 2000), generated: 41, firstMs: 1000, tbtSum: 40 * 50, tbtN: 40, predTokens: 600 },
    ]);
    migrateDraining(inst, 3000, host, { minRemainingS: 1 }, new DrainLog());
    expect(moved.map((r) => r.id)).toEqual(['long']);
    expect(moved[0]).toMatchObject({ inputTokens: 141, maxTokens: 1959 });
  });
});
