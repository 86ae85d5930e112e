/**
 * GPU clock and energy control (public entry). See types.ts for the interface.
 */
import type { GpuControl, GpuControlConfig } from './types.ts';
import { GpuRequestError } from './errors.ts';

export type { GpuControl, GpuControlConfig, GpuBackendKind, AppliedClocks, GpuClocks } from './types.ts';
export * from './errors.ts';
export { clampClocks, checkGpuIds } from './clamp.ts';

/**
 * Opens a GPU control on the chosen backend. Unless cfg.readOnly or cfg.resetOnStart === false, it first
 * resets any clock lock on those GPUs (a previous manager may have died with them locked low).
 * Backends load lazily, so the emulated path never needs the native FFI module.
 */
export async function createGpuControl(cfg: GpuControlConfig): Promise<GpuControl> {
  switch (cfg.backend) {
    case 'nvml':
      return (await import('./nvml.ts')).NvmlGpuControl.open(cfg);
    case 'smi':
      return (await import('./smi.ts')).SmiGpuControl.open(cfg);
    case 'emulated':
      return (await import('./emulated.ts')).EmulatedGpuControl.open(cfg);
    default:
      throw new GpuRequestError(`unknown GPU backend '${String((cfg as { backend: unknown }).backend)}' (nvml|smi|emulated)`);
  }
}
