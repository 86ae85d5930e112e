/**
 * The engine an instance manager runs, from the cluster config: createEngine's config for one instance (its TP
 * degree, GPUs, server and API key).
 */
import type { EngineConfig } from '../../src/engine/index.ts';
import { getModelSpec } from '../../src/model/catalog.ts';
import { engineOfProfile } from '../../src/model/perf.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';

export interface InstanceEngine {
  tp: 1 | 2 | 4 | 8;
  gpuIds: number[];
  node?: string;
  /** the key the engine refuses /v1 calls without */
  apiKey: string;
  profile: Profile | undefined;
}

/**
 * vLLM's sleep mode: engine.enableSleep, else on when scaling.sleepStandby puts engines to sleep or engine.args
 * pass --enable-sleep-mode themselves (createEngine adds the flag and VLLM_SERVER_DEV_MODE=1 for /sleep and
 * /wake_up). The emulator serves sleep mode always.
 */
export function sleepModeOf(c: ClusterConfig): boolean {
  if (c.engine.kind !== 'vllm') return true;
  return c.engine.enableSleep ?? (c.scaling.sleepStandby || (c.engine.args ?? []).includes('--enable-sleep-mode'));
}

export function engineConfigOf(c: ClusterConfig, a: InstanceEngine, env: NodeJS.ProcessEnv = process.env): EngineConfig {
  const profile = a.profile;
  return {
    // vLLM loads engine.model (a Hugging Face repo or a local path; default the catalog's HF name of the model)
    // and serves it under the cluster's model id; the emulator takes the model id itself
    kind: c.engine.kind, model: c.engine.kind === 'vllm' ? (c.engine.model ?? getModelSpec(c.model).name) : c.model, gpu: c.gpu, tp: a.tp, gpuIds: a.gpuIds, port: 0,
    host: engineHost(c, a.node, env),
    apiKey: a.apiKey,
    timeScale: c.engine.timeScale, servedModelName: c.model, startupDelayMs: c.engine.startupDelayMs, healthDeadlineMs: c.engine.healthDeadlineMs,
    // engine.args are extra arguments after `vllm serve <model> --tensor-parallel-size N --port P ...`
    ...(c.engine.command ? { command: c.engine.command } : {}), ...(c.engine.args ? { extraArgs: c.engine.args } : {}),
    enableSleep: sleepModeOf(c),
    restart: { initialBackoffMs: 200, maxBackoffMs: 5000 },
    ...(c.engine.streamInterval > 1 ? { streamInterval: c.engine.streamInterval } : {}),
    // the engine schedules with the budget the profile describes (absent in older profiles: the engine's default)
    ...(profile?.scheduler ? { scheduler: profile.scheduler } : {}),
    // an emulated engine runs the performance model the profile was generated from (one model, not two)
    ...(profile && profile.source.kind === 'model' ? { calibrationEngine: engineOfProfile(profile) } : {}),
    ...(c.engine.longPrefillTokenThreshold > 0 ? { longPrefillTokenThreshold: c.engine.longPrefillTokenThreshold } : {}),
    ...(c.engine.prefixCaching !== undefined ? { prefixCaching: c.engine.prefixCaching } : {}),
    // the bound the instance reports to the gateways with each count (engineTokenize: maxLogprobsOf)
    ...(c.engine.maxLogprobs !== undefined ? { maxLogprobs: c.engine.maxLogprobs } : {}),
  };
}

/**
 * Where this instance's engine listens, which is also the URL a gateway streaming a direct request is granted:
 * its server's `address`, else env DYNAMOLLM_ENGINE_HOST (the node agent's, e.g. its pod IP), else 127.0.0.1.
 */
export function engineHost(c: ClusterConfig, node: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return c.servers.find((s) => s.id === node)?.address ?? (env.DYNAMOLLM_ENGINE_HOST || undefined) ?? '127.0.0.1';
}
