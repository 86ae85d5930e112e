/**
 * `instance` actor process: `--id ID --config FILE --pool P --tp N --gpus 0,1[,..] [--node N]`.
 * Owns one engine process (config.engine) and its GPUs' clocks (config.gpuBackend).
 */
import { busPingMs } from '../../src/policy/bus-keepalive.ts';
import { Actor, type ActorOptions } from '../../src/runtime/actor.ts';
import { randomBytes } from 'node:crypto';
import { createEngine } from '../../src/engine/index.ts';
import type { instanceMetrics } from './metrics.ts';
import { createGpuControl } from '../../src/gpu/index.ts';
import { FollowingGpuControl } from '../../src/gpu/following.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { profilePathOf, ConfigError, requireProfileCovers, type ClusterConfig } from '../common/config.ts';
import { engineConfigOf } from './engine-config.ts';
import { parseConfig } from '../common/config.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import { InstanceManager } from './instance-manager.ts';
import { INSTANCE_DEADLINES } from './deadlines.ts';

export const summary = 'instance manager: one engine and its GPU clocks';

class InstanceActor extends Actor {
  im?: InstanceManager;
  /** `profile`: the config's profile as createActor read it (undefined: none). */
  constructor(opts: ActorOptions, private readonly a: { config: ClusterConfig; profile: Profile | undefined; pool: string; tp: 1 | 2 | 4 | 8; gpuIds: number[]; node?: string }) {
    super(opts);
  }
  protected async onStart(): Promise<void> {
    const c = this.a.config;
    const profile = this.a.profile;
    if (!profile) this.log.warn({ profile: profilePathOf(c) }, 'no profile: the instance stays at max clock');
    // the engine refuses /v1 calls without this key; the gateways that stream a direct request get it in the grant
    const engineApiKey = randomBytes(24).toString('base64url');
    const engine = createEngine(engineConfigOf(c, { tp: this.a.tp, gpuIds: this.a.gpuIds, node: this.a.node, apiKey: engineApiKey, profile }));
    this.im = new InstanceManager({
      id: this.id, pool: this.a.pool, node: this.a.node, tp: this.a.tp, gpuIds: this.a.gpuIds, config: c, bus: this.bus, log: this.log,
      engine, profile, engineApiKey,
      // a failed engine is not left holding its GPUs: the instance stops (clocks reset) and exits non-zero,
      // and its node agent's supervisor starts it again with a fresh engine
      onFailed: (err) => {
        this.log.error({ err: err.message }, 'engine failed for good: stopping this instance so that it is started afresh');
        void this.stop().finally(() => process.exit(70));
      },
      openGpu: (url) =>
        c.gpuBackend === 'emulated'
          ? // the emulator numbers its own GPUs 0..tp-1; they live in the engine's process, so the control follows a
            // restarted engine to its new port (src/gpu/following.ts)
            FollowingGpuControl.create(url, () => (engine.state === 'ready' ? engine.baseUrl : undefined), (u) => createGpuControl({ backend: 'emulated', gpuIds: this.a.gpuIds.map((_, i) => i), emulatorUrl: u }))
          : createGpuControl({ backend: c.gpuBackend, gpuIds: this.a.gpuIds }),
    });
    await this.im.start();
  }
  protected override async onDrain(): Promise<void> {
    await this.im?.stop(this.opts.drainGraceMs ?? 10_000);
  }
  protected override async onStop(): Promise<void> {
    await this.im?.stop(0);
  }
  /** Prometheus text of this instance manager (served on --health HOST:PORT as /metrics). */
  async metricsText(): Promise<string> {
    // prom-client is loaded on the first scrape, not with every start of this process (src/runtime/startup.ts)
    // a failed load clears the cache so the next scrape tries again
    this.#metrics ??= import('./metrics.ts').then((m) => m.instanceMetrics({ instance: this.id, pool: this.a.pool, model: this.a.config.model, tp: this.a.tp }, () => this.im?.metricsSnapshot())).catch((e: unknown) => {
      this.#metrics = undefined;
      throw e;
    });
    return (await this.#metrics).text();
  }
  #metrics?: Promise<ReturnType<typeof instanceMetrics>>;
  protected override loadSummary() {
    return { queued: this.im?.queued ?? 0, running: this.im?.running ?? 0 };
  }
  protected override heartbeatMeta() {
    return { pool: this.a.pool, tp: this.a.tp, gpus: this.a.gpuIds.join(','), node: this.a.node ?? '', clockMhz: this.im?.clockMhz ?? 0, state: this.im?.state ?? 'starting' };
  }
}

/** `dynamollm actor instance --set pool=P --set tp=N --set gpus=0,1 [--set node=N]` (src/cli/actor-registry.ts). */
export function createActor(o: ActorFactoryOptions): Actor {
  const config = parseConfig(o.config ?? {});
  const tp = Number(o.extra.tp);
  if (![1, 2, 4, 8].includes(tp)) throw new ConfigError(`--set tp must be 1, 2, 4 or 8, got ${o.extra.tp}`);
  const gpuIds = (o.extra.gpus ?? '').split(',').map(Number);
  if (gpuIds.length !== tp || gpuIds.some((g) => !Number.isInteger(g) || g < 0)) throw new ConfigError(`--set gpus must list ${tp} GPU indices`);
  if (!o.extra.pool) throw new ConfigError('--set pool=POOL is required');
  const profile = requireProfileCovers(config, [tp]);
  return new InstanceActor(
    { ...INSTANCE_DEADLINES, kind: 'instance', id: o.id, nats: o.nats, log: o.log, heartbeatMs: config.liveness.statusIntervalMs, natsPingMs: busPingMs(config.liveness.deadAfterMs), jetstreamReplicas: config.nats.jetstreamReplicas },
    { config, profile, pool: o.extra.pool, tp: tp as 1 | 2 | 4 | 8, gpuIds, node: o.extra.node },
  );
}

export { engineHost } from './engine-config.ts';
