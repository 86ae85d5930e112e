/**
 * The simulator's cluster level (scale-inst, dynamollm) is the live cluster manager's machine on its own
 * forecaster: it observes the load its instances measure and plans from it, never from the trace's future; and
 * every run says where its energy went (SimResult.energyBreakdown, energyByPoolKWh).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simulate } from '../../src/sim/index.ts';
import { rng } from '../../src/sim/trace.ts';

const dir = mkdtempSync(join(tmpdir(), 'sim-cluster-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An Azure-format CSV: LM requests (3k-token prompts, 200-token outputs) at `lowRps` until `stepMin`, then `highRps`. */
function stepTrace(minutes: number, stepMin: number, lowRps: number, highRps: number): string {
  const r = rng(11);
  const rows = ['TIMESTAMP,ContextTokens,GeneratedTokens'];
  const t0 = Date.UTC(2023, 10, 16, 18, 0, 0);
  for (let t = 0; t < minutes * 60; ) {
    t += -Math.log(1 - r()) / (t < stepMin * 60 ? lowRps : highRps);
    const d = new Date(t0 + t * 1000).toISOString().replace('T', ' ').replace('Z', '');
    rows.push(`${d},3000,200`);
  }
  const path = join(dir, `step-${minutes}-${stepMin}.csv`);
  writeFileSync(path, rows.join('\n') + '\n');
  return path;
}

describe('simulator cluster level', () => {
  it('plans from the load it has seen: a rise after the 30-min epoch is not provisioned for before it comes', async () => {
    // low load for 40 min, then 6x. The cluster epoch runs at 30 min (the machine's epoch timer from its lead at 0).
    // Planning from the trace's future grew pool-LM at the epoch, 10 min before the rise; the machine's forecaster
    // (the load its instances measured) keeps the plan until it sees the rise.
    const path = stepTrace(60, 40, 0.05, 0.3);
    const r = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'scale-inst', fidelity: 'fluid', trace: { kind: 'file', path } });
    const s = r.series;
    const gpusAt = (min: number) => {
      const k = s.tS.findIndex((x) => x >= min * 60);
      return Object.values(s.gpusByPool).reduce((n, g) => n + (g[k] ?? 0), 0);
    };
    expect(gpusAt(20)).toBeGreaterThan(0);
    expect(gpusAt(38)).toBe(gpusAt(20));
  }, 60_000);

  it('breaks the energy down into parts that sum to it (step and fluid)', async () => {
    const trace = { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 10 * 60_000 } as const;
    for (const fidelity of ['step', 'fluid'] as const) {
      const single = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'single-pool', fidelity, trace });
      const dyn = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'dynamollm', fidelity, trace, rateScale: 0.3 });
      for (const r of [single, dyn]) {
        const b = r.energyBreakdown!;
        expect(b.unallocatedKWh + b.startingKWh + b.instanceIdleKWh + b.instanceBusyKWh, `${r.policy} ${fidelity}`).toBeCloseTo(r.energyKWh, 6);
        for (const v of Object.values(b)) expect(v).toBeGreaterThanOrEqual(0);
        expect(b.instanceBusyKWh).toBeGreaterThan(0);
        // and the instances' energy by the pool they served in sums to their part
        const byPool = Object.values(r.energyByPoolKWh ?? {});
        expect(byPool.reduce((a, v) => a + v, 0), `${r.policy} ${fidelity} by pool`).toBeCloseTo(b.instanceIdleKWh + b.instanceBusyKWh, 6);
        for (const v of byPool) expect(v).toBeGreaterThan(0);
      }
      expect(Object.keys(single.energyByPoolKWh!)).toEqual(['pool-all']);
      expect(Object.keys(dyn.energyByPoolKWh!).length).toBeGreaterThan(1);
      // single-pool: every GPU in a TP8 instance, nothing starts
      expect(single.energyBreakdown!.unallocatedKWh).toBe(0);
      expect(single.energyBreakdown!.startingKWh).toBe(0);
      expect(single.energyBreakdown!.instanceIdleKWh).toBeGreaterThan(0);
      // dynamollm at 30% of the load: the cluster plan leaves servers out of every pool (powered, unloaded idle)
      expect(dyn.energyBreakdown!.unallocatedKWh).toBeGreaterThan(0);
    }
  }, 120_000);
});
