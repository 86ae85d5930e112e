/**
 * The emulated GPUs of an engine that restarts. An emulated GPU lives in the engine emulator's process (its
 * /admin/gpu endpoints), so when the instance manager restarts a crashed engine, the GPU comes back with the new
 * process, on the new process's port, its clocks at their defaults and its energy counter at 0. A control opened on
 * the first process's URL would then fail every call (connection refused: no clock change applied, no energy read)
 * for the rest of the instance's life.
 *
 * FollowingGpuControl follows the engine: before each call, when the engine's URL changed, it opens a control on
 * the new URL (`open`), locks the clocks last locked again (the instance's clock holds across the restart, as a real
 * GPU's would), and keeps its energy counter monotonic: what the old process's counter had reached is added to the
 * new one's.
 */
import type { AppliedClocks, GpuClocks, GpuControl } from './types.ts';

export class FollowingGpuControl implements GpuControl {
  readonly kind: GpuControl['kind'];
  readonly gpuIds: number[];
  #inner: GpuControl;
  #url: string;
  /** energy of the processes before this one, per GPU, mJ. */
  #offsetMj: number[];
  /** the last energy read from the current process, per GPU, mJ. */
  #lastMj: number[];
  #locked?: { minMhz: number; maxMhz: number };
  #moving?: Promise<void>;

  private constructor(inner: GpuControl, firstUrl: string, private readonly url: () => string | undefined, private readonly open: (url: string) => Promise<GpuControl>) {
    this.#inner = inner;
    this.#url = firstUrl;
    this.kind = inner.kind;
    this.gpuIds = inner.gpuIds;
    this.#offsetMj = inner.gpuIds.map(() => 0);
    this.#lastMj = inner.gpuIds.map(() => 0);
  }

  /**
   * A control on the engine's GPUs at `first`, that follows the engine to the URL of each later process: `url()` is
   * the engine's URL once it serves (undefined while it restarts: the control stays where it is).
   */
  static async create(first: string, url: () => string | undefined, open: (url: string) => Promise<GpuControl>): Promise<FollowingGpuControl> {
    return new FollowingGpuControl(await open(first), first, url, open);
  }

  /** The control of the engine's current process (opened on its URL once it changed). */
  async #current(): Promise<GpuControl> {
    for (let u = this.url(); u !== undefined && u !== this.#url; u = this.url()) {
      this.#moving ??= this.#move(u).finally(() => (this.#moving = undefined));
      await this.#moving;
    }
    return this.#inner;
  }

  async #move(url: string): Promise<void> {
    const next = await this.open(url);
    const old = this.#inner;
    this.#inner = next;
    this.#url = url;
    // the old process's counter as last read carries over; the new one counts from its own origin
    this.#offsetMj = this.#offsetMj.map((o, i) => o + (this.#lastMj[i] ?? 0));
    this.#lastMj = this.gpuIds.map(() => 0);
    void old.close().catch(() => {});
    if (this.#locked) await next.lockClocks(this.#locked.minMhz, this.#locked.maxMhz).catch(() => {});
  }

  async supportedClocksMhz(): Promise<number[]> {
    return (await this.#current()).supportedClocksMhz();
  }

  async lockClocks(minMhz: number, maxMhz: number): Promise<AppliedClocks> {
    const applied = await (await this.#current()).lockClocks(minMhz, maxMhz);
    this.#locked = { minMhz, maxMhz };
    return applied;
  }

  async resetClocks(): Promise<void> {
    await (await this.#current()).resetClocks();
    this.#locked = undefined;
  }

  async readPowerMw(): Promise<number[]> {
    return (await this.#current()).readPowerMw();
  }

  async readEnergyMj(): Promise<number[]> {
    const inner = await this.#current();
    const e = await inner.readEnergyMj();
    // a read of a process replaced meanwhile counts for nothing (its offset is taken already)
    if (inner !== this.#inner) return this.readEnergyMj();
    this.#lastMj = e;
    return e.map((v, i) => v + (this.#offsetMj[i] ?? 0));
  }

  async readClocksMhz(): Promise<GpuClocks[]> {
    return (await this.#current()).readClocksMhz();
  }

  async close(): Promise<void> {
    await this.#inner.close();
  }
}
