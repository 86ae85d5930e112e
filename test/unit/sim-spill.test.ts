/**
 * The simulator's intake order across pools (step fidelity, the pool machines dispatching): a pool that refuses a
 * request as overloaded spills it to the next pool of policy routePools, the order the live intake and the gateway's
 * routing try (the pools after the request's type in the plan's order, policy longerType: SS -> SM -> SL -> MS -> ...
 * -> LL, the pools the cluster plan forwards that type's remainder to), skipping the types no pool serves.
 */
import { describe, it, expect } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simulate } from '../../src/sim/index.ts';

describe('simulated spill between pools', () => {
  it("an overloaded S-input burst spills along its chain of pools, the plan's order (SS, SL, MS, LL pools)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-spill-'));
    try {
      // one server per pool: SS, SL, MS and LL; then 1,500 SS and 1,500 SL requests within a second, far more than
      // the SS and SL pools' queues hold (64 in the engine + 256 queued per instance)
      const rows: string[] = [];
      const at = (ms: number) => `2023-11-16 18:15:${String(10 + Math.floor(ms / 1000)).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}0000`;
      for (let k = 0; k < 20; k++) rows.push(`${at(k * 10)},500,50`, `${at(k * 10 + 5)},2000,500`);
      for (let k = 0; k < 1500; k++) rows.push(`${at(300 + Math.floor(k / 2))},100,50`, `${at(300 + Math.floor(k / 2))},100,500`);
      const path = join(dir, 'burst.csv');
      writeFileSync(path, `TIMESTAMP,ContextTokens,GeneratedTokens\n${rows.join('\n')}\n`);
      const byPool = new Map<string, number>();
      await simulate({
        model: 'llama3.1-8b', gpu: 'h100', servers: 4, policy: 'dynamollm', fidelity: 'step', rateScale: 1, predictorAccuracy: 1, dispatch: 'policy',
        knobs: { pools: 'per-type', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true }, trace: { kind: 'file', path },
      }, undefined, {
        onInstanceStep: (instance, _cfg, ev, _t, fx) => {
          if (ev.type !== 'admit' || ev.req.type[0] !== 'S' || !fx.some((e) => e.kind === 'admitted')) return;
          const pool = instance.replace(/-server-\d+-g\d+x\d+$/, '');
          byPool.set(pool, (byPool.get(pool) ?? 0) + 1);
        },
      });
      expect([...byPool.keys()].sort()).toEqual(['pool-LL', 'pool-MS', 'pool-SL', 'pool-SS']);
      expect(byPool.get('pool-MS')).toBeGreaterThan(0); // the burst did spill past the SL pool, to the next in the order
      expect(byPool.get('pool-LL')).toBeGreaterThan(0); // and past the MS pool
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
