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
  it("paper tables: Table I >= 7/9, Table II 3/3, feasibility >= 85%", () => {
    expect(rep.tableI.matched).toBeGreaterThanOrEqual(7);
    expect(rep.tableII.matched).toBe(3);
    expect(rep.feasibility.matched / rep.feasibility.of).toBeGreaterThanOrEqual(0.85);
  });
});
