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
import { Http1Pool } from '../engine/http1.ts';
import { Http1TimeoutError, http1Text } from '../engine/http1-text.ts';

export interface EmulatedGpuState {
  gpuCount: number;
  supportedClocksMhz: number[];
  clockMhz: number;
  lockedMinMhz: number | null;
  lockedMaxMhz: number | null;
  maxClockMhz: number;
  /** instantaneous power per GPU, mW (the executing step's, or idle). */
  powerMw: number[];
  /** power per GPU averaged over the last second, mW: what nvmlDeviceGetPowerUsage reads on an H100. */
  powerAvgMw?: number[];
  energyMj: number[];
  /** memory clock, MHz, if the emulator reports one. */
  memClockMhz?: number;
}

/** host, port and path of a plain http URL without query or credentials; undefined for anything else. */
function plainHttp(url: string): { host: string; port: number; path: string } | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' || u.search || u.username || u.password) return undefined;
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 80), path: u.pathname.replace(/\/+$/, '') };
}

export class EmulatedGpuControl implements GpuControl {
  readonly kind = 'emulated' as const;
  readonly gpuIds: number[];
  readonly readOnly: boolean;
  private readonly url: string;
  private readonly timeoutMs: number;
  private supported: number[] | undefined;
  private closed = false;
  /** the state read in flight, shared by the reads made meanwhile. */
  private reading: Promise<EmulatedGpuState> | undefined;
  /** host, port and path prefix of a plain-http emulator URL (the lean client's); undefined: fetch. */
  private readonly target: { host: string; port: number; path: string } | undefined;
  /** kept-alive connections to the emulator (src/engine/http1.ts): a read every second costs no connection. */
  private readonly pool = new Http1Pool({ maxIdlePerHost: 4 });

  private constructor(cfg: GpuControlConfig, url: string) {
    this.gpuIds = [...cfg.gpuIds];
    this.readOnly = cfg.readOnly ?? false;
    this.url = url.replace(/\/+$/, '');
    this.timeoutMs = cfg.timeoutMs ?? 5000;
    this.target = plainHttp(this.url);
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
    // reads that overlap share one GET (the instance manager reads power and energy together every second)
    return (this.reading ??= this.readState().finally(() => (this.reading = undefined)));
  }

  private async readState(): Promise<EmulatedGpuState> {
    const body = (await this.call('GET', '/admin/gpu')) as Partial<EmulatedGpuState> | null;
    const okArr = (a: unknown): a is number[] => Array.isArray(a) && a.every((x) => typeof x === 'number' && Number.isFinite(x));
    if (!body || typeof body.gpuCount !== 'number' || !okArr(body.supportedClocksMhz) || typeof body.clockMhz !== 'number' || !okArr(body.powerMw) || !okArr(body.energyMj) || (body.powerAvgMw !== undefined && !okArr(body.powerAvgMw))) {
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

  /** Power averaged over the last second, as NVML reads it on an H100 (the instantaneous draw from an emulator without the average). */
  async readPowerMw(): Promise<number[]> {
    const st = await this.state();
    const p = st.powerAvgMw ?? st.powerMw;
    return this.gpuIds.map((id) => p[id]);
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
      this.pool.destroy();
    }
  }

  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    let res: { status: number; text: string };
    try {
      res = this.target
        ? await http1Text(this.pool, {
          host: this.target.host, port: this.target.port, method, path: this.target.path + path,
          headers: method === 'POST' ? { 'content-type': 'application/json' } : {},
          body: body === undefined ? (method === 'POST' ? '{}' : '') : JSON.stringify(body),
        }, this.timeoutMs)
        : await this.fetchText(method, path, body);
    } catch (err) {
      const timedOut = err instanceof Http1TimeoutError || (err as Error).name === 'TimeoutError';
      throw new GpuTransportError(`emulator ${method} ${this.url}${path}: ${timedOut ? `no answer within ${this.timeoutMs} ms` : (err as Error).message}`, { cause: err });
    }
    const { status, text } = res;
    if (status < 200 || status > 299) throw new GpuError(`emulator ${method} ${path} -> HTTP ${status}: ${text.slice(0, 200)}`, status >= 500);
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new GpuError(`emulator ${method} ${path} returned non-JSON`, false, { cause: err });
    }
  }

  /** An emulator URL other than plain http (https): through fetch. */
  private async fetchText(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; text: string }> {
    const res = await fetch(this.url + path, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? (method === 'POST' ? '{}' : undefined) : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return { status: res.status, text: await res.text() };
  }

  private assertOpen(): void {
    if (this.closed) throw new GpuRequestError('this emulated GPU control is closed');
  }
}
