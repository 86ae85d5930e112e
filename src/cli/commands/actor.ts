/**
 * `dynamollm actor <kind> [--id ID] [--config FILE] [NATS flags] [--set k=v ...]`:
 * runs one actor process (kinds: src/cli/actor-registry.ts). SIGTERM/SIGINT drain it, then it exits.
 * NATS settings: src/runtime/nats-settings.ts (flags, then env NATS_URL/NATS_USER/NATS_PASSWORD/NATS_CREDS/
 * NATS_NKEY/NATS_CERT/NATS_KEY/NATS_CA, then the config's nats section).
 */
import { randomBytes } from 'node:crypto';
import { parse, readConfigFile, UsageError } from '../args.ts';
import { ACTOR_REGISTRY } from '../actor-registry.ts';
import type { ActorRegistry } from '../../runtime/actor-factory.ts';
import { createLogger } from '../../runtime/logger.ts';
import { startHealthServer } from '../../runtime/health.ts';
import { actorNatsSettings, NATS_FLAG_OPTIONS, NATS_FLAGS_USAGE, type NatsConfigSection } from '../../runtime/nats-settings.ts';

export const summary = 'run one actor process (gateway, cluster, pool, instance, node)';

const usage = (registry: ActorRegistry) => `usage: dynamollm actor <kind> [--id ID] [--config FILE] ${NATS_FLAGS_USAGE} [--set key=value ...] [--health HOST:PORT]
  --health HOST:PORT  serve GET /livez and /readyz (env DYNAMOLLM_HEALTH); a port alone binds 0.0.0.0
kinds: ${Object.keys(registry).join(', ')}`;

export function run(argv: string[]): Promise<number> {
  return runActor(argv, ACTOR_REGISTRY);
}

/** Runs one actor of a kind from `registry` (tests pass their fixture kinds: test/fixtures/actors/main.ts). */
export async function runActor(argv: string[], registry: ActorRegistry): Promise<number> {
  const USAGE = usage(registry);
  const { values, positionals } = parse(
    argv,
    {
      id: { type: 'string' },
      config: { type: 'string' },
      ...NATS_FLAG_OPTIONS,
      set: { type: 'string', multiple: true },
      'log-level': { type: 'string' },
      health: { type: 'string' },
      pretty: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const kind = positionals[0];
  if (!kind) throw new UsageError(USAGE);
  const load = registry[kind];
  if (!load) throw new UsageError(`unknown actor kind '${kind}'\n${USAGE}`);
  const extra: Record<string, string> = {};
  for (const kv of values.set ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--set expects key=value, got '${kv}'`);
    extra[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const config: unknown = values.config ? readConfigFile(values.config) : undefined;
  const log = createLogger({ level: values['log-level'], pretty: values.pretty });
  const id = values.id ?? `${kind}-${randomBytes(3).toString('hex')}`;
  const mod = await load();
  const actor = await mod.createActor({
    id,
    config,
    nats: actorNatsSettings(kind, { flags: values, config: (config as { nats?: NatsConfigSection } | undefined)?.nats }),
    log,
    extra,
  });
  actor.installSignalHandlers();
  // liveness/readiness endpoints for probes (k8s, systemd checks): /livez, /readyz
  const healthAddr = values.health ?? process.env.DYNAMOLLM_HEALTH;
  if (healthAddr) {
    const h = await startHealthServer(healthAddr, () => ({ ...actor.health(), kind, id }));
    log.info({ port: h.port }, `health endpoints on ${healthAddr} (/livez, /readyz)`);
  }
  await actor.start();
  // keep the process alive until a signal drains the actor (the handler exits the process)
  await new Promise<never>(() => setInterval(() => {}, 1 << 30));
  return 0;
}
