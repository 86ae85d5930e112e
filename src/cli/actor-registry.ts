/**
 * Actor kinds runnable with `dynamollm actor <kind>`. Each entry lazily imports a module exporting
 * `createActor(opts: ActorFactoryOptions): Actor` (so `dynamollm actor gateway` does not load the pool
 * manager). To add a kind, add one line here. Test-only kinds live in test/fixtures/actors (they run
 * through test/fixtures/actors/main.ts with the same command-line handling).
 */
import type { ActorRegistry } from '../runtime/actor-factory.ts';

export const ACTOR_REGISTRY: ActorRegistry = {
  gateway: () => import('../../actors/gateway/main.ts'),
  cluster: () => import('../../actors/cluster-manager/main.ts'),
  pool: () => import('../../actors/pool-manager/main.ts'),
  instance: () => import('../../actors/instance-manager/main.ts'),
  node: () => import('../../actors/node-agent/main.ts'),
};
