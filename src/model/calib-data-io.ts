/** Reads the calibration data copies in data/calibration/ (I/O; the parsing is in calib-data.ts). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argonnePowerPoints, mlEnergyPoints, splitwisePoints, type CalibrationData } from './calib-data.ts';

export const CALIBRATION_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'calibration');

export function loadCalibrationData(dir = CALIBRATION_DIR): CalibrationData {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    splitwise: splitwisePoints(read('splitwise_perf_model_h100.csv')),
    mlEnergy: mlEnergyPoints(read('mlenergy_v3_llm_configs.csv')),
    argonne: argonnePowerPoints(read('argonne_power_results.csv')),
  };
}
