/**
 * `pool` actor process: `--id ID --config FILE [--pools pool-SS,pool-MM,...]` hosts one PoolLeader per
 * pool (each with its own lease), so one process can stand for all pools on a small machine; run two such
 * processes for standby leaders. With `--health HOST:PORT` it serves its /metrics there (metrics.ts).
 */
import { busPingMs } from '../../src/policy/bus-keepalive.ts';
import { Actor, type ActorOptions } from '../../src/runtime/actor.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { poolsOf, ConfigError, requireProfileCovers, type ClusterConfig } from '../common/config.ts';
import { parseConfig } from '../common/config.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import { PoolLeader } from './pool-leader.ts';
import { DispatchView, StatusRequest, subjects } from '../../protocols/index.ts';
import { closeMilpPlanner } from '../common/policy.ts';
import type { poolManagerMetrics } from './metrics.ts';

export const summary = 'pool manager: dispatch, re-shard epoch, instance failures (one leader per pool)';

export class PoolManager extends Actor {
  leaders: PoolLeader[] = [];
  /** `profile`: the config's profile as createActor read it (undefined: none). */
  constructor(opts: ActorOptions, private readonly config: ClusterConfig, private readonly profile: Profile | undefined, private readonly poolIds?: string[]) {
    super(opts);
  }
  protected async onStart(): Promise<void> {
    const c = this.config;
    const all = poolsOf(c);
    const chosen = this.poolIds ? all.filter((p) => this.poolIds!.includes(p.id)) : all;
    const unknown = (this.poolIds ?? []).filter((id) => !all.some((p) => p.id === id));
    if (unknown.length) throw new ConfigError(`unknown pool(s) ${unknown.join(', ')} (known: ${all.map((p) => p.id).join(', ')})`);
    const profile = this.profile;
    for (const p of chosen) this.leaders.push(new PoolLeader({ pool: p.id, types: p.types, holder: this.id, bus: this.bus, config: c, log: this.log, profile, clock: this.clock }));
    // each pool's lease contends at once (their first attempts side by side: the bucket is opened once, Bus.kv)
    await Promise.all(this.leaders.map((l) => l.start()));
    // each pool's dispatch view, on the observer's request (dynamollm chaos times a dead instance's leave by it): computed only when asked
    this.serve(subjects.dispatchView('pool', this.id), StatusRequest, DispatchView, () => Promise.resolve({
      v: 1 as const, kind: 'pool' as const, id: this.id, atMs: this.clock.now(), pools: this.leaders.map((l) => l.view()),
    }), { capacity: 16, concurrency: 1 });
  }
  protected override async onStop(): Promise<void> {
    await Promise.all(this.leaders.map((l) => l.stop()));
    await closeMilpPlanner();
  }
  /** Prometheus text of this pool manager (served on --health HOST:PORT as /metrics): leads, holds and their outcomes. */
  async metricsText(): Promise<string> {
    // prom-client is loaded on the first scrape, not with every start of this process (src/runtime/startup.ts)
    // a failed load clears the cache so the next scrape tries again
    this.#metrics ??= import('./metrics.ts').then((m) => m.poolManagerMetrics(this.id, () => this.leaders)).catch((e: unknown) => {
      this.#metrics = undefined;
      throw e;
    });
    return (await this.#metrics).text();
  }
  #metrics?: Promise<ReturnType<typeof poolManagerMetrics>>;
  protected override heartbeatMeta() {
    return { leads: this.leaders.filter((l) => l.isLeader()).map((l) => l.pool).join(',') };
  }
}

/** `dynamollm actor pool [--set pools=pool-SS,pool-MM]` (src/cli/actor-registry.ts). */
export function createActor(o: ActorFactoryOptions): PoolManager {
  const config = parseConfig(o.config ?? {});
  const profile = requireProfileCovers(config, [config.engine.initialTp]);
  return new PoolManager({ kind: 'pool', id: o.id, nats: o.nats, log: o.log, heartbeatMs: config.liveness.statusIntervalMs, natsPingMs: busPingMs(config.liveness.deadAfterMs), jetstreamReplicas: config.nats.jetstreamReplicas }, config, profile, o.extra.pools ? o.extra.pools.split(',') : undefined);
}
