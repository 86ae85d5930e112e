/**
 * nvidia-smi backend: the fallback where NVML cannot be loaded through FFI. Each call spawns nvidia-smi
 * (tens of ms; the paper measured 50-80 ms per frequency change), so it suits epochs of seconds, not
 * per-iteration control. Every spawn has a deadline.
 */
import { execFile } from 'node:child_process';
import type { AppliedClocks, GpuClocks, GpuControl, GpuControlConfig } from './types.ts';
import { clampClocks, checkGpuIds } from './clamp.ts';
import { GpuError, GpuLibraryError, GpuNotSupportedError, GpuPermissionError, GpuReadOnlyError, GpuRequestError, GpuTransportError } from './errors.ts';

/** Query fields (nvidia-smi --help-query-gpu). */
const READ_FIELDS = 'index,power.draw,clocks.sm,clocks.mem';
const ENERGY_FIELD = 'total_energy_consumption';

export class SmiGpuControl implements GpuControl {
  readonly kind = 'smi' as const;
  readonly gpuIds: number[];
  readonly readOnly: boolean;
  private readonly smiPath: string;
  private readonly timeoutMs: number;
  private supported: number[] | undefined;
  /** undefined: not probed yet; false: nvidia-smi has no energy counter here, so power is integrated. */
  private energyCounter: boolean | undefined;
  private integrated: { tMs: number; powerMw: number[]; energyMj: number[] } | undefined;
  private closed = false;

  private constructor(cfg: GpuControlConfig) {
    this.gpuIds = [...cfg.gpuIds];
    this.readOnly = cfg.readOnly ?? false;
    this.smiPath = cfg.smiPath ?? process.env.DYNAMOLLM_NVIDIA_SMI ?? 'nvidia-smi';
    this.timeoutMs = cfg.timeoutMs ?? 5000;
  }

  static async open(cfg: GpuControlConfig): Promise<SmiGpuControl> {
    checkGpuIds(cfg.gpuIds);
    const ctl = new SmiGpuControl(cfg);
    // first contact: proves nvidia-smi runs and every index exists
    await ctl.readClocksMhz();
    if (!ctl.readOnly && (cfg.resetOnStart ?? true)) await ctl.resetClocks();
    return ctl;
  }

  async supportedClocksMhz(): Promise<number[]> {
    this.assertOpen();
    if (this.supported) return [...this.supported];
    const out = await this.smi(['-i', String(this.gpuIds[0]), '--query-supported-clocks=memory,graphics', '--format=csv,noheader,nounits']);
    const rows = parseCsv(out).map(([mem, gr]) => ({ mem: num(mem, 'memory clock'), gr: num(gr, 'graphics clock') }));
    if (rows.length === 0) throw new GpuNotSupportedError('nvidia-smi lists no supported clocks');
    // SM clocks are listed per memory clock; use the highest memory clock's list (the one used under load)
    const mem = Math.max(...rows.map((r) => r.mem));
    this.supported = [...new Set(rows.filter((r) => r.mem === mem).map((r) => r.gr))].sort((a, b) => a - b);
    return [...this.supported];
  }

  async lockClocks(minMhz: number, maxMhz: number): Promise<AppliedClocks> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('lockClocks');
    const applied = clampClocks(await this.supportedClocksMhz(), minMhz, maxMhz);
    await this.smi(['-i', this.gpuIds.join(','), '-lgc', `${applied.minMhz},${applied.maxMhz}`]);
    return applied;
  }

  async resetClocks(): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('resetClocks');
    await this.smi(['-i', this.gpuIds.join(','), '-rgc']);
  }

  async readPowerMw(): Promise<number[]> {
    return (await this.readAll()).map((r) => r.powerMw);
  }

  async readClocksMhz(): Promise<GpuClocks[]> {
    return (await this.readAll()).map((r) => ({ sm: r.sm, mem: r.mem }));
  }

  /**
   * The driver's energy counter when nvidia-smi exposes it; otherwise power integrated (trapezoid) between
   * successive calls of this method since the first one, so callers must sample often (e.g. every second).
   */
  async readEnergyMj(): Promise<number[]> {
    this.assertOpen();
    if (this.energyCounter !== false) {
      try {
        const out = await this.smi([`--query-gpu=index,${ENERGY_FIELD}`, '--format=csv,noheader,nounits', '-i', this.gpuIds.join(',')]);
        const byIdx = new Map(parseCsv(out).map(([i, e]) => [num(i, 'index'), e]));
        const vals = this.gpuIds.map((id) => byIdx.get(id));
        if (vals.every((v) => v !== undefined && /^[0-9.]+$/.test(v))) {
          this.energyCounter = true;
          return vals.map((v) => Number(v));
        }
        if (this.energyCounter === true) throw new GpuNotSupportedError(`nvidia-smi stopped reporting ${ENERGY_FIELD}`);
      } catch (err) {
        if (this.energyCounter === true || err instanceof GpuTransportError || err instanceof GpuLibraryError) throw err;
      }
      this.energyCounter = false;
    }
    const now = Date.now();
    const powerMw = await this.readPowerMw();
    const prev = this.integrated;
    const energyMj = prev
      ? prev.energyMj.map((e, i) => e + ((prev.powerMw[i] + powerMw[i]) / 2) * ((now - prev.tMs) / 1000))
      : powerMw.map(() => 0);
    this.integrated = { tMs: now, powerMw, energyMj };
    return [...energyMj];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readOnly) await this.resetClocks();
    } finally {
      this.closed = true;
    }
  }

  private async readAll(): Promise<{ powerMw: number; sm: number; mem: number }[]> {
    this.assertOpen();
    const out = await this.smi([`--query-gpu=${READ_FIELDS}`, '--format=csv,noheader,nounits', '-i', this.gpuIds.join(',')]);
    const byIdx = new Map<number, { powerMw: number; sm: number; mem: number }>();
    for (const [i, p, sm, mem] of parseCsv(out)) {
      byIdx.set(num(i, 'index'), { powerMw: Math.round(num(p, 'power.draw') * 1000), sm: num(sm, 'clocks.sm'), mem: num(mem, 'clocks.mem') });
    }
    return this.gpuIds.map((id) => {
      const r = byIdx.get(id);
      if (!r) throw new GpuError(`nvidia-smi returned no row for GPU ${id}`, false);
      return r;
    });
  }

  private smi(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.smiPath, args, { timeout: this.timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const text = `${stdout}\n${stderr}`.trim();
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        const what = `nvidia-smi ${args.join(' ')}`;
        if (e.code === 'ENOENT') return reject(new GpuLibraryError(`cannot run '${this.smiPath}' (not installed or not on PATH)`, { cause: err }));
        if (e.killed) return reject(new GpuTransportError(`${what}: no answer within ${this.timeoutMs} ms`, { cause: err }));
        if (/permission|not permitted|root/i.test(text)) return reject(new GpuPermissionError(what, { cause: err }));
        if (/not supported|not a valid field/i.test(text)) return reject(new GpuNotSupportedError(`${what}: ${firstLine(text)}`, { cause: err }));
        if (/invalid|not found|no devices/i.test(text)) return reject(new GpuRequestError(`${what}: ${firstLine(text)}`));
        reject(new GpuError(`${what} failed: ${firstLine(text) || e.message}`, false, { cause: err }));
      });
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new GpuRequestError('this nvidia-smi GPU control is closed');
  }
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim()) ?? '';
}

function parseCsv(out: string): string[][] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => l.split(',').map((f) => f.trim()));
}

function num(s: string | undefined, what: string): number {
  const n = Number(s);
  if (s === undefined || s === '' || !Number.isFinite(n)) {
    if (s && /N\/A|Not Supported/i.test(s)) throw new GpuNotSupportedError(`nvidia-smi reports ${what} as '${s}'`);
    throw new GpuError(`cannot parse ${what} from nvidia-smi: '${s}'`, false);
  }
  return n;
}
