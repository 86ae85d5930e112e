/** Reads the calibration data copies in data/calibration/ (I/O; the parsing is in calib-data.ts). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  argonneLatencyPoints, argonnePowerPoints, argonneTtftPoints, mlEnergyV2Points, mlEnergyV3Points, prototypePoints, splitwisePoints, vidurPoints,
  type CalibrationData, type PrototypePoint,
} from '../model/calib-data.ts';
import { parseMeasuredSlice, type MeasuredSlice } from '../model/measured.ts';

/** data/calibration/ of the repository: found upwards from this module (src/telemetry/ or, built, dist/src/telemetry/). */
function findCalibrationDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const c = join(dir, 'data', 'calibration');
    if (existsSync(c)) return c;
    dir = join(dir, '..');
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'calibration');
}

export const CALIBRATION_DIR = findCalibrationDir();

export function loadCalibrationData(dir = CALIBRATION_DIR): CalibrationData {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    splitwise: splitwisePoints(read('splitwise_perf_model_llama2-70b.csv')),
    mlEnergy: [...mlEnergyV3Points(read('mlenergy_v3_llm_configs.csv')), ...mlEnergyV3Points(read('mlenergy_v3_gpqa_llm_configs.csv')), ...mlEnergyV2Points(read('mlenergy_v2_llm_configs.csv'))],
    argonne: argonnePowerPoints(read('argonne_power_results.csv')),
    argonneLatency: [...argonneLatencyPoints(read('argonne_all_results_nvidia_vllm.csv')), ...argonneTtftPoints(read('argonne_ttft.csv'))],
    vidur: [
      ...vidurPoints(read('vidur_h100_Llama-2-70b-hf_mlp.csv'), 'h100', 'Llama-2-70b'),
      ...vidurPoints(read('vidur_h100_Llama-2-7b-hf_mlp.csv'), 'h100', 'Llama-2-7b'),
      ...vidurPoints(read('vidur_a100_Llama-2-70b-hf_mlp.csv'), 'a100-80gb', 'Llama-2-70b'),
    ],
  };
}

/**
 * The DynamoLLM prototype characterization, read in place from the shared data folder (never copied into the
 * repo: its source has no license). Override the folder with DYNAMOLLM_PROTOTYPE_DIR. undefined if absent.
 */
export const PROTOTYPE_DIR = process.env.DYNAMOLLM_PROTOTYPE_DIR ?? join(CALIBRATION_DIR, '..', '..', '..', 'shared', 'data', 'dynamollm_prototype');

export function loadPrototypeData(dir = PROTOTYPE_DIR): PrototypePoint[] | undefined {
  const e = join(dir, 'characterization_energy.csv'), p = join(dir, 'characterization_performance.csv');
  if (!existsSync(e) || !existsSync(p)) return undefined;
  return prototypePoints(readFileSync(e, 'utf8'), readFileSync(p, 'utf8'));
}

export const MEASURED_H200_SLICE = join(CALIBRATION_DIR, '..', '..', 'profiles', 'measured', 'h200.steps.json');

/** The measured H200 step slice (profiles/measured/), parsed and checked. */
export function loadMeasuredSlice(path = MEASURED_H200_SLICE): MeasuredSlice {
  return parseMeasuredSlice(JSON.parse(readFileSync(path, 'utf8')));
}
