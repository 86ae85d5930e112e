/**
 * What an actor module exports so that a process can run it: `createActor(opts)`. The kinds a deployment
 * runs are listed in src/cli/actor-registry.ts; tests run their own fixture kinds (test/fixtures/actors).
 */
import type { Logger } from 'pino';
import type { Actor } from './actor.ts';
import type { NatsSettings } from './nats-settings.ts';

export interface ActorFactoryOptions {
  /** actor id (unique per process). */
  id: string;
  /** parsed --config file (YAML or JSON), or undefined. */
  config?: unknown;
  /** NATS server(s) and credentials, resolved by src/runtime/nats-settings.ts. */
  nats: NatsSettings;
  log: Logger;
  /** extra `--set key=value` options. */
  extra: Record<string, string>;
}

export interface ActorModule {
  createActor(opts: ActorFactoryOptions): Actor | Promise<Actor>;
  /**
   * worker processes the kind runs behind one listening address (src/runtime/workers.ts); 1 or absent: none,
   * the process is the actor. Throws ConfigError on a bad config, as createActor does.
   */
  workerCount?(opts: ActorFactoryOptions): number;
  /** ms the primary gives a worker between SIGTERM and SIGKILL (WorkersOptions.stopGraceMs); absent: its default. */
  workerStopGraceMs?(opts: ActorFactoryOptions): number;
}

/** kind -> lazy import of the module that creates it (so running one kind does not load the others). */
export type ActorRegistry = Record<string, () => Promise<ActorModule>>;
