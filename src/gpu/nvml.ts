/**
 * NVML backend: libnvidia-ml.so.1 through koffi (FFI). The fast path: a read is a function call (microseconds),
 * against tens of ms for spawning nvidia-smi (the paper measured 50-80 ms per frequency change through it).
 * Signatures follow nvml.h. koffi calls are synchronous; every NVML call here is a short driver query.
 */
import koffi from 'koffi';
import type { AppliedClocks, GpuClocks, GpuControl, GpuControlConfig } from './types.ts';
import { clampClocks, checkGpuIds } from './clamp.ts';
import { GpuLibraryError, GpuNotSupportedError, GpuPermissionError, GpuReadOnlyError, GpuRequestError, NVML_RETURN, NvmlError } from './errors.ts';

/** nvmlClockType_t */
const NVML_CLOCK_SM = 1;
const NVML_CLOCK_MEM = 2;

type Handle = unknown; // an opaque nvmlDevice_t as koffi hands it back

interface NvmlLib {
  path: string;
  init(): number;
  shutdown(): number;
  errorString(code: number): string;
  getCount(out: number[]): number;
  getHandle(index: number, out: Handle[]): number;
  getName(dev: Handle, buf: Buffer, len: number): number;
  getSupportedMem(dev: Handle, count: number[], clocks: Uint32Array | null): number;
  getSupportedGfx(dev: Handle, mem: number, count: number[], clocks: Uint32Array | null): number;
  setLocked(dev: Handle, min: number, max: number): number;
  resetLocked(dev: Handle): number;
  getPower(dev: Handle, out: number[]): number;
  getEnergy(dev: Handle, out: (number | bigint)[]): number;
  getClock(dev: Handle, type: number, out: number[]): number;
}

let deviceType: ReturnType<typeof koffi.pointer> | undefined;
const libs = new Map<string, NvmlLib>();

/** Loads (once per path and process) the library and binds the functions. */
export function loadNvml(path: string): NvmlLib {
  const cached = libs.get(path);
  if (cached) return cached;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(path);
  } catch (err) {
    throw new GpuLibraryError(`cannot load NVML library '${path}' (is the NVIDIA driver installed? set DYNAMOLLM_NVML_LIB to override)`, { cause: err });
  }
  deviceType ??= koffi.pointer('nvmlDevice_t', koffi.opaque());
  try {
    const f = (decl: string) => lib.func(decl);
    const b: NvmlLib = {
      path,
      init: f('int nvmlInit_v2()'),
      shutdown: f('int nvmlShutdown()'),
      errorString: f('const char *nvmlErrorString(int result)'),
      getCount: f('int nvmlDeviceGetCount_v2(_Out_ unsigned int *count)'),
      getHandle: f('int nvmlDeviceGetHandleByIndex_v2(unsigned int index, _Out_ nvmlDevice_t *device)'),
      getName: f('int nvmlDeviceGetName(nvmlDevice_t device, _Out_ uint8_t *name, unsigned int length)'),
      getSupportedMem: f('int nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, _Inout_ unsigned int *count, _Out_ unsigned int *clocksMHz)'),
      getSupportedGfx: f('int nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device, unsigned int memoryClockMHz, _Inout_ unsigned int *count, _Out_ unsigned int *clocksMHz)'),
      setLocked: f('int nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device, unsigned int minGpuClockMHz, unsigned int maxGpuClockMHz)'),
      resetLocked: f('int nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device)'),
      getPower: f('int nvmlDeviceGetPowerUsage(nvmlDevice_t device, _Out_ unsigned int *power)'),
      getEnergy: f('int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, _Out_ unsigned long long *energy)'),
      getClock: f('int nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, _Out_ unsigned int *clock)'),
    } as unknown as NvmlLib;
    libs.set(path, b);
    return b;
  } catch (err) {
    throw new GpuLibraryError(`NVML library '${path}' lacks a required function (driver too old?)`, { cause: err });
  }
}

export function defaultNvmlPath(cfg?: Pick<GpuControlConfig, 'libPath'>): string {
  return cfg?.libPath ?? process.env.DYNAMOLLM_NVML_LIB ?? 'libnvidia-ml.so.1';
}

export class NvmlGpuControl implements GpuControl {
  readonly kind = 'nvml' as const;
  readonly gpuIds: number[];
  readonly readOnly: boolean;
  /** the GPU's marketing name, e.g. 'NVIDIA H100 80GB HBM3' (first GPU). */
  readonly name: string;
  private readonly lib: NvmlLib;
  private readonly handles: Handle[];
  private supported: number[] | undefined;
  private closed = false;
  // scratch out-parameters, reused so a read allocates nothing but its result
  private readonly u32: number[] = [0];
  private readonly u64: (number | bigint)[] = [0];

  private constructor(lib: NvmlLib, gpuIds: number[], handles: Handle[], name: string, readOnly: boolean) {
    this.lib = lib;
    this.gpuIds = gpuIds;
    this.handles = handles;
    this.name = name;
    this.readOnly = readOnly;
  }

  /** Initialises NVML, resolves the handles and (unless read-only or told not to) resets locked clocks. */
  static async open(cfg: GpuControlConfig): Promise<NvmlGpuControl> {
    checkGpuIds(cfg.gpuIds);
    const lib = loadNvml(defaultNvmlPath(cfg));
    const rc = lib.init();
    if (rc !== NVML_RETURN.SUCCESS) throw new GpuLibraryError(`nvmlInit_v2 failed: ${safeErrorString(lib, rc)} (nvmlReturn_t ${rc})`);
    try {
      const count = [0];
      check(lib, 'nvmlDeviceGetCount_v2', lib.getCount(count));
      const handles: Handle[] = [];
      for (const id of cfg.gpuIds) {
        if (id >= count[0]) throw new GpuRequestError(`GPU index ${id} out of range: NVML sees ${count[0]} GPU(s)`);
        const out: Handle[] = [null];
        check(lib, 'nvmlDeviceGetHandleByIndex_v2', lib.getHandle(id, out));
        handles.push(out[0]);
      }
      const buf = Buffer.alloc(96);
      check(lib, 'nvmlDeviceGetName', lib.getName(handles[0], buf, buf.length));
      const name = buf.subarray(0, Math.max(0, buf.indexOf(0))).toString('utf8');
      const ctl = new NvmlGpuControl(lib, [...cfg.gpuIds], handles, name, cfg.readOnly ?? false);
      if (!ctl.readOnly && (cfg.resetOnStart ?? true)) await ctl.resetClocks();
      return ctl;
    } catch (err) {
      lib.shutdown();
      throw err;
    }
  }

  async supportedClocksMhz(): Promise<number[]> {
    this.assertOpen();
    if (this.supported) return [...this.supported];
    const dev = this.handles[0];
    const mems = this.queryList('nvmlDeviceGetSupportedMemoryClocks', (count, arr) => this.lib.getSupportedMem(dev, count, arr));
    if (mems.length === 0) throw new GpuNotSupportedError('NVML reports no supported memory clocks');
    // SM clocks are listed per memory clock; the highest memory clock is the one the GPU runs at under load.
    const mem = Math.max(...mems);
    const gfx = this.queryList('nvmlDeviceGetSupportedGraphicsClocks', (count, arr) => this.lib.getSupportedGfx(dev, mem, count, arr));
    if (gfx.length === 0) throw new GpuNotSupportedError(`NVML reports no supported SM clocks at memory clock ${mem} MHz`);
    this.supported = [...new Set(gfx)].sort((a, b) => a - b);
    return [...this.supported];
  }

  async lockClocks(minMhz: number, maxMhz: number): Promise<AppliedClocks> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('lockClocks');
    const applied = clampClocks(await this.supportedClocksMhz(), minMhz, maxMhz);
    for (const dev of this.handles) this.checkWrite('nvmlDeviceSetGpuLockedClocks', this.lib.setLocked(dev, applied.minMhz, applied.maxMhz));
    return applied;
  }

  async resetClocks(): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('resetClocks');
    for (const dev of this.handles) this.checkWrite('nvmlDeviceResetGpuLockedClocks', this.lib.resetLocked(dev));
  }

  async readPowerMw(): Promise<number[]> {
    return this.readPowerMwSync();
  }

  /** Synchronous read (no promise), for latency measurement and tight sampling loops. */
  readPowerMwSync(): number[] {
    this.assertOpen();
    return this.handles.map((dev) => {
      check(this.lib, 'nvmlDeviceGetPowerUsage', this.lib.getPower(dev, this.u32));
      return this.u32[0];
    });
  }

  async readEnergyMj(): Promise<number[]> {
    return this.readEnergyMjSync();
  }

  readEnergyMjSync(): number[] {
    this.assertOpen();
    return this.handles.map((dev) => {
      check(this.lib, 'nvmlDeviceGetTotalEnergyConsumption', this.lib.getEnergy(dev, this.u64));
      return Number(this.u64[0]);
    });
  }

  async readClocksMhz(): Promise<GpuClocks[]> {
    return this.readClocksMhzSync();
  }

  readClocksMhzSync(): GpuClocks[] {
    this.assertOpen();
    return this.handles.map((dev) => {
      check(this.lib, 'nvmlDeviceGetClockInfo', this.lib.getClock(dev, NVML_CLOCK_SM, this.u32));
      const sm = this.u32[0];
      check(this.lib, 'nvmlDeviceGetClockInfo', this.lib.getClock(dev, NVML_CLOCK_MEM, this.u32));
      return { sm, mem: this.u32[0] };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      // never leave clocks locked by us behind: a slow GPU outliving its manager is the failure to avoid
      if (!this.readOnly) await this.resetClocks();
    } finally {
      this.closed = true;
      this.lib.shutdown();
    }
  }

  /** NVML's two-call list protocol: ask with count 0, get INSUFFICIENT_SIZE and the count, then fetch. */
  private queryList(fn: string, call: (count: number[], arr: Uint32Array | null) => number): number[] {
    const count = [0];
    let rc = call(count, null);
    if (rc === NVML_RETURN.SUCCESS && count[0] === 0) return [];
    if (rc !== NVML_RETURN.INSUFFICIENT_SIZE && rc !== NVML_RETURN.SUCCESS) check(this.lib, fn, rc);
    for (let attempt = 0; attempt < 3; attempt++) {
      const arr = new Uint32Array(count[0]);
      rc = call(count, arr);
      if (rc === NVML_RETURN.SUCCESS) return Array.from(arr.subarray(0, count[0]));
      if (rc !== NVML_RETURN.INSUFFICIENT_SIZE) break;
    }
    check(this.lib, fn, rc);
    return [];
  }

  private checkWrite(fn: string, rc: number): void {
    if (rc === NVML_RETURN.NO_PERMISSION) throw new GpuPermissionError(`${fn} on GPU(s) ${this.gpuIds.join(',')}`, { cause: new NvmlError(fn, rc, safeErrorString(this.lib, rc)) });
    check(this.lib, fn, rc);
  }

  private assertOpen(): void {
    if (this.closed) throw new GpuRequestError('this NVML GPU control is closed');
  }
}

function safeErrorString(lib: NvmlLib, rc: number): string {
  try {
    return lib.errorString(rc) ?? 'unknown error';
  } catch {
    return 'unknown error';
  }
}

function check(lib: NvmlLib, fn: string, rc: number): void {
  if (rc === NVML_RETURN.SUCCESS) return;
  if (rc === NVML_RETURN.NO_PERMISSION) throw new GpuPermissionError(fn, { cause: new NvmlError(fn, rc, safeErrorString(lib, rc)) });
  if (rc === NVML_RETURN.NOT_SUPPORTED) throw new GpuNotSupportedError(`${fn}: not supported on this GPU/driver`, { cause: new NvmlError(fn, rc, safeErrorString(lib, rc)) });
  throw new NvmlError(fn, rc, safeErrorString(lib, rc));
}
