/**
 * Public API of the engine layer: the Engine interface, createEngine(), the batching core and the errors.
 * The emulator is just another engine command (`dynamollm engine-emulator ...`) managed by the
 * same VllmEngine class as `vllm serve`, so the instance manager's code path is identical for both.
 */
import { cliArgs } from '../runtime/code-path.ts';
import type { EngineConfig } from './engine.ts';
import { DEFAULT_RESTART, VllmEngine, type ProcessEngineSpec } from './vllm.ts';
import { EngineConfigError } from './errors.ts';
import { engineBaseEnv } from './engine-env.ts';

export * from './engine.ts';
export * from './errors.ts';
export { VllmEngine, DEFAULT_RESTART, type ProcessEngineSpec } from './vllm.ts';
export { BatchingCore, KV_BLOCK_TOKENS } from './core.ts';
export type * from './core-types.ts';
export { parsePrometheusText, parseVllmMetrics, parseVllmPrefixCache, histogramQuantile, type MetricFamily, type Sample } from './metrics-parse.ts';


/** `--max-num-batched-tokens N --max-num-seqs N` (same flags in vLLM and the emulator) when the config sets a budget. */
function schedulerArgs(cfg: EngineConfig): string[] {
  const s = cfg.scheduler;
  if (!s) return [];
  if (!(Number.isInteger(s.maxNumBatchedTokens) && s.maxNumBatchedTokens >= 2 && Number.isInteger(s.maxNumSeqs) && s.maxNumSeqs >= 1)) {
    throw new EngineConfigError(`scheduler budget must be integers (max_num_batched_tokens >= 2, max_num_seqs >= 1), got ${JSON.stringify(s)}`);
  }
  return ['--max-num-batched-tokens', String(s.maxNumBatchedTokens), '--max-num-seqs', String(s.maxNumSeqs)];
}
function longPrefillArgs(cfg: EngineConfig): string[] {
  const t = cfg.longPrefillTokenThreshold;
  if (t === undefined || t === 0) return [];
  if (!(Number.isInteger(t) && t > 0)) throw new EngineConfigError(`longPrefillTokenThreshold must be an integer >= 0, got ${t}`);
  return ['--long-prefill-token-threshold', String(t)];
}

function maxLogprobsArgs(cfg: EngineConfig): string[] {
  const n = cfg.maxLogprobs;
  if (n === undefined) return [];
  if (!(Number.isInteger(n) && n >= 0)) throw new EngineConfigError(`maxLogprobs must be an integer >= 0, got ${n}`);
  return ['--max-logprobs', String(n)];
}

/** Command, arguments and environment an EngineConfig spawns (exported for logs and tests). */
export function engineSpec(cfg: EngineConfig): ProcessEngineSpec {
  if (!Number.isInteger(cfg.tp) || cfg.tp < 1) throw new EngineConfigError(`tp must be a positive integer, got ${cfg.tp}`);
  if (!Array.isArray(cfg.gpuIds) || cfg.gpuIds.some((g) => !Number.isInteger(g) || g < 0)) {
    throw new EngineConfigError(`gpuIds must be non-negative integers, got ${JSON.stringify(cfg.gpuIds)}`);
  }
  if (cfg.gpuIds.length !== cfg.tp) throw new EngineConfigError(`tp ${cfg.tp} needs ${cfg.tp} GPU ids, got ${cfg.gpuIds.length}`);
  if (!Number.isInteger(cfg.port) || cfg.port < 0 || cfg.port > 65535) throw new EngineConfigError(`port must be 0..65535, got ${cfg.port}`);
  if (!(cfg.healthDeadlineMs > 0)) throw new EngineConfigError(`healthDeadlineMs must be > 0, got ${cfg.healthDeadlineMs}`);
  const host = cfg.host ?? '127.0.0.1';
  let command: string;
  let args: string[];
  if (cfg.kind === 'emulator') {
    command = cfg.command ?? process.execPath;
    args = cfg.args ?? [
      ...(cfg.command ? [] : cliArgs()),
      'engine-emulator', '--model', cfg.model, '--gpu', cfg.gpu ?? 'h100', '--tp', String(cfg.tp),
      ...(cfg.calibrationEngine ? ['--calibration-engine', cfg.calibrationEngine] : []),
      '--port', String(cfg.port), '--host', host,
      '--time-scale', String(cfg.timeScale ?? 1), '--seed', String(cfg.seed ?? 1),
      '--startup-delay-ms', String(cfg.startupDelayMs ?? 0),
      ...(cfg.servedModelName ? ['--served-model-name', cfg.servedModelName] : []),
      ...(cfg.zeroDelay ? ['--zero-delay'] : []),
      ...(cfg.streamInterval && cfg.streamInterval > 1 ? ['--stream-interval', String(cfg.streamInterval)] : []),
      ...schedulerArgs(cfg),
      ...longPrefillArgs(cfg),
      ...maxLogprobsArgs(cfg),
      ...(cfg.prefixCaching ? ['--enable-prefix-caching'] : []),
      '--exit-on-stdin-close',
    ];
  } else if (cfg.kind === 'vllm') {
    command = cfg.command ?? 'vllm';
    args = cfg.args ?? [
      'serve', cfg.model, '--tensor-parallel-size', String(cfg.tp), '--port', String(cfg.port), '--host', host,
      ...(cfg.servedModelName ? ['--served-model-name', cfg.servedModelName] : []),
      ...(cfg.enableSleep ? ['--enable-sleep-mode'] : []),
      ...(cfg.streamInterval && cfg.streamInterval > 1 ? ['--stream-interval', String(cfg.streamInterval)] : []),
      ...schedulerArgs(cfg),
      ...longPrefillArgs(cfg),
      ...maxLogprobsArgs(cfg),
      ...(cfg.prefixCaching === true ? ['--enable-prefix-caching'] : cfg.prefixCaching === false ? ['--no-enable-prefix-caching'] : []),
    ];
  } else {
    throw new EngineConfigError(`unknown engine kind '${String((cfg as { kind: unknown }).kind)}'`);
  }
  args = [...args, ...(cfg.extraArgs ?? [])];
  const env: NodeJS.ProcessEnv = {
    // no NATS credential, API key or token of dynamollm's (engine-env.ts): only the engine's own key below
    ...engineBaseEnv(),
    CUDA_VISIBLE_DEVICES: cfg.gpuIds.join(','),
    // vLLM exposes /sleep, /wake_up and /is_sleeping only in dev mode
    ...(cfg.enableSleep ? { VLLM_SERVER_DEV_MODE: '1' } : {}),
    // vLLM (and the emulator) then refuse /v1 calls without `Authorization: Bearer <key>`
    ...(cfg.apiKey ? { VLLM_API_KEY: cfg.apiKey } : {}),
    ...cfg.env,
  };
  return {
    command, args, env, host, port: cfg.port,
    healthDeadlineMs: cfg.healthDeadlineMs,
    // the emulator always serves the sleep endpoints
    enableSleep: cfg.enableSleep ?? cfg.kind === 'emulator',
    autoRestart: cfg.autoRestart ?? true,
    restart: { ...DEFAULT_RESTART, ...cfg.restart },
    requestTimeoutMs: cfg.requestTimeoutMs ?? 600_000,
    probeTimeoutMs: cfg.probeTimeoutMs ?? 5_000,
    logLines: cfg.logLines ?? 500,
    ...(cfg.apiKey ? { apiKey: cfg.apiKey } : {}),
  };
}

export function createEngine(cfg: EngineConfig): VllmEngine {
  return new VllmEngine(engineSpec(cfg));
}
