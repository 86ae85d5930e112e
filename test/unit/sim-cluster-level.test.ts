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
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { idlePowerOf } from '../../src/model/profile.ts';
import { GPUS } from '../../src/model/catalog.ts';

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

  it('breaks the energy down into parts bounded by the GPUs, their idle power and the run time (step and fluid)', async () => {
    const trace = { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 10 * 60_000 } as const;
    const profile = loadProfile('profiles/llama2-70b.h100.json');
    const maxClock = Math.max(...profile.clocksMhz);
    const kWh = (w: number, s: number) => (w * s) / 3.6e6;
    for (const fidelity of ['step', 'fluid'] as const) {
      const single = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'single-pool', fidelity, trace });
      const dyn = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'dynamollm', fidelity, trace, rateScale: 0.3 });
      for (const r of [single, dyn]) {
        const b = r.energyBreakdown!;
        for (const v of Object.values(b)) expect(v).toBeGreaterThanOrEqual(0);
        expect(b.instanceBusyKWh).toBeGreaterThan(0);
        // no part draws more than every GPU at its power limit for the whole run
        const ceiling = kWh(12 * 8 * GPUS.h100!.tdpW, r.durationS);
        for (const [k, v] of Object.entries(b)) expect(v, `${r.policy} ${fidelity} ${k}`).toBeLessThanOrEqual(ceiling);
        for (const v of Object.values(r.energyByPoolKWh ?? {})) expect(v).toBeGreaterThan(0);
      }
      // single-pool: 12 TP8 instances at the maximum clock for the whole run, nothing starts, no GPU is left out.
      // The profile's loaded idle power of a TP8 instance at that clock bounds the parts from outside the ledger:
      // an instance idles at most the whole run, and stepping draws at least its idle power.
      const sb = single.energyBreakdown!;
      const idleAll = kWh(12 * idlePowerOf(profile, 8, maxClock), single.durationS);
      expect(sb.unallocatedKWh).toBe(0);
      expect(sb.startingKWh).toBe(0);
      expect(sb.instanceIdleKWh, `single ${fidelity} idle`).toBeGreaterThan(0);
      expect(sb.instanceIdleKWh, `single ${fidelity} idle`).toBeLessThanOrEqual(idleAll * (1 + 1e-9));
      expect(sb.instanceIdleKWh + sb.instanceBusyKWh, `single ${fidelity} instances`).toBeGreaterThanOrEqual(idleAll * (1 - 1e-9));
      expect(single.energyKWh, `single ${fidelity} total`).toBeGreaterThanOrEqual(idleAll * (1 - 1e-9));
      expect(Object.keys(single.energyByPoolKWh!)).toEqual(['pool-all']);
      expect(Object.keys(dyn.energyByPoolKWh!).length).toBeGreaterThan(1);
      // dynamollm at 30% of the load: the cluster plan leaves servers out of every pool; each GPU out of every
      // instance draws the GPU's idle power, so that part is at most 96 such GPUs for the whole run
      const db = dyn.energyBreakdown!;
      expect(db.unallocatedKWh).toBeGreaterThan(0);
      expect(db.unallocatedKWh, `dynamollm ${fidelity} unallocated`).toBeLessThanOrEqual(kWh(96 * GPUS.h100!.idlePowerW, dyn.durationS) * (1 + 1e-9));
      console.log(`${fidelity}: single idle ${sb.instanceIdleKWh.toFixed(3)} busy ${sb.instanceBusyKWh.toFixed(3)} (idle bound ${idleAll.toFixed(3)} kWh, ${single.durationS} s); dynamollm ${JSON.stringify(db)}`);
    }
  }, 120_000);
});
