/**
 * Clamping a clock request to what the GPU supports. Pure.
 */
import { GpuRequestError } from './errors.ts';

/**
 * Maps a requested [minMhz, maxMhz] onto supported clocks: max becomes the highest supported clock <= the
 * requested max (the lowest supported clock if the request is below all of them), min the lowest supported
 * clock >= the requested min (the highest if above all), and min never exceeds max. So a request never
 * runs the GPU faster than asked, unless asked below the GPU's floor.
 * `supported` need not be sorted; it must not be empty.
 */
export function clampClocks(supported: readonly number[], minMhz: number, maxMhz: number): { minMhz: number; maxMhz: number } {
  if (!Number.isFinite(minMhz) || !Number.isFinite(maxMhz)) throw new GpuRequestError(`clock request must be finite, got [${minMhz}, ${maxMhz}] MHz`);
  if (minMhz > maxMhz) throw new GpuRequestError(`clock request min ${minMhz} MHz > max ${maxMhz} MHz`);
  if (supported.length === 0) throw new GpuRequestError('the GPU reports no supported clocks');
  const s = [...supported].sort((a, b) => a - b);
  let max = s[0];
  for (const c of s) if (c <= maxMhz) max = c;
  let min = s[s.length - 1];
  for (let i = s.length - 1; i >= 0; i--) if (s[i] >= minMhz) min = s[i];
  if (min > max) min = max;
  return { minMhz: min, maxMhz: max };
}

/** Validates a list of GPU indices (non-empty, distinct non-negative integers). */
export function checkGpuIds(ids: readonly number[]): void {
  if (ids.length === 0) throw new GpuRequestError('gpuIds must not be empty');
  for (const id of ids) if (!Number.isInteger(id) || id < 0) throw new GpuRequestError(`bad GPU index ${id}`);
  if (new Set(ids).size !== ids.length) throw new GpuRequestError(`duplicate GPU index in [${ids.join(',')}]`);
}
