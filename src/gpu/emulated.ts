/**
 * Emulated backend: the engine emulator's GPU, through its admin HTTP endpoints. Power and energy come from
 * the performance model (src/model), so every figure read here is modelled, not measured.
 *   GET  {url}/admin/gpu               -> EmulatedGpuState
 *   POST {url}/admin/gpu/lock-clocks   {"minMhz":a,"maxMhz":b}
 *   POST {url}/admin/gpu/reset-clocks
 */
import type { AppliedClocks, GpuClocks, GpuControl, GpuControlConfig } from './types.ts';
import { clampClocks, checkGpuIds } from './clamp.ts';
import { GpuError, GpuReadOnlyError, GpuRequestError, GpuTransportError } from './errors.ts';

export interface EmulatedGpuState {
  gpuCount: number;
  supportedClocksMhz: number[];
  clockMhz: number;
  lockedMinMhz: number | null;
  lockedMaxMhz: number | null;
  maxClockMhz: number;
  powerMw: number[];
  energyMj: number[];
  /** memory clock, MHz, if the emulator reports one. */
  memClockMhz?: number;
}

export class EmulatedGpuControl implements GpuControl {
  readonly kind = 'emulated' as const;
  readonly gpuIds: number[];
  readonly readOnly: boolean;
  private readonly url: string;
  private readonly timeoutMs: number;
  private supported: number[] | undefined;
  private closed = false;

  private constructor(cfg: GpuControlConfig, url: string) {
    this.gpuIds = [...cfg.gpuIds];
    this.readOnly = cfg.readOnly ?? false;
    this.url = url.replace(/\/+$/, '');
    this.timeoutMs = cfg.timeoutMs ?? 5000;
  }

  static async open(cfg: GpuControlConfig): Promise<EmulatedGpuControl> {
    checkGpuIds(cfg.gpuIds);
    if (!cfg.emulatorUrl) throw new GpuRequestError('the emulated GPU backend needs emulatorUrl (the engine emulator base URL)');
    const ctl = new EmulatedGpuControl(cfg, cfg.emulatorUrl);
    const st = await ctl.state();
    const bad = ctl.gpuIds.find((id) => id >= st.gpuCount);
    if (bad !== undefined) throw new GpuRequestError(`GPU index ${bad} out of range: the emulator has ${st.gpuCount} GPU(s)`);
    if (!ctl.readOnly && (cfg.resetOnStart ?? true)) await ctl.resetClocks();
    return ctl;
  }

  /** The emulator's whole GPU state (validated). */
  async state(): Promise<EmulatedGpuState> {
    this.assertOpen();
    const body = (await this.call('GET', '/admin/gpu')) as Partial<EmulatedGpuState> | null;
    const okArr = (a: unknown): a is number[] => Array.isArray(a) && a.every((x) => typeof x === 'number' && Number.isFinite(x));
    if (!body || typeof body.gpuCount !== 'number' || !okArr(body.supportedClocksMhz) || typeof body.clockMhz !== 'number' || !okArr(body.powerMw) || !okArr(body.energyMj)) {
      throw new GpuError(`emulator ${this.url}/admin/gpu returned a malformed GPU state`, false);
    }
    return body as EmulatedGpuState;
  }

  async supportedClocksMhz(): Promise<number[]> {
    if (!this.supported) this.supported = [...(await this.state()).supportedClocksMhz].sort((a, b) => a - b);
    return [...this.supported];
  }

  async lockClocks(minMhz: number, maxMhz: number): Promise<AppliedClocks> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('lockClocks');
    const applied = clampClocks(await this.supportedClocksMhz(), minMhz, maxMhz);
    await this.call('POST', '/admin/gpu/lock-clocks', applied);
    return applied;
  }

  async resetClocks(): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new GpuReadOnlyError('resetClocks');
    await this.call('POST', '/admin/gpu/reset-clocks');
  }

  async readPowerMw(): Promise<number[]> {
    const st = await this.state();
    return this.gpuIds.map((id) => st.powerMw[id]);
  }

  async readEnergyMj(): Promise<number[]> {
    const st = await this.state();
    return this.gpuIds.map((id) => st.energyMj[id]);
  }

  async readClocksMhz(): Promise<GpuClocks[]> {
    const st = await this.state();
    return this.gpuIds.map(() => ({ sm: st.clockMhz, mem: st.memClockMhz ?? 0 }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readOnly) await this.resetClocks();
    } finally {
      this.closed = true;
    }
  }

  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
        body: body === undefined ? (method === 'POST' ? '{}' : undefined) : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new GpuTransportError(`emulator ${method} ${this.url}${path}: ${(err as Error).name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : (err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) throw new GpuError(`emulator ${method} ${path} -> HTTP ${res.status}: ${text.slice(0, 200)}`, res.status >= 500);
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new GpuError(`emulator ${method} ${path} returned non-JSON`, false, { cause: err });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new GpuRequestError('this emulated GPU control is closed');
  }
}
