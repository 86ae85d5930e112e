/**
 * GPU clock and energy control: one interface, three backends (NVML through koffi, nvidia-smi, the emulated
 * GPU of the engine emulator). The instance manager and the profiler code against GpuControl only, so they
 * cannot tell a real GPU from an emulated one (DESIGN.md, "Energy and truth").
 */

export type GpuBackendKind = 'nvml' | 'smi' | 'emulated';

export interface AppliedClocks {
  /** the locked minimum SM clock that was applied, MHz (a supported clock). */
  minMhz: number;
  /** the locked maximum SM clock that was applied, MHz (a supported clock). */
  maxMhz: number;
}

export interface GpuClocks {
  /** current SM clock, MHz. */
  sm: number;
  /** current memory clock, MHz. */
  mem: number;
}

export interface GpuControl {
  readonly kind: GpuBackendKind;
  /** the GPUs this control owns (NVML / nvidia-smi indices; emulator GPU indices). */
  readonly gpuIds: number[];
  /** supported SM (graphics) clocks, MHz, ascending; those of the first GPU (an instance uses one SKU). */
  supportedClocksMhz(): Promise<number[]>;
  /**
   * Locks the SM clock of every owned GPU into [minMhz, maxMhz], after clamping both ends to supported
   * clocks (see clampClocks). Returns what was applied.
   */
  lockClocks(minMhz: number, maxMhz: number): Promise<AppliedClocks>;
  /** Removes any clock lock on every owned GPU (the driver's default boost behaviour). */
  resetClocks(): Promise<void>;
  /** current power draw per GPU, mW. */
  readPowerMw(): Promise<number[]>;
  /** cumulative energy per GPU since an arbitrary origin (driver load, emulator start), mJ. */
  readEnergyMj(): Promise<number[]>;
  /** current SM and memory clocks per GPU, MHz. */
  readClocksMhz(): Promise<GpuClocks[]>;
  /** Resets clocks it may have locked (unless read-only) and releases the backend. Idempotent. */
  close(): Promise<void>;
}

export interface GpuControlConfig {
  backend: GpuBackendKind;
  /** GPU indices to own. */
  gpuIds: number[];
  /** NVML library path; default env DYNAMOLLM_NVML_LIB, else 'libnvidia-ml.so.1' (dynamic loader search). */
  libPath?: string;
  /** nvidia-smi executable; default env DYNAMOLLM_NVIDIA_SMI, else 'nvidia-smi' on PATH. */
  smiPath?: string;
  /** base URL of the engine emulator (http://host:port) for the emulated backend. */
  emulatorUrl?: string;
  /**
   * Read-only: never lock or reset clocks (lockClocks/resetClocks throw GpuReadOnlyError, no reset at start
   * or close). For measuring on GPUs shared with others. Default false.
   */
  readOnly?: boolean;
  /**
   * Reset locked clocks when the control is created, so a manager that crashed with the clocks locked low
   * never leaves the GPU slow. Default true (ignored when readOnly).
   */
  resetOnStart?: boolean;
  /** deadline of one backend call (HTTP request, nvidia-smi run), ms. Default 5000. */
  timeoutMs?: number;
}
