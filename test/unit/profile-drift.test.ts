/**
 * Every shipped generated profile (profiles/*.json, source.kind 'model') is what the current model generates:
 * the controllers decide with the profile, the emulator and the simulator's step model run src/model, so a
 * profile left behind by a recalibration would make them two models. A sample of cells (every type, TP and
 * clock reached; loads across the grid), a few max loads and every loaded-idle power are recomputed with the
 * profile's engine generation, scheduler budget and request types (regenerationOptions, engineOfProfile).
 * On a failure: `npx tsx src/cli/main.ts profile generate --like profiles/F.json --out profiles/F.json`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { engineOfProfile, maxFeasibleLoad, parseProfile, perfModelOfProfile, regenerationOptions, steadyState, type Profile } from '../../src/model/index.ts';

const DIR = 'profiles';
const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const generated = files.map((f) => ({ f, p: parseProfile(JSON.parse(readFileSync(`${DIR}/${f}`, 'utf8'))) })).filter((x) => x.p.source.kind === 'model');

/** relative difference, with 4-significant-digit rounding of the stored value allowed for. */
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-9);
const TOL = 0.005;

/** Deterministic sample: about n cells spread over the list (a prime stride visits every type/TP/clock/load mix). */
function sample<T>(xs: readonly T[], n: number): T[] {
  const stride = Math.max(1, Math.floor(xs.length / n)) | 1;
  return xs.filter((_, i) => i % stride === 0);
}

describe('shipped profiles match the current model', () => {
  it('there are generated profiles to check', () => {
    expect(generated.map((x) => x.f)).toContain('llama3.1-8b.h100.json');
    expect(generated.map((x) => x.f)).toContain('llama2-70b.h100.json');
  });

  for (const { f, p } of generated) {
    it(`${f} (engine ${engineOfProfile(p)})`, () => {
      const perf = perfModelOfProfile(p);
      const sched = regenerationOptions(p).scheduler ?? {};
      const spec = (t: string) => p.requestTypes.find((x) => x.type === t)!;
      const bad: string[] = [];
      for (const c of sample(p.cells, 40)) {
        const s = steadyState(perf, spec(c.type), c.tp, c.clockMhz, c.load, sched);
        const pairs: [string, number, number][] = [
          ['powerW', s.gpuPowerW * c.tp, c.powerW], ['ttftP50Ms', s.ttftP50Ms, c.ttftP50Ms], ['ttftP99Ms', s.ttftP99Ms, c.ttftP99Ms],
          ['tbtP50Ms', s.tbtP50Ms, c.tbtP50Ms], ['tbtP99Ms', s.tbtP99Ms, c.tbtP99Ms], ['energyPerRequestJ', s.energyPerRequestJ, c.energyPerRequestJ],
        ];
        for (const [k, model, shipped] of pairs) if (rel(model, shipped) > TOL) bad.push(`${c.type} tp${c.tp} ${c.clockMhz} MHz load ${c.load}: ${k} model ${model.toPrecision(4)} vs profile ${shipped}`);
      }
      for (const m of sample(p.maxLoad, 3)) {
        const model = maxFeasibleLoad(perf, spec(m.type), m.tp, m.clockMhz, sched);
        if (Math.abs(model - m.maxLoad) > Math.max(TOL * m.maxLoad, 1e-3)) bad.push(`${m.type} tp${m.tp} ${m.clockMhz} MHz: maxLoad model ${model.toPrecision(4)} vs profile ${m.maxLoad}`);
      }
      for (const i of p.idlePowerW ?? []) {
        const model = perf.idlePowerW(i.tp, i.clockMhz, true);
        if (rel(model, i.powerW) > TOL) bad.push(`idle tp${i.tp} ${i.clockMhz} MHz: model ${model.toPrecision(4)} vs profile ${i.powerW}`);
      }
      expect(bad, `${f} drifted from the model; regenerate it (see this file's header)`).toEqual([]);
    }, 60_000);
  }
});

// the check can fail: a profile whose power was scaled is caught
describe('the drift check catches a changed profile', () => {
  it('a profile with every power 3% higher differs from the model', () => {
    const { p } = generated.find((x) => x.f === 'llama2-70b.h100.json')!;
    const perf = perfModelOfProfile(p);
    const scaled: Profile = { ...p, cells: p.cells.map((c) => ({ ...c, powerW: c.powerW * 1.03 })) };
    const c = scaled.cells.find((x) => x.load > 0 && x.meetsSlo)!;
    const s = steadyState(perf, p.requestTypes.find((x) => x.type === c.type)!, c.tp, c.clockMhz, c.load, regenerationOptions(p).scheduler);
    expect(rel(s.gpuPowerW * c.tp, c.powerW)).toBeGreaterThan(TOL);
  });
});
