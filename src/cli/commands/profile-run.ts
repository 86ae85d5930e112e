/**
 * `dynamollm profile run`: measure a profile against a live OpenAI-compatible engine (src/telemetry/profiler.ts).
 */
import { writeFileSync } from 'node:fs';
import { num, parse, req, UsageError } from '../args.ts';
import { REQUEST_TYPES, isRequestType } from '../../../protocols/request-types.ts';
import type { GpuBackendKind, GpuControl } from '../../gpu/types.ts';

const HELP = `usage: dynamollm profile run --endpoint URL --gpu-backend nvml|smi|emulated --model M --tp N --clocks LIST --out FILE [options]
  --endpoint URL         OpenAI-compatible engine (vLLM or engine-emulator), e.g. http://127.0.0.1:8000
  --gpu-backend B        nvml | smi | emulated (emulated: the engine-emulator at --endpoint)
  --model M              model id written into the profile (src/model catalog, e.g. llama2-70b)
  --gpu G                GPU id written into the profile; default h100
  --tp N                 tensor parallelism of the instance under test
  --gpus LIST            GPU indices of the instance (nvml/smi); default 0..N-1
  --clocks LIST          SM clocks to profile, MHz, comma-separated (clamped to supported clocks)
  --types LIST           request types, e.g. SS,MS; default all nine
  --loads LIST           offered loads tried in order, req/s to the instance; default 0,0.5,1,2,4,8,16,32,64
                         (0 = lone requests back to back; a type's sweep at a clock stops at its first SLO miss)
  --window S             measuring window per cell, seconds of engine time; default 30
  --warmup S             warm-up before each window, seconds of engine time; default window/5
  --time-scale X         the engine runs X times faster than real time (engine-emulator --time-scale); default 1
  --served-model-name N  'model' sent in requests; default the first of GET /v1/models
  --seed S               arrival-process seed; default 1
  --out FILE             where to write the profile (JSON, format v1)
`;

export async function run(argv: string[]): Promise<number | undefined> {
  const { values } = parse(argv, {
    endpoint: { type: 'string' },
    'gpu-backend': { type: 'string' },
    model: { type: 'string' },
    gpu: { type: 'string' },
    tp: { type: 'string' },
    gpus: { type: 'string' },
    clocks: { type: 'string' },
    types: { type: 'string' },
    loads: { type: 'string' },
    window: { type: 'string' },
    warmup: { type: 'string' },
    'time-scale': { type: 'string' },
    'served-model-name': { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const endpoint = req(values.endpoint, 'endpoint').replace(/\/+$/, '');
  const backend = req(values['gpu-backend'], 'gpu-backend');
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
  const loads = numbers(values.loads, 'loads', '0,0.5,1,2,4,8,16,32,64');
  const typeNames = list(values.types, 'types', REQUEST_TYPES.join(','));
  for (const t of typeNames) if (!isRequestType(t)) throw new UsageError(`--types: unknown request type '${t}' (${REQUEST_TYPES.join(' ')})`);
  const gpus = values.gpus ? numbers(values.gpus, 'gpus') : Array.from({ length: tp }, (_, i) => i);
  const windowS = num(values.window, 'window', 30);
  const warmupS = values.warmup === undefined ? undefined : num(values.warmup, 'warmup');
  const timeScale = num(values['time-scale'], 'time-scale', 1);
  if (!(windowS > 0) || !(timeScale > 0)) throw new UsageError('--window and --time-scale must be > 0');
  const out = req(values.out, 'out');

  const { DEFAULT_REQUEST_TYPES } = await import('../../model/index.ts');
  const requestTypes = DEFAULT_REQUEST_TYPES.filter((t) => typeNames.includes(t.type));
  const servedModel = values['served-model-name'] ?? (await firstModel(endpoint));

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
      seed: num(values.seed, 'seed', 1), gpu, signal: ac.signal,
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
    throw new UsageError(`cannot list models at ${endpoint}/v1/models (${(err as Error).message}); pass --served-model-name`);
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
