/**
 * Actor kinds runnable with `dynamollm actor <kind>`. Each entry lazily imports a module exporting
 * `createActor(opts: ActorFactoryOptions): Actor` (so `dynamollm actor gateway` does not load the pool
 * manager). To add a kind, add one line here.
 */
import type { Actor } from './actor.ts';
import type { Logger } from 'pino';

export interface ActorFactoryOptions {
  /** actor id (unique per process). */
  id: string;
  /** parsed --config file (YAML or JSON), or undefined. */
  config?: unknown;
  /** NATS server(s). */
  servers: string | string[];
  user?: string;
  pass?: string;
  log: Logger;
  /** extra `--set key=value` options. */
  extra: Record<string, string>;
}

export interface ActorModule {
  createActor(opts: ActorFactoryOptions): Actor | Promise<Actor>;
}

export const ACTOR_REGISTRY: Record<string, () => Promise<ActorModule>> = {
  gateway: () => import('../../actors/gateway/main.ts'),
  cluster: () => import('../../actors/cluster-manager/main.ts'),
  pool: () => import('../../actors/pool-manager/main.ts'),
  instance: () => import('../../actors/instance-manager/main.ts'),
  node: () => import('../../actors/node-agent/main.ts'),
  // test kinds (test/fixtures/actors): tiny actors used by the runtime's integration tests
  'test-echo': () => import('../../test/fixtures/actors/echo.ts'),
  'test-lease': () => import('../../test/fixtures/actors/lease.ts'),
};
