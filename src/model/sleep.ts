/**
 * vLLM sleep mode as the model prices it: how long an instance takes to fall asleep and to wake, per level, and
 * what its GPUs draw asleep. Pure; the emulator (src/engine/emulator) and the simulator (src/sim) read it.
 *
 * What sleep mode does (vLLM docs, "Sleep Mode", docs.vllm.ai/en/latest/features/sleep_mode; `vllm serve
 * --enable-sleep-mode`, POST /sleep?level=N, POST /wake_up, GET /is_sleeping): the engine process, its CUDA
 * graphs and its allocator stay up; level 1 copies the weights to CPU RAM and discards the KV cache; level 2
 * discards both (weights reloaded on wake). The prefix cache is gone after either.
 *
 * Wake time: vLLM's blog "Zero-Reload Model Switching with vLLM Sleep Mode" (blog.vllm.ai, 2025-10-26) measures
 * wakes of 0.1-6 s at level 1 and 0.8-2.6 s at level 2 for 0.6B-235B models on A4000-A100 (TP included), 18-200x
 * faster than a cold start. Modelled here as the copy of one GPU's share of the weights plus a fixed part (the
 * allocator's remap, the first step's warm-up): level 1 from pinned host memory over PCIe Gen5 x16 (64 GB/s a
 * direction by the spec; 25 GB/s taken, the eight GPUs of a server copying at once through one host's memory),
 * level 2 re-read from the host's page cache by the weight loader (8 GB/s a GPU taken). Llama2-70B (138 GB of
 * bf16 weights): level 1 wakes in 1.2 s at TP8, 1.9 s at TP4, 3.3 s at TP2; level 2 in 3.7 / 5.8 / 10.1 s. These
 * are estimates from those sources, not measured here (no GPU).
 *
 * Power asleep: the GPU holds no weights and runs no kernel, so it draws its unloaded idle power (GpuSpec
 * idlePowerW: H100 69 W, the paper's 8 idle H100s at 550 W, data/dynamollm_paper/FACTS.md; H200 81 W, the
 * energy counter's 80.97 W on an idle H200 in bench-results/nvml-h200.md). While falling asleep and while
 * waking it draws its loaded idle power (the copy keeps memory busy, no SM work): the conservative side.
 */
import type { GpuSpec, ModelSpec } from './types.ts';

export type SleepLevel = 1 | 2;

export interface SleepTimes {
  /** host-to-device copy rate of one GPU while waking from level 1 (and device-to-host while falling asleep), GB/s; default 25. */
  h2dGBps: number;
  /** weight reload rate of one GPU waking from level 2 (safetensors from the page cache), GB/s; default 8. */
  reloadGBps: number;
  /** fixed part of a level-1 wake (allocator remap, first-step warm-up), s; default 0.5. */
  wakeFixedS: number;
  /** fixed part of a level-2 wake (weight loader set-up on top of the level-1 part), s; default 1. */
  level2FixedS: number;
  /** fixed part of falling asleep (KV cache freed, allocator unmapped), s; default 0.2. */
  sleepFixedS: number;
}

export const SLEEP_TIMES: Readonly<SleepTimes> = Object.freeze({ h2dGBps: 25, reloadGBps: 8, wakeFixedS: 0.5, level2FixedS: 1, sleepFixedS: 0.2 });

/** System memory of a DGX H100 / H200 server (NVIDIA datasheets: 2 TB), GiB: where level 1 keeps the weights. */
export const HOST_RAM_GIB = 2048;
/** Share of HOST_RAM_GIB that level-1 weights may take (the rest: the OS, the engines' own processes, the page cache). */
export const HOST_RAM_SLEEP_SHARE = 0.5;

/** Bytes of a model's weights (all of them; tensor parallelism splits them evenly over its GPUs). */
export function weightBytes(model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>): number {
  return model.paramsB * 1e9 * model.dtypeBytes;
}

/** Time an instance of `tp` GPUs takes to wake from `level`, s. */
export function wakeTimeS(model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>, tp: number, level: SleepLevel, t: SleepTimes = SLEEP_TIMES): number {
  const perGpuGB = weightBytes(model) / tp / 1e9;
  return level === 1 ? t.wakeFixedS + perGpuGB / t.h2dGBps : t.wakeFixedS + t.level2FixedS + perGpuGB / t.reloadGBps;
}

/** Time an instance of `tp` GPUs takes to fall asleep at `level`, s (level 1 copies the weights out; level 2 frees them). */
export function sleepTimeS(model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>, tp: number, level: SleepLevel, t: SleepTimes = SLEEP_TIMES): number {
  return level === 1 ? t.sleepFixedS + weightBytes(model) / tp / 1e9 / t.h2dGBps : t.sleepFixedS;
}

/** Power of one GPU asleep (either level), W: its unloaded idle power. */
export function asleepPowerW(gpu: Pick<GpuSpec, 'idlePowerW'>): number {
  return gpu.idlePowerW;
}

/** How many instances of this model a server's host memory can hold asleep at level 1 (the others sleep at level 2). */
export function level1SlotsPerServer(model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>, hostRamGiB = HOST_RAM_GIB, share = HOST_RAM_SLEEP_SHARE): number {
  return Math.max(0, Math.floor((hostRamGiB * 2 ** 30 * share) / weightBytes(model)));
}
