/** Reads the calibration data copies in data/calibration/ (I/O; the parsing is in calib-data.ts). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argonnePowerPoints, mlEnergyPoints, prototypePoints, splitwisePoints, type CalibrationData, type PrototypePoint } from '../model/calib-data.ts';

export const CALIBRATION_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'calibration');

export function loadCalibrationData(dir = CALIBRATION_DIR): CalibrationData {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    splitwise: splitwisePoints(read('splitwise_perf_model_h100.csv')),
    mlEnergy: mlEnergyPoints(read('mlenergy_v3_llm_configs.csv')),
    argonne: argonnePowerPoints(read('argonne_power_results.csv')),
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
