/**
 * The power of a set of instances from their last telemetry: the sum of their readings and, of it, the part from
 * readings whose GPU read failed (InstanceTelemetry.gpuStaleMs: the last successful reading, repeated). The stale
 * part stays in the sum (the best figure there is: leaving it out would show the instance drawing nothing while
 * its engine restarts) and is said apart, so that a consumer can tell a figure of now from an old one. Pure.
 */
export interface PowerReading {
  powerW: number;
  gpuStaleMs?: number;
}

export function powerSum(readings: Iterable<PowerReading>): { powerW: number; stalePowerW: number } {
  let powerW = 0, stalePowerW = 0;
  for (const r of readings) {
    powerW += r.powerW;
    if (r.gpuStaleMs !== undefined) stalePowerW += r.powerW;
  }
  return { powerW, stalePowerW };
}

/** `{ gpuStaleMs }` of a reading whose GPU read failed, `{}` of a fresh one (to spread into a message: absent, never undefined). */
export function staleOf(r: { gpuStaleMs?: number } | undefined): { gpuStaleMs?: number } {
  return r?.gpuStaleMs !== undefined ? { gpuStaleMs: r.gpuStaleMs } : {};
}
