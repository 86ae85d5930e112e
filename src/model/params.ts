/**
 * Parameters of the performance and power model that are fitted to public data (src/model/calibrate.ts)
 * rather than read off a datasheet. The fitted values live in calibration.ts with their provenance.
 */

/**
 * Engine-dependent efficiency and overhead. Different serving stacks on the same GPU differ mostly in
 * fixed per-step CPU overhead and achieved kernel efficiency, so these are fitted per engine generation.
 */
export interface EngineParams {
  /** fixed CPU/launch overhead per engine step, ms (independent of SM clock). */
  cpuOverheadMs: number;
  /** GPU-side fixed time per step at max clock, ms; scales ~1/f (small kernels, launches, norms). */
  gpuFixedMs: number;
  /** per-decode-sequence overhead per step, ms (scheduling, sampling, paged-attention bookkeeping). */
  perSeqOverheadMs: number;
  /** achieved fraction of peak BF16 rate on prefill/linear layers, by TP degree ('1','2','4','8'). */
  computeEff: Record<string, number>;
  /** achieved fraction of HBM bandwidth when streaming weights and KV cache. */
  memEff: number;
  /**
   * how much memory-bound time stretches as SM clock drops: t*(1 + beta*(fmax/f - 1)). Weight/KV streaming
   * goes through L2 and the SMs' load pipes, whose bandwidth scales with SM clock, so at low clocks HBM is no
   * longer the only limit.
   */
  memClockBeta: number;
  /** latency of one all-reduce, us, by TP degree ('2','4','8'). */
  allReduceLatencyUs: Record<string, number>;
  /** achieved fraction of NVLink bandwidth in all-reduce. */
  commEff: number;
}

/** Per-GPU power model (W). */
export interface PowerParams {
  /** extra W per GPU once weights are resident and the engine is up, at max clock (paper: 880 vs 550 W / 8 GPUs). */
  loadedIdleExtraW: number;
  /** W per GPU at full compute activity (all step time compute-bound) at max clock, above loaded idle. */
  computeW: number;
  /** W per GPU at full memory-streaming activity at max clock, above loaded idle. */
  memoryW: number;
  /** W per GPU during communication/overhead time at max clock, above loaded idle. */
  otherW: number;
  /**
   * Clock-independent W per GPU while the GPU executes kernels or collectives (HBM and NVLink traffic, fabric,
   * leakage at operating temperature), above loaded idle. Not drawn during the CPU-side part of a step.
   */
  activeStaticW: number;
  /**
   * Voltage/frequency curve: below vfKneeMhz the core voltage sits at its floor (vMinFrac of the voltage at max
   * clock), above it rises linearly to 1 at max clock. Dynamic power scales as (f/fmax) * (V(f)/Vmax)^2.
   */
  vfKneeMhz: number;
  /** floor voltage as a fraction of the voltage at max clock (H100: ~0.7 V vs ~1.0 V). */
  vMinFrac: number;
  /** idle-with-model power also moves with a locked clock: (f/fmax)^idleClockExp on loadedIdleExtraW. */
  idleClockExp: number;
}

export interface ModelParams {
  engine: EngineParams;
  power: PowerParams;
}
