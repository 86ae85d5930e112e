/**
 * Fitted parameters of the performance and power model, with provenance.
 * Initial hand-set values; overwritten by `npx tsx src/model/calibrate-cli.ts`.
 */
import type { EngineParams, PowerParams } from './params.ts';

export const CALIBRATION: {
  defaultEngine: string;
  engines: Record<string, EngineParams>;
  power: PowerParams;
  provenance: Record<string, string>;
} = {
  defaultEngine: 'vllm-2023',
  engines: {
    'vllm-2023': { cpuOverheadMs: 12, gpuFixedMs: 2, perSeqOverheadMs: 0.4, computeEff: { '1': 0.5, '2': 0.47, '4': 0.33, '8': 0.15 }, memEff: 0.8, memClockBeta: 0.1, allReduceLatencyUs: { '2': 20, '4': 50, '8': 100 }, commEff: 0.7 },
    'vllm-2025': { cpuOverheadMs: 1.5, gpuFixedMs: 0.5, perSeqOverheadMs: 0.02, computeEff: { '1': 0.6, '2': 0.55, '4': 0.5, '8': 0.45 }, memEff: 0.8, memClockBeta: 0.1, allReduceLatencyUs: { '2': 10, '4': 15, '8': 20 }, commEff: 0.7 },
  },
  power: { loadedIdleExtraW: 41, computeW: 600, memoryW: 380, otherW: 150, clockExp: 1.2, idleClockExp: 1 },
  provenance: { note: 'hand-set initial values, not yet fitted' },
};
