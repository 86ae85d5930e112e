/** Accuracy check of the committed fit against public data (can fail: it is a measurement of the model). */
import { describe, expect, it } from 'vitest';
import { loadCalibrationData } from '../../src/model/calib-data-io.ts';
import { computeFidelity } from '../../src/model/fidelity.ts';
import { loadProfile } from '../../src/model/profile-io.ts';

const rep = computeFidelity(loadCalibrationData(), loadProfile(new URL('../../profiles/llama2-70b.h100.json', import.meta.url).pathname));

describe('fidelity against public data', () => {
  it('each MAPE <= 15% (splitwise TTFT/TBT, ML.ENERGY TBT, power)', () => {
    expect(rep.rows.ttft.length).toBeGreaterThan(30);
    expect(rep.rows.power.length).toBeGreaterThan(40);
    expect(rep.ttftMape).toBeLessThanOrEqual(15);
    expect(rep.tbtMape).toBeLessThanOrEqual(15);
    expect(rep.tbtMapeMlEnergy).toBeLessThanOrEqual(15);
    expect(rep.powerMape).toBeLessThanOrEqual(15);
  });
  // The targets for the paper's tables are Table I >= 7/9, Table II 3/3, feasibility >= 85%; they are
  // NOT met (see profiles/README.md, "Paper tables"): in a steady state where the engine is always busy,
  // energy per request is power / load, which never rises as the clock falls, while the paper's measured
  // optima sit at 1.2-1.6 GHz. This test guards what the committed fit reaches today against regressions.
  it('paper tables: no regression below the committed fit (Table I 2/9, Table II 1/3, feasibility 99/144)', () => {
    expect(rep.tableI.of).toBe(9);
    expect(rep.tableII.of).toBe(3);
    expect(rep.tableI.matched).toBeGreaterThanOrEqual(2);
    expect(rep.tableII.matched).toBeGreaterThanOrEqual(1);
    expect(rep.feasibility.matched / rep.feasibility.of).toBeGreaterThanOrEqual(99 / 144);
  });
});
