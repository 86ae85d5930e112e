/**
 * `dynamollm actor <kind> [--id ID] [--config FILE] [NATS flags] [--set k=v ...]`:
 * runs one actor process (kinds: src/cli/actor-registry.ts). SIGTERM/SIGINT drain it, then it exits.
 * NATS settings: src/runtime/nats-settings.ts (flags, then env NATS_URL/NATS_USER/NATS_PASSWORD/NATS_CREDS/
 * NATS_NKEY/NATS_CERT/NATS_KEY/NATS_CA, then the config's nats section).
 */
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { readConfigFile, UsageError } from '../args.ts';
import { ACTOR_REGISTRY } from '../actor-registry.ts';
import { ConfigError } from '../../../actors/common/config.ts';
import { action, configure, ExitCode, natsOptions, runProgram } from '../program.ts';
import type { ActorRegistry } from '../../runtime/actor-factory.ts';
import { createLogger } from '../../runtime/logger.ts';
import { startHealthServer } from '../../runtime/health.ts';
import { runWorkers, workerId, workerIndex } from '../../runtime/workers.ts';
import { actorNatsSettings, type NatsConfigSection, type NatsFlags } from '../../runtime/nats-settings.ts';
import { markStartup } from '../../runtime/startup.ts';

interface ActorOptions extends NatsFlags {
  id?: string;
  config?: string;
  set: string[];
  logLevel?: string;
  health?: string;
  pretty?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** Declares `actor <kind>` on `cmd` for the kinds of `registry`. */
export function declareActor(cmd: Command, registry: ActorRegistry, exit: ExitCode): Command {
  natsOptions(
    cmd
      .argument('<kind>', `actor kind: ${Object.keys(registry).join(', ')}`)
      .option('--id <id>', 'actor id (default <kind>-<random>)')
      .option('--config <file>', 'cluster config (YAML/JSON)'),
  )
    .option('--set <key=value>', "a setting of the kind's own (repeatable)", collect, [])
    .option('--log-level <level>', 'pino level (env DYNAMOLLM_LOG_LEVEL)')
    .option('--health <host:port>', 'serve GET /livez and /readyz (env DYNAMOLLM_HEALTH); a port alone binds 0.0.0.0')
    .option('--pretty', 'human-readable logs (default: on a terminal; env DYNAMOLLM_LOG_PRETTY=1 forces them, 0 gives JSON)')
    .action(action(exit, (kind: string, values: ActorOptions) => startActor(kind, values, registry)));
  return cmd;
}

export function register(cmd: Command, exit: ExitCode): void {
  declareActor(cmd, ACTOR_REGISTRY, exit);
}

/** Runs one actor of a kind from `registry` (tests pass their fixture kinds: test/fixtures/actors/main.ts). */
export function runActor(argv: string[], registry: ActorRegistry): Promise<number> {
  const exit = new ExitCode();
  return runProgram(declareActor(configure(new Command('actor')), registry, exit), argv, exit);
}

async function startActor(kind: string, values: ActorOptions, registry: ActorRegistry): Promise<number> {
  markStartup('cli');
  const load = registry[kind];
  if (!load) throw new UsageError(`unknown actor kind '${kind}' (kinds: ${Object.keys(registry).join(', ')})`);
  const extra: Record<string, string> = {};
  for (const kv of values.set) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--set expects key=value, got '${kv}'`);
    extra[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const config: unknown = values.config ? readConfigFile(values.config) : undefined;
  const log = createLogger({ level: values.logLevel, pretty: values.pretty });
  markStartup('config');
  // a worker (src/runtime/workers.ts) is the actor under its own id; the primary passes it its own id in the env
  const index = workerIndex();
  const baseId = process.env.DYNAMOLLM_WORKERS_ID ?? values.id ?? `${kind}-${randomBytes(3).toString('hex')}`;
  const id = index === undefined ? baseId : workerId(baseId, index);
  const mod = await load();
  markStartup('module');
  let actor: Awaited<ReturnType<typeof mod.createActor>>;
  try {
    const opts = {
      id,
      config,
      nats: actorNatsSettings(kind, { flags: values, config: (config as { nats?: NatsConfigSection } | undefined)?.nats }),
      log,
      extra,
    };
    const workers = index === undefined ? (mod.workerCount?.(opts) ?? 1) : 1;
    if (workers > 1) {
      // the primary: no NATS connection of its own, only the workers (a random default id stays one for all)
      process.env.DYNAMOLLM_WORKERS_ID = baseId;
      log.info({ id, workers }, `${kind} running ${workers} worker processes (ids ${workerId(id, 0)}..${workerId(id, workers - 1)})`);
      const stopGraceMs = mod.workerStopGraceMs?.(opts);
      return await runWorkers({ count: workers, log, ...(stopGraceMs !== undefined ? { stopGraceMs } : {}) });
    }
    actor = await mod.createActor(opts);
    markStartup('create');
  } catch (err) {
    // a config the actor cannot run with (a profile lacking its TP, a bad --set) is refused before it connects,
    // as `up` refuses it: exit 2, one line naming the file and the key
    if (err instanceof ConfigError) throw new UsageError(`config ${values.config ?? '(none)'}: ${err.message}`);
    throw err;
  }
  actor.installSignalHandlers();
  // liveness/readiness endpoints for probes (k8s, systemd checks): /livez, /readyz
  const healthAddr = values.health ?? process.env.DYNAMOLLM_HEALTH;
  if (healthAddr) {
    // an actor with metrics of its own (the instance manager) serves them there too
    const withMetrics = actor as { metricsText?: () => Promise<string> };
    const metrics = typeof withMetrics.metricsText === 'function' ? () => withMetrics.metricsText!() : undefined;
    const h = await startHealthServer(healthAddr, () => ({ ...actor.health(), kind, id }), metrics);
    log.info({ port: h.port }, `health endpoints on ${healthAddr} (/livez, /readyz${metrics ? ', /metrics' : ''})`);
  }
  await actor.start();
  // keep the process alive until a signal drains the actor (the handler exits the process)
  await new Promise<never>(() => setInterval(() => {}, 1 << 30));
  return 0;
}
