/**
 * Energy of a server's GPUs that no instance holds. An instance counts its own GPUs' energy; a GPU between a
 * drain and the next start (a re-shard, a scale-in), or one never assigned, still draws idle power, and its
 * node agent counts it here so that the cluster's energy covers every GPU it owns (as the simulator does).
 * - modelled (emulated GPUs): the GPU's idle power (src/model catalog, nothing loaded) times the time it was
 *   unallocated, in the emulator's model time (wall time x engine.timeScale, as the emulated instances count);
 * - measured (NVML / nvidia-smi): the GPU's own cumulative energy counter over the time it was unallocated.
 * Sample it at every change of the unallocated set (before the change) and periodically: the set between two
 * samples is the one given at the first. Pure; no I/O.
 */

export type UnallocatedMode = { kind: 'modelled'; idlePowerW: number; timeScale: number } | { kind: 'measured' };

export interface UnallocatedReading {
  /** power of the unallocated GPUs over the last interval, W. */
  powerW: number;
  /** cumulative energy of GPUs while unallocated, J. */
  energyJ: number;
}

export class UnallocatedGpuMeter {
  #energyJ = 0;
  #powerW = 0;
  #lastMs: number | undefined;
  #set: number[] = [];
  #counters: number[] | undefined;

  constructor(private readonly mode: UnallocatedMode) {
    if (mode.kind === 'modelled' && (!(mode.idlePowerW >= 0) || !(mode.timeScale > 0))) {
      throw new RangeError(`modelled unallocated GPUs need idlePowerW >= 0 and timeScale > 0, got ${mode.idlePowerW}, ${mode.timeScale}`);
    }
  }

  get energyJ(): number {
    return this.#energyJ;
  }

  /**
   * The unallocated set `unallocated` holds from `nowMs` on; the interval since the previous sample is charged
   * to the previous set. `countersMj` (measured mode): every GPU's cumulative energy counter, indexed by GPU.
   * A counter that went backwards (driver reload) or a missing reading charges nothing for that GPU.
   */
  sample(nowMs: number, unallocated: readonly number[], countersMj?: readonly number[]): UnallocatedReading {
    const last = this.#lastMs;
    if (last !== undefined && nowMs > last) {
      const dtS = (nowMs - last) / 1000;
      let j = 0;
      if (this.mode.kind === 'modelled') j = this.#set.length * this.mode.idlePowerW * dtS * this.mode.timeScale;
      else if (countersMj && this.#counters) {
        for (const g of this.#set) {
          const a = this.#counters[g];
          const b = countersMj[g];
          if (a !== undefined && b !== undefined && b >= a) j += (b - a) / 1000;
        }
      }
      this.#energyJ += j;
      this.#powerW = this.mode.kind === 'modelled' ? this.#set.length * this.mode.idlePowerW : j / dtS;
    }
    if (last === undefined || nowMs >= last) this.#lastMs = nowMs;
    this.#set = [...unallocated];
    if (countersMj) this.#counters = [...countersMj];
    // power from now on: the new set's idle draw (modelled); measured, the last interval's mean
    if (this.mode.kind === 'modelled') this.#powerW = this.#set.length * this.mode.idlePowerW;
    return { powerW: this.#powerW, energyJ: this.#energyJ };
  }
}
