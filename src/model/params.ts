/**
 * Parameters of the performance and power model that are fitted to public data (src/model/calibrate.ts)
 * rather than read off a datasheet. Two kinds, so that nothing is fitted per model:
 * - per GPU family (hardware: Hopper = H100/H200, Ampere = A100): achieved fractions of the datasheet HBM
 *   bandwidth and tensor rate, how memory-bound time stretches at low SM clock, and the power model;
 * - per engine generation (software: vLLM of 2023 as SplitwiseSim profiled it, vLLM of 2024-25 as ML.ENERGY and
 *   Argonne ran it): fixed per-step CPU time, per-sequence time, per-layer GPU-side fixed time (small kernels,
 *   launches), all-reduce latency by TP, and a kernel-efficiency factor on both rooflines.
 * The fitted values live in calibration.ts with their provenance.
 */

/** Software: the serving engine generation. */
export interface EngineParams {
  /** fixed CPU-side time per engine step, ms (scheduling, sampling, Python; independent of SM clock). */
  cpuOverheadMs: number;
  /** per-decode-sequence CPU-side time per step, ms (batch bookkeeping, sampling). */
  perSeqOverheadMs: number;
  /** GPU-side fixed time per layer per step at max clock, us (norms, rotary, small kernels, launch gaps); ~1/f. */
  perLayerUs: number;
  /** the engine's kernels reach this fraction of the GPU family's achieved rates (1 = the family's best). */
  kernelEff: number;
  /** latency of one all-reduce, us, by TP degree ('2','4','8'). */
  allReduceLatencyUs: Record<string, number>;
  /** achieved fraction of NVLink bandwidth in all-reduce. */
  commEff: number;
}

/** Hardware: one GPU family's achieved efficiencies and power model (per GPU, W). */
export interface FamilyParams {
  /** achieved fraction of datasheet HBM bandwidth when streaming weights and KV cache. */
  memEff: number;
  /** achieved fraction of datasheet dense BF16 tensor rate on the linear layers and attention. */
  computeEff: number;
  /**
   * how much memory-bound time stretches as SM clock drops: t*(1 + beta*(fmax/f - 1)). Weight/KV streaming
   * goes through L2 and the SMs' load pipes, whose bandwidth scales with SM clock.
   */
  memClockBeta: number;
  /** extra W per GPU once weights are resident and the engine is up (clocks held up), at max clock. */
  loadedIdleExtraW: number;
  /** W per GPU at full SM (tensor) utilisation at max clock, above loaded idle; scales with the V/f curve. */
  computeW: number;
  /** W per GPU at full HBM bandwidth utilisation at max clock, above loaded idle; scales with the V/f curve. */
  memoryW: number;
  /** W per GPU during collectives and GPU-side fixed kernels at max clock, above loaded idle. */
  otherW: number;
  /** clock-independent W per GPU while the GPU executes at all (fabric, leakage at temperature), above loaded idle. */
  activeStaticW: number;
  /**
   * Voltage/frequency curve: below vfKneeMhz the core voltage sits at its floor (vMinFrac of the voltage at max
   * clock), above it rises linearly to 1 at max clock. Dynamic power scales as (f/fmax) * (V(f)/Vmax)^2.
   */
  vfKneeMhz: number;
  /** floor voltage as a fraction of the voltage at max clock. */
  vMinFrac: number;
  /** loaded-idle extra power also moves with a locked clock: (f/fmax)^idleClockExp on loadedIdleExtraW. */
  idleClockExp: number;
}

/** Back-compat name: the power model is part of the family parameters. */
export type PowerParams = FamilyParams;

export interface ModelParams {
  engine: EngineParams;
  family: FamilyParams;
}
