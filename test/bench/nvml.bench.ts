/**
 * NVML read latency through koffi vs spawning nvidia-smi, both against the FAKES here (a fake
 * libnvidia-ml.so.1 compiled from test/fixtures/fake-nvml/fake_nvml.c, and the fake nvidia-smi script in the
 * same folder): it measures the cost of the FFI path and of a process spawn on this machine, not a GPU.
 * Real-GPU figures (read-only, H200) are in bench-results/nvml-h200.md.
 */
import { NvmlGpuControl } from '../../src/gpu/nvml.ts';
import { SmiGpuControl } from '../../src/gpu/smi.ts';
import { buildFakeNvml, FAKE_NVML_DIR } from '../fixtures/fake-nvml/build.ts';
import { join } from 'node:path';
import type { BenchSection } from './types.ts';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export async function bench(): Promise<BenchSection> {
  const { libPath } = buildFakeNvml();
  const nvml = await NvmlGpuControl.open({ backend: 'nvml', gpuIds: [0], libPath, readOnly: true });
  const timeUs = (n: number, f: () => void) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      f();
      out.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    return out;
  };
  timeUs(200, () => nvml.readPowerMwSync());
  const power = timeUs(5000, () => nvml.readPowerMwSync());
  const energy = timeUs(5000, () => nvml.readEnergyMjSync());
  const clocks = timeUs(5000, () => nvml.readClocksMhzSync());
  await nvml.close();

  const smi = await SmiGpuControl.open({ backend: 'smi', gpuIds: [0], smiPath: join(FAKE_NVML_DIR, 'nvidia-smi'), readOnly: true });
  const smiUs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t = process.hrtime.bigint();
    await smi.readPowerMw();
    smiUs.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  await smi.close();
  const r = (x: number) => +x.toFixed(2);
  return {
    title: 'GPU reads: NVML via koffi vs nvidia-smi spawn (FAKE library and FAKE nvidia-smi, no GPU)',
    notes: [
      'Both paths run against test fakes on this CPU-only machine: the figures are the FFI call cost and the process-spawn cost, not driver latency.',
      `Power read, smi spawn / NVML call at p50: ${Math.round(pct(smiUs, 50) / pct(power, 50))}x (baseline: the nvidia-smi spawn, same run).`,
      'Measured on a real H200 (read-only): see "NVML through koffi vs nvidia-smi on a real GPU" below.',
    ],
    rows: [
      { read: 'power', path: 'NVML/koffi (fake lib)', calls: power.length, p50_us: r(pct(power, 50)), p99_us: r(pct(power, 99)) },
      { read: 'energy counter', path: 'NVML/koffi (fake lib)', calls: energy.length, p50_us: r(pct(energy, 50)), p99_us: r(pct(energy, 99)) },
      { read: 'SM + mem clocks', path: 'NVML/koffi (fake lib)', calls: clocks.length, p50_us: r(pct(clocks, 50)), p99_us: r(pct(clocks, 99)) },
      { read: 'power', path: 'nvidia-smi spawn (fake script)', calls: smiUs.length, p50_us: r(pct(smiUs, 50)), p99_us: r(pct(smiUs, 99)) },
    ],
  };
}
