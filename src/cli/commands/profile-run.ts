/**
 * `dynamollm profile run`: measure a profile against a live OpenAI-compatible engine (src/telemetry/profiler.ts).
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { num, req, UsageError } from '../args.ts';
import { action, type ExitCode } from '../program.ts';
import { REQUEST_TYPES, isRequestType } from '../../../protocols/request-types.ts';
import type { GpuBackendKind, GpuControl } from '../../gpu/types.ts';

interface RunOptions {
  endpoint: string;
  gpuBackend: string;
  model: string;
  gpu: string;
  tp: string;
  gpus?: string;
  clocks: string;
  types?: string;
  loads: string;
  window: string;
  warmup?: string;
  timeScale: string;
  servedModelName?: string;
  seed: string;
  out: string;
}

export function registerRun(cmd: Command, exit: ExitCode): void {
  cmd
    .requiredOption('--endpoint <url>', 'OpenAI-compatible engine (vLLM or engine-emulator), e.g. http://127.0.0.1:8000')
    .requiredOption('--gpu-backend <b>', 'nvml | smi | emulated (emulated: the engine-emulator at --endpoint)')
    .requiredOption('--model <m>', 'model id written into the profile (src/model catalog, e.g. llama2-70b)')
    .option('--gpu <g>', 'GPU id written into the profile', 'h100')
    .requiredOption('--tp <n>', 'tensor parallelism of the instance under test')
    .option('--gpus <list>', 'GPU indices of the instance (nvml/smi); default 0..N-1')
    .requiredOption('--clocks <list>', 'SM clocks to profile, MHz, comma-separated (clamped to supported clocks)')
    .option('--types <list>', 'request types, e.g. SS,MS; default all nine')
    .option('--loads <list>', "offered loads tried in order, req/s to the instance (0 = lone requests back to back; a type's sweep at a clock stops at its first SLO miss)", '0,0.5,1,2,4,8,16,32,64')
    .option('--window <s>', 'measuring window per cell, seconds of engine time', '30')
    .option('--warmup <s>', 'warm-up before each window, seconds of engine time; default window/5')
    .option('--time-scale <x>', 'the engine runs X times faster than real time (engine-emulator --time-scale)', '1')
    .option('--served-model-name <name>', "'model' sent in requests; default the first of GET /v1/models")
    .option('--seed <s>', 'arrival-process seed', '1')
    .requiredOption('--out <file>', 'where to write the profile (JSON, format v1)')
    .action(action(exit, (values: RunOptions) => runProfiler(values)));
}

async function runProfiler(values: RunOptions): Promise<number> {
  const endpoint = req(values.endpoint, 'endpoint').replace(/\/+$/, '');
  const backend = req(values.gpuBackend, 'gpu-backend');
  if (!['nvml', 'smi', 'emulated'].includes(backend)) throw new UsageError(`--gpu-backend must be nvml, smi or emulated, got '${backend}'`);
  const modelId = req(values.model, 'model');
  const tp = num(values.tp, 'tp');
  if (!Number.isInteger(tp) || tp < 1) throw new UsageError(`--tp must be a positive integer, got ${tp}`);
  const list = (v: string | undefined, name: string, dflt?: string) => {
    const s = v ?? dflt;
    if (s === undefined) throw new UsageError(`--${name} is required`);
    return s.split(',').map((x) => x.trim()).filter(Boolean);
  };
  const numbers = (v: string | undefined, name: string, dflt?: string) =>
    list(v, name, dflt).map((x) => {
      const n = Number(x);
      if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name}: '${x}' is not a non-negative number`);
      return n;
    });
  const clocks = numbers(values.clocks, 'clocks');
  const loads = numbers(values.loads, 'loads');
  const typeNames = list(values.types, 'types', REQUEST_TYPES.join(','));
  for (const t of typeNames) if (!isRequestType(t)) throw new UsageError(`--types: unknown request type '${t}' (${REQUEST_TYPES.join(' ')})`);
  const gpus = values.gpus ? numbers(values.gpus, 'gpus') : Array.from({ length: tp }, (_, i) => i);
  const windowS = num(values.window, 'window');
  const warmupS = values.warmup === undefined ? undefined : num(values.warmup, 'warmup');
  const timeScale = num(values.timeScale, 'time-scale');
  if (!(windowS > 0) || !(timeScale > 0)) throw new UsageError('--window and --time-scale must be > 0');
  const out = req(values.out, 'out');

  const { DEFAULT_REQUEST_TYPES } = await import('../../model/index.ts');
  const requestTypes = DEFAULT_REQUEST_TYPES.filter((t) => typeNames.includes(t.type));
  const servedModel = values.servedModelName ?? (await firstModel(endpoint));

  const { createGpuControl } = await import('../../gpu/index.ts');
  const { runProfile } = await import('../../telemetry/profiler.ts');
  const gpu: GpuControl = await createGpuControl({ backend: backend as GpuBackendKind, gpuIds: gpus, emulatorUrl: endpoint });
  const ac = new AbortController();
  const onSignal = () => {
    process.stderr.write('\ninterrupted: resetting GPU clocks...\n');
    ac.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const bar = progressBar();
  try {
    const profile = await runProfile({
      endpoint, servedModel, modelId, gpuId: values.gpu ?? 'h100', tp, clocksMhz: clocks, requestTypes, loads, windowS, warmupS, timeScale,
      seed: num(values.seed, 'seed'), gpu, signal: ac.signal,
      onProgress: (p) => bar(p.done, p.total, `${p.clockMhz} MHz ${p.type} ${p.load} req/s` + (p.cell ? ` ttft99 ${p.cell.ttftP99Ms} ms tbt99 ${p.cell.tbtP99Ms} ms ${p.cell.powerW} W${p.cell.meetsSlo ? '' : ' (misses SLO)'}` : '')),
      notes: `gpu backend ${backend}, GPUs ${gpus.join(',')}`,
    });
    writeFileSync(out, JSON.stringify(profile, null, 1) + '\n');
    bar.end();
    process.stderr.write(`wrote ${out}: ${profile.cells.length} cells, ${profile.clocksMhz.length} clocks, ${profile.requestTypes.length} types\n`);
    return 0;
  } catch (err) {
    bar.end();
    if (ac.signal.aborted) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await gpu.close();
  }
}

async function firstModel(endpoint: string): Promise<string> {
  try {
    const res = await fetch(`${endpoint}/v1/models`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { data?: { id?: string }[] };
    const id = body.data?.[0]?.id;
    if (!res.ok || !id) throw new Error(`HTTP ${res.status}, no model listed`);
    return id;
  } catch (err) {
    throw new Error(`cannot list models at ${endpoint}/v1/models (${(err as Error).message}); pass --served-model-name`);
  }
}

/** A one-line progress bar on stderr when it is a terminal; one plain line per cell otherwise. */
function progressBar(): ((done: number, total: number, label: string) => void) & { end(): void } {
  const tty = process.stderr.isTTY;
  const f = (done: number, total: number, label: string) => {
    if (!tty) {
      process.stderr.write(`[${done}/${total}] ${label}\n`);
      return;
    }
    const width = 30;
    const filled = Math.round((done / Math.max(1, total)) * width);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}`;
    process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns ?? 120) - 1)}`);
  };
  return Object.assign(f, { end: () => tty && process.stderr.write('\n') });
}
