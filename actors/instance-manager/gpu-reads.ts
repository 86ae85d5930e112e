/**
 * The instance's GPU readings for its telemetry, once a second: the power of its GPUs (summed) and the energy
 * counted since the instance started. A read that fails (on emulated GPUs, the engine's process gone while it
 * restarts; a driver error) leaves the last reading's figures in place and says so: the read returns `staleMs`,
 * how old those figures are (InstanceTelemetry.gpuStaleMs), and the failure is counted (`failures`, on the
 * instance's /metrics), logged at warn when the reads start failing and at info when they read again. The energy is
 * counted per GPU from one reading to the next, so it never decreases: a GPU counter below its last reading has
 * restarted (a driver reload; an emulated GPU's new process read without FollowingGpuControl), and what it reads
 * is the energy since that restart.
 */
import type { Logger } from 'pino';
import type { GpuControl } from '../../src/gpu/index.ts';

export class GpuReads {
  /** power of the instance's GPUs at the last reading, W. */
  powerW = 0;
  /** energy since the origin at the last reading, J. */
  energyJ = 0;
  /** reads that failed, over the instance's life. */
  failures = 0;
  /** each GPU's counter at the last reading (the origin before the first), mJ. */
  #lastMj?: number[];
  /** when the last reading was taken (the origin's time before the first). */
  #readAtMs: number;
  /** reads that failed since the last one that did not. */
  #failing = 0;

  constructor(private readonly log: Logger, private readonly now: () => number) {
    this.#readAtMs = now();
  }

  /** The energy counter's origin (the first reading of the instance's GPUs), mJ per GPU. */
  origin(energyMj: number[]): void {
    this.#lastMj = [...energyMj];
    this.#readAtMs = this.now();
  }

  /**
   * Reads power and energy. `deltaJ`: the energy since the reading before (0 when this one failed); `staleMs`,
   * only when this read failed: the age of the figures the instance still reports.
   */
  async read(gpu: GpuControl): Promise<{ deltaJ: number; staleMs?: number }> {
    try {
      const [p, e] = await Promise.all([gpu.readPowerMw(), gpu.readEnergyMj()]);
      this.powerW = p.reduce((a, b) => a + b, 0) / 1000;
      const last = this.#lastMj ?? e;
      const deltaJ = e.reduce((s, x, i) => s + (x >= (last[i] ?? x) ? x - (last[i] ?? x) : x), 0) / 1000;
      this.#lastMj = [...e];
      this.energyJ += deltaJ;
      const now = this.now();
      if (this.#failing > 0) this.log.info({ failed: this.#failing, staleMs: now - this.#readAtMs }, 'gpu read again');
      this.#failing = 0;
      this.#readAtMs = now;
      return { deltaJ };
    } catch (err) {
      this.failures++;
      const msg = (err as Error).message;
      if (this.#failing++ === 0) this.log.warn({ err: msg }, 'gpu read failed: telemetry reports the last reading, marked stale');
      else this.log.debug({ err: msg, failed: this.#failing }, 'gpu read failed');
      return { deltaJ: 0, staleMs: Math.max(0, this.now() - this.#readAtMs) };
    }
  }
}
