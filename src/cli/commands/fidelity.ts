/**
 * `dynamollm fidelity [--json] [--profile FILE]`: the performance/power model's error against public data
 * (SplitwiseSim, ML.ENERGY v3, Argonne) and the paper's Tables I-II, with measured vs predicted side by side.
 */
import { join } from 'node:path';
import { parse } from '../args.ts';
import { loadCalibrationData, loadPrototypeData, CALIBRATION_DIR } from '../../telemetry/calib-data-io.ts';
import { computeFidelity, paperShapeEvidence } from '../../model/fidelity.ts';
import { loadProfile } from '../../telemetry/profile-io.ts';

export const summary = "the model's error against public data and the paper's tables (fidelity targets)";

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { json: { type: 'boolean' }, profile: { type: 'string' } });
  const profilePath = values.profile ?? join(CALIBRATION_DIR, '..', '..', 'profiles', 'llama2-70b.h100.json');
  const rep = computeFidelity(loadCalibrationData(), loadProfile(profilePath));
  const evidence = paperShapeEvidence(loadPrototypeData());
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...rep, paperShapeEvidence: evidence }, null, 1) + '\n');
    return rep.targets.met ? 0 : 1;
  }
  const w = (s: string) => process.stdout.write(s + '\n');
  const pairs = (title: string, rows: { label: string; measured: number; predicted: number }[]) => {
    w(`\n${title}`);
    w(`  ${'point'.padEnd(58)} ${'measured'.padStart(9)} ${'model'.padStart(9)} ${'err%'.padStart(6)}`);
    for (const r of rows) w(`  ${r.label.padEnd(58)} ${r.measured.toFixed(1).padStart(9)} ${r.predicted.toFixed(1).padStart(9)} ${((100 * (r.predicted - r.measured)) / r.measured).toFixed(1).padStart(6)}`);
  };
  pairs('TTFT ms, SplitwiseSim H100 Llama2-70B', rep.rows.ttft);
  pairs('TBT ms, SplitwiseSim H100 Llama2-70B', rep.rows.tbt);
  pairs('TBT (median ITL) ms, ML.ENERGY v3 H100', rep.rows.tbtMlEnergy);
  pairs('Power W per GPU, ML.ENERGY v3 + Argonne H100', rep.rows.power);
  w('\nPaper Table I (least-energy feasible config at 2000 tokens/s)');
  for (const c of rep.rows.tableI) w(`  ${c.label.padEnd(28)} paper ${String(c.paper).padEnd(10)} model ${String(c.ours).padEnd(10)} ${c.match ? 'match' : 'DIFF'}`);
  w('\nPaper Table II (MM by load)');
  for (const c of rep.rows.tableII) w(`  ${c.label.padEnd(28)} paper ${String(c.paper).padEnd(10)} model ${String(c.ours).padEnd(10)} ${c.match ? 'match' : 'DIFF'}`);
  const diffs = rep.rows.feasibility.filter((c) => c.paperFeasible !== c.oursFeasible);
  w(`\nFeasibility disagreements (${diffs.length}): ${diffs.map((c) => `${c.label} paper=${c.paperFeasible ? 'ok' : '-'} model=${c.oursFeasible ? 'ok' : '-'}`).join('; ')}`);
  w('\nWhy the table targets are hard (evidence from the data alone)');
  w(`  ${evidence.uShapedRows.length} of 12 paper rows have, at the optimum's TP, a paper-feasible LOWER clock that costs MORE (a U in clock):`);
  for (const r of evidence.uShapedRows) w(`    ${r.label.padEnd(10)} optimum ${r.argmin.padEnd(16)} costlier below it: ${r.costlierLowerClockCells.join(', ')}`);
  w('  a model whose energy per request at a fixed load does not fall as the clock rises matches such a row only by calling those cells infeasible');
  if (evidence.prototype) {
    const c = Object.entries(evidence.prototype.argminClockCounts).map(([f, k]) => `${f} MHz: ${k}`).join(', ');
    w(`  DynamoLLM prototype characterization (measured H100 Llama2-70B, ../shared): clock of least 'energy' per (type, TP, load) series: ${c} (of ${evidence.prototype.series})`);
  } else w('  (prototype characterization not readable here: ../shared/data/dynamollm_prototype)');
  w('\nSummary (modelled vs public measurements)');
  w(`  ttftMape ${rep.ttftMape}%  tbtMape ${rep.tbtMape}%  powerMape ${rep.powerMape}%  tbtMapeMlEnergy ${rep.tbtMapeMlEnergy}%  (target <= ${rep.targets.mapeMax}%)`);
  w(`  tableI ${rep.tableI.matched}/${rep.tableI.of} (>= ${rep.targets.tableIMin})  tableII ${rep.tableII.matched}/${rep.tableII.of} (>= ${rep.targets.tableIIMin})  feasibility ${rep.feasibility.matched}/${rep.feasibility.of} (>= ${Math.round(rep.targets.feasibilityMinFraction * 100)}%)`);
  w(`  targets ${rep.targets.met ? 'MET' : 'NOT MET'}`);
  return rep.targets.met ? 0 : 1;
}
