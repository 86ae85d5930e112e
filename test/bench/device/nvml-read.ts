/**
 * READ-ONLY NVML and nvidia-smi latency on a real GPU (run on a lent H100/H200, never on a shared GPU's
 * clocks): power, energy counter, clocks and supported clocks through the NVML backend (koffi), beside
 * `nvidia-smi --query-gpu` spawned the ordinary way, in the same run. Never locks, resets or sets anything:
 * both controls are opened readOnly, which makes lock/reset throw and skips the start-up reset.
 * Bundled for the GPU machine by esbuild (see bench-results/nvml-h100.md); writes $OUT/nvml.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { NvmlGpuControl } from '../../../src/gpu/nvml.ts';
import { SmiGpuControl } from '../../../src/gpu/smi.ts';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
function stats(us: number[]) {
  return { n: us.length, p50: +pct(us, 50).toFixed(2), p99: +pct(us, 99).toFixed(2), mean: +(us.reduce((a, b) => a + b, 0) / us.length).toFixed(2) };
}
function timeUs(n: number, f: () => unknown): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    f();
    out.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return out;
}
function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

const N = Number(process.env.NVML_N ?? 2000);
const M = Number(process.env.SMI_N ?? 20);
const candidates = [process.env.DYNAMOLLM_NVML_LIB, 'libnvidia-ml.so.1', '/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1', '/usr/local/nvidia/lib64/libnvidia-ml.so.1', '/usr/lib64/libnvidia-ml.so.1'].filter(
  (p): p is string => !!p && (!p.startsWith('/') || existsSync(p)),
);
const result: Record<string, unknown> = { date: new Date().toISOString(), node: process.version };
result.smiList = sh('nvidia-smi', ['-L']);
result.smiInfo = sh('nvidia-smi', ['--query-gpu=index,name,driver_version,power.draw,power.limit,clocks.sm,clocks.mem,clocks.max.sm', '--format=csv']);
result.smiFieldHelp = sh('nvidia-smi', ['--help-query-gpu'])
  .split('\n')
  .filter((l) => /energy|"clocks\.(sm|mem)"|"power\.draw"/i.test(l));

let nvml: NvmlGpuControl | undefined;
const errors: string[] = [];
for (const p of candidates) {
  try {
    nvml = await NvmlGpuControl.open({ backend: 'nvml', gpuIds: [0], libPath: p, readOnly: true });
    result.nvmlLib = p;
    break;
  } catch (err) {
    errors.push(`${p}: ${(err as Error).message}`);
  }
}
result.nvmlOpenErrors = errors;
if (nvml) {
  result.card = nvml.name;
  const t0 = process.hrtime.bigint();
  const sup = await nvml.supportedClocksMhz();
  result.supportedClocks = { us: Number(process.hrtime.bigint() - t0) / 1000, count: sup.length, min: sup[0], max: sup[sup.length - 1], step: sup[1] - sup[0] };
  timeUs(50, () => nvml!.readPowerMwSync());
  result.first = { powerMw: nvml.readPowerMwSync(), energyMj: nvml.readEnergyMjSync(), clocks: nvml.readClocksMhzSync() };
  result.nvmlPowerUs = stats(timeUs(N, () => nvml!.readPowerMwSync()));
  result.nvmlEnergyUs = stats(timeUs(N, () => nvml!.readEnergyMjSync()));
  result.nvmlClocksUs = stats(timeUs(N, () => nvml!.readClocksMhzSync()));
  // energy counter over a second against sampled power: both should agree on an idle card
  const e0 = nvml.readEnergyMjSync()[0];
  const ts = Date.now();
  const samples: number[] = [];
  while (Date.now() - ts < 1000) {
    samples.push(nvml.readPowerMwSync()[0]);
    await new Promise((r) => setTimeout(r, 20));
  }
  const e1 = nvml.readEnergyMjSync()[0];
  result.energyCheck = { counterW: +((e1 - e0) / (Date.now() - ts)).toFixed(2), sampledMeanW: +(samples.reduce((a, b) => a + b, 0) / samples.length / 1000).toFixed(2) };
  let refused = false;
  try {
    await nvml.lockClocks(1980, 1980);
  } catch {
    refused = true;
  }
  result.readOnlyRefusedLock = refused;
  await nvml.close();
}

const smiUs = timeUs(M, () => sh('nvidia-smi', ['--query-gpu=index,power.draw,clocks.sm,clocks.mem', '--format=csv,noheader,nounits', '-i', '0']));
result.smiQueryMs = { n: M, p50: +(pct(smiUs, 50) / 1000).toFixed(2), p99: +(pct(smiUs, 99) / 1000).toFixed(2) };
try {
  const smi = await SmiGpuControl.open({ backend: 'smi', gpuIds: [0], readOnly: true });
  const t = Date.now();
  result.smiBackend = { power: await smi.readPowerMw(), clocks: await smi.readClocksMhz(), energy1: await smi.readEnergyMj() };
  await new Promise((r) => setTimeout(r, 500));
  (result.smiBackend as Record<string, unknown>).energy2 = await smi.readEnergyMj();
  (result.smiBackend as Record<string, unknown>).supported = (await smi.supportedClocksMhz()).length;
  (result.smiBackend as Record<string, unknown>).ms = Date.now() - t;
  await smi.close();
} catch (err) {
  result.smiBackendError = String((err as Error).stack ?? err);
}
const json = JSON.stringify(result, null, 2);
console.log(json);
if (process.env.OUT) writeFileSync(`${process.env.OUT}/nvml.json`, json);
