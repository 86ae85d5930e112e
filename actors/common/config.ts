/**
 * The cluster configuration shared by `dynamollm up` and every actor (one YAML or JSON file). Validated
 * with zod; a bad file fails with the path of each bad field. Every knob states its unit and default.
 * Default (`defaultConfig()`): Llama2-70B on 4 emulated 8xH100 servers, the paper's epochs and SLOs.
 */
import { instanceStatusMs, suspectAfterMsOf, SUSPECT_INTERVALS } from '../../src/policy/suspect.ts';
import { deathWindowProblem } from '../../src/policy/bus-keepalive.ts';
import { DEFAULT_HEADROOM } from '../../src/policy/types.ts';
import { DEFAULT_ENGINE_HEALTH, DEFAULT_ENGINE_IDLE } from '../../src/policy/engine-liveness.ts';
import { existsSync, readFileSync } from 'node:fs';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { parseYaml } from '../../src/runtime/yaml.ts';
import { z } from 'zod';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { MAX_LOGPROBS_CEILING } from '../../protocols/sampling-limits.ts';
import { GPUS, MODELS } from '../../src/model/catalog.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly retryable = false;
}

const pos = z.number().finite().positive();
const nonneg = z.number().finite().nonnegative();

const natsCreds = z.object({ user: z.string().min(1), pass: z.string() }).strict();

const serverSchema = z.object({
  /** node agent id (one per GPU server). */
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'server id: 1-64 of [A-Za-z0-9_-]'),
  /** GPUs in the server; default 8. */
  gpus: z.number().int().min(1).max(64).default(8),
  /**
   * the address gateways reach this server's engines at (a direct request streams from the engine): its engines
   * listen there. Default env DYNAMOLLM_ENGINE_HOST of the node agent (Kubernetes: the pod IP), else 127.0.0.1
   * (gateways on the same machine).
   */
  address: z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, 'server address: a host name or an IP address').optional(),
}).strict();

export const configSchema = z
  .object({
    nats: z
      .object({
        /** NATS server URL(s); default nats://127.0.0.1:4222. */
        url: z.union([z.string(), z.array(z.string())]).default('nats://127.0.0.1:4222'),
        /** replicas of the KV buckets and the events stream the actors create: 1, or 3/5 on a clustered NATS; default 1. */
        jetstreamReplicas: z.union([z.literal(1), z.literal(3), z.literal(5)]).default(1),
        user: z.string().optional(),
        pass: z.string().optional(),
        /** NATS creds file (user JWT + seed), as the `nats` CLI's --creds / NATS_CREDS. */
        creds: z.string().min(1).optional(),
        /** file holding an nkey user seed, as the `nats` CLI's --nkey / NATS_NKEY. */
        nkey: z.string().min(1).optional(),
        /**
         * directory of the instance managers' nkey seeds, `<instance id>.nk` (written by `dynamollm up`): a node
         * agent starts each instance with its own (NATS_NKEY), never with the node's credentials.
         */
        instanceKeysDir: z.string().min(1).optional(),
        /** the server does not enforce authorization and the cluster runs anyway (`up --insecure-nats`): status and the dashboard warn. */
        insecure: z.boolean().default(false),
        /**
         * the JetStream store is the cluster's own, created with it and removed with it (`up`'s private nats-server):
         * a stored pool assignment or energy ledger is this run's even while no instance is alive (a node agent died
         * with them), never a previous run's. Default false: a shared server may keep a previous run's state.
         */
        ownStore: z.boolean().default(false),
        /** TLS files: CA to trust, client certificate and key (mutual TLS). */
        tls: z.object({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).strict().optional(),
        /**
         * per-role credentials (nats.conf users cluster/pool/instance/node): an actor connects as its own
         * role when given, else with user/pass. Default: none.
         */
        roles: z
          .object({ cluster: natsCreds.optional(), pool: natsCreds.optional(), instance: natsCreds.optional(), node: natsCreds.optional(), gateway: natsCreds.optional(), observer: natsCreds.optional() })
          .strict()
          .optional(),
      }).strict()
      .default({}),
    /**
     * cluster id: names the cluster's NATS account (its subjects, KV buckets and streams) in the server
     * configs `up` and `npm run gen:nats-config` write; default dynamollm.
     */
    clusterId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'clusterId: 1-64 of [A-Za-z0-9_-]').default('dynamollm'),
    /** model id known to src/model (catalog); default llama2-70b. */
    model: z.string().default('llama2-70b'),
    /** GPU id known to src/model; default h100. */
    gpu: z.string().default('h100'),
    /** profile file (Profile v1 JSON); default profiles/<model>-<gpu>.json. */
    profile: z.string().optional(),
    servers: z.array(serverSchema).min(1).default([
      { id: 'node-0', gpus: 8 },
      { id: 'node-1', gpus: 8 },
      { id: 'node-2', gpus: 8 },
      { id: 'node-3', gpus: 8 },
    ]),
    /** pools: one per request type by default (the paper's nine). */
    pools: z
      .array(z.object({ id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), types: z.array(z.enum(REQUEST_TYPES)).min(1) }).strict())
      .optional(),
    epochs: z
      .object({
        /** cluster scale-out/in epoch, s; default 1800 (paper: 30 min). */
        clusterS: pos.default(1800),
        /** pool re-shard epoch, s; default 300 (paper: 5 min). */
        poolS: pos.default(300),
        /** instance frequency epoch, s; default 5 (paper: 5 s). */
        instanceS: pos.default(5),
      }).strict()
      .default({}),
    liveness: z
      .object({
        /** status/heartbeat period of instances, pools and nodes, ms; default 1000. */
        statusIntervalMs: pos.default(1000),
        /**
         * an actor silent this long is dead, ms; default 3000 (3 missed statuses of 1 s); at least 850 ms: the NATS
         * pings follow it (src/policy/bus-keepalive.ts). Shorter values give false deaths when a loaded machine delays
         * timers; a test that needs a faster verdict shortens statusIntervalMs and keeps several missed statuses in it.
         */
        deadAfterMs: pos.default(3000),
        /**
         * status period of each instance, ms; default 250, or statusIntervalMs where that is shorter (policy
         * instanceStatusMs). Its own, shorter than the other actors': a dispatcher tells a silent instance (a host
         * cut off sends no reset) from its statuses only, and suspects it after a few missed ones (suspectAfterMs).
         */
        instanceStatusIntervalMs: pos.optional(),
        /**
         * an instance silent this long takes no new request while another of its pool is heard; it keeps the
         * requests it holds (none is moved or ended before deadAfterMs) and takes requests again at its next
         * status, ms; default 3 x instanceStatusIntervalMs (750 ms); below deadAfterMs, set or derived. Every
         * instance of a pool silent this long (a stalled dispatcher): the least silent ones still take requests
         * (policy suspect.ts).
         */
        suspectAfterMs: pos.optional(),
        /**
         * leader lease TTL, ms; default 3000 (a standby takes over within about this). The cluster and pool managers
         * renew it every min(leaseTtlMs, deadAfterMs) / 3: its round trips also prove their own link to the bus, which
         * their death verdicts need (docs/DATAPATH.md "Liveness").
         */
        leaseTtlMs: pos.default(3000),
        /**
         * the supervisors' liveness watchdog (`up`'s children, its private NATS, a node agent's instance managers;
         * src/policy/watchdog.ts): a probe every intervalMs (default 1000); a process that missed `misses` probes in a
         * row (default 8: at least 8 s silent; stopped, or its event loop stuck) is SIGKILLed and restarted; one that
         * starts has startGraceMs (default 30000) before its silence counts.
         */
        watchdog: z
          .object({ intervalMs: pos.int().default(1000), misses: pos.int().default(8), startGraceMs: pos.int().default(30_000) })
          .strict()
          .default({}),
      }).strict()
      .default({}),
    engine: z
      .object({
        kind: z.enum(['emulator', 'vllm']).default('emulator'),
        /** emulator: wall-time speed-up factor; default 1. */
        timeScale: pos.default(1),
        /** emulator: modelled weight-loading delay, ms; default 0. */
        startupDelayMs: nonneg.default(0),
        /** vllm: the command (default `vllm`), run as `<command> serve <engine.model> --tensor-parallel-size N --port P ...`. */
        command: z.string().optional(),
        /** vllm: extra arguments appended to that command line. */
        args: z.array(z.string()).optional(),
        /** vllm: what `vllm serve` loads (a Hugging Face repo or a local path); default the model's HF name in the catalog. */
        model: z.string().min(1).optional(),
        /** ms an engine gets to become healthy; default 600 000 (a 70B vLLM takes minutes). */
        healthDeadlineMs: pos.default(600_000),
        /** requests the instance keeps inside the engine at once (vLLM max_num_seqs); default 64. */
        maxInEngine: z.number().int().positive().default(64),
        /** TP degree of the instances a pool starts before its first re-shard (capped by its GPUs); default 8. */
        initialTp: z.union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)]).default(8),
        /** bound of the instance manager's own admission queue (not-yet-started requests); default 256. */
        maxQueued: z.number().int().positive().default(256),
        /**
         * admission credits (docs/DATAPATH.md): immediate starts an instance lends one gateway at once, count: at most
         * this or the credits the gateway spends in a few loan round trips (its pace), whichever is larger, and half the
         * free engine slots (only while its queue is empty); default 16; 0 lends none (every routed request asks for admission).
         */
        gatewayCredits: z.number().int().nonnegative().default(16),
        /** how long a gateway may spend a loan of credits after receiving it, ms; default 2000. */
        gatewayCreditTtlMs: pos.default(2000),
        /**
         * token coalescing window of the instance manager, ms (wall); default 0 = one TokenChunk per token.
         * > 0: tokens after the first that arrive from the engine within this window travel as one
         * TokenChunk carrying each token's engine-side arrival offset (tokenOffsetsMs). The first token is
         * never held (TTFT is not delayed); later tokens reach the client up to this much later.
         */
        streamCoalesceMs: nonneg.default(0),
        /**
         * vLLM's --stream-interval, passed to the engine: after the first token (sent at once), the engine
         * streams events of this many tokens; default 1. Fewer events per token on the engine -> manager leg;
         * the emulator's multi-token events carry each token's engine time (TBT accounting stays per token).
         */
        streamInterval: z.number().int().min(1).max(64).default(1),
        /**
         * vLLM's --long-prefill-token-threshold, passed to the engine (0 = off, vLLM's default): a prompt with more
         * tokens left gets at most this many per step, so short prompts behind a long one are prefilled in the
         * next step instead of after all its chunks. The step budget itself comes from the profile (scheduler).
         */
        longPrefillTokenThreshold: z.number().int().min(0).default(0),
        /**
         * automatic prefix caching in the engine: true passes vLLM's --enable-prefix-caching (the emulator then
         * models it), false --no-enable-prefix-caching; absent: the engine's default (vLLM v1 on, the emulator off).
         * The instance manager reports the engine's prefix-cache counters (InstanceStatus.prefixCacheTokens).
         */
        prefixCaching: z.boolean().optional(),
        /** vLLM's --max-logprobs, passed to the engine: most alternatives per token (logprobs / top_logprobs); absent: 20. */
        maxLogprobs: z.number().int().min(0).max(MAX_LOGPROBS_CEILING).optional(),
        /**
         * vllm: sleep mode, which scaling.sleepStandby puts engines in: passes --enable-sleep-mode and runs the engine
         * with VLLM_SERVER_DEV_MODE=1 (vLLM serves /sleep, /wake_up and /is_sleeping only then); default: on when
         * scaling.sleepStandby is, or when engine.args has --enable-sleep-mode. The emulator always serves sleep mode.
         */
        enableSleep: z.boolean().optional(),
      }).strict()
      .default({}),
    gpuBackend: z.enum(['emulated', 'nvml', 'smi']).default('emulated'),
    /**
     * When set, each instance manager serves GET /metrics (and /livez, /readyz) on 0.0.0.0:<this + the index of
     * its first GPU> (GPUs of a server are never shared, so the ports are distinct per server); default off.
     */
    instanceMetricsPortBase: z.number().int().min(1).max(65000).optional(),
    slo: z
      .object({
        /** TTFT p99 SLO by input class, ms; default Table IV (250/400/2000). */
        ttftMs: z.object({ S: pos, M: pos, L: pos }).strict().default({ S: 250, M: 400, L: 2000 }),
        /** TBT p99 SLO, ms; default 100 (Table IV). */
        tbtMs: pos.default(100),
      }).strict()
      .default({}),
    thresholds: z
      .object({
        /** exclusive upper bounds of input S/M and inclusive L, tokens; default 256/1024/8192 (Table IV). */
        input: z.object({ S: pos, M: pos, L: pos }).strict().default({ S: 256, M: 1024, L: 8192 }),
        /** exclusive upper bounds of output S/M, tokens; default 100/350 (Table IV). */
        output: z.object({ S: pos, M: pos }).strict().default({ S: 100, M: 350 }),
      }).strict()
      .default({}),
    policy: z
      .object({
        /** fraction of each instance's SLO capacity kept free for bursts (cluster plan, dispatch, clock, sharding); default 0.2 (src/policy DEFAULT_HEADROOM, as the simulator). */
        headroom: z.number().min(0).max(0.9).default(DEFAULT_HEADROOM),
        /**
         * cache-aware routing: the gateway's dispatch prefers the instance that holds the prompt's prefix (policy
         * preferPrefixHolder over its RoutedPrefixes); default on when engine.prefixCaching is true, else off.
         */
        prefixRouting: z.boolean().optional(),
      }).strict()
      .default({}),
    emergency: z
      .object({
        /** a queued request waiting longer than this is rejected with a retryable error, ms; default 5000. */
        rejectAfterMs: pos.default(5000),
        /** the Retry-After the rejection suggests, s; default 1. */
        retryAfterS: pos.default(1),
        /** queued requests above which the instance asks its pool to move requests to peers; default 16. */
        moveQueueAbove: z.number().int().nonnegative().default(16),
      }).strict()
      .default({}),
    scaling: z
      .object({
        /**
         * time a new instance takes from start to serving, s; default 300 (paper Table V: minutes for a 70B
         * model). Servers the forecast needs at the next epoch are started this long before it.
         */
        instanceStartupS: nonneg.default(300),
        /** least time between two cluster epochs run early on a forecast change, s; default 60. */
        minEpochGapS: pos.default(60),
        /**
         * window whose highest observed load floors the forecast, s; default 300 (a fall scales in only once
         * it has lasted this long).
         */
        recentWindowS: pos.default(300),
        /**
         * shorten the cluster epoch to this many seconds while the load forecast is confident (its last 10 minutes
         * within twice counting noise), back to epochs.clusterS when it misses (src/policy/epoch-length.ts); a short
         * epoch only scales in. Unset (the default): every epoch is epochs.clusterS.
         */
        epochFloorS: pos.optional(),
        /**
         * keep the instances a pool's forecast does not need before a wake asleep through vLLM's sleep mode (the pool
         * leader's 'sleep' / 'wake' commands, src/policy/machines/pool-standby.ts; the engines need sleep mode:
         * engine.enableSleep for vLLM, on by default with this, always on for the emulator). Default false: in the simulator it saved 0.2% on
         * the coding hour and cost 0.3% on the conversation hour (docs/SIMULATION.md).
         */
        sleepStandby: z.boolean().default(false),
        /**
         * when its pool drains an instance (a scale-in, a re-shard), the gateway continues the direct requests with
         * more than this many seconds of decode left on a peer (request migration) instead of the instance finishing
         * them (actors/instance-manager/drain-migrate.ts, src/policy/drain-migration.ts). Unset (the default): a
         * drained instance finishes every request.
         */
        drainMigrateS: nonneg.optional(),
      }).strict()
      .default({}),
    /**
     * Server power (the cluster machine's decisions, src/policy/machines/cluster-power.ts). Off unless `driver` is
     * set: no server is ever powered off or on. With it the cluster leader powers off servers granted to no pool and
     * holding no instance (idle `idleBeforeOffS`, beyond `reserveServers` idle ones) and powers them on `bootS` ahead
     * of the plans that need them; a server not up `bootDeadlineS` after its power-on is failed and planned around.
     */
    power: z
      .object({
        /**
         * the power driver: the command run (no shell) to power a server, argv with `{action}` (on|off), `{server}`
         * (the server's id) and `{address}` (its `address`, or '') replaced; the program an absolute path. Exit 0:
         * done; 75 (EX_TEMPFAIL): try again; any other: refused. Default none (power management off).
         */
        driver: z.array(z.string().min(1).max(4096)).min(1).max(64).optional(),
        /** deadline of one driver run, s (killed past it, a retryable failure); default 60. */
        timeoutS: pos.default(60),
        /** runs of a command that fails retryably (exit 75, deadline, could not start), in all; default 3. */
        attempts: z.number().int().min(1).max(10).default(3),
        /** time from a power-on to the server's node agent reporting, s; default 120 (paper Table V: a VM 1-2 min). */
        bootS: pos.default(120),
        /** a server not up this long after its power-on is marked failed, s; default 600. */
        bootDeadlineS: pos.default(600),
        /** idle powered servers kept on beyond the grants (for a rise the forecast missed, a failed server); default 1. */
        reserveServers: z.number().int().nonnegative().default(1),
        /** a drained server idle this long is powered off, s; default bootS (cycling costs about a boot's energy). */
        idleBeforeOffS: nonneg.optional(),
      }).strict()
      .default({}),
    /**
     * planner: 'heuristic' (floor(PL/ML) + forwarding; planSharding) or 'milp' (Eq. 1 with HiGHS in a
     * worker, deadline `milpDeadlineMs`, the heuristic on timeout/failure; for small clusters). Default heuristic.
     */
    planner: z.enum(['heuristic', 'milp']).default('heuristic'),
    /** deadline of one MILP solve, ms; default 2000 (past it the heuristic's plan is used). */
    milpDeadlineMs: pos.default(2000),
    /** the gateway's own section (validated by actors/gateway/config.ts); ignored here. */
    gateway: z.unknown().optional(),
    timeouts: z
      .object({
        /** deadline of a dispatch hop (cluster -> pool -> instance admission), ms; default 2000. */
        dispatchMs: pos.default(2000),
        /** deadline of a control command, ms; default 5000. */
        controlMs: pos.default(5000),
        /**
         * how long an instance holds a direct request's seat for a gateway that has not said it took the grant
         * (LegReport 'started'; the gateway vanished or gave up first), ms; default 10000.
         */
        directStartMs: pos.default(10_000),
        /**
         * a direct request whose gateway process is gone (its heartbeats lapsed: 3 s without one) keeps its seat this
         * much longer for a resume on another gateway (which ends the leg itself), then the instance ends it, ms;
         * default 10000.
         */
        resumeGraceMs: pos.default(10_000),
        /**
         * how long a new pool leader retries reading the pool's stored state (its assignment, the previous
         * leader's dispatched requests) while JetStream is unavailable, before it leads without it, ms; default 5000.
         * A cluster manager's reads of the inventory (the stored assignments, at its start and when it leads; the
         * energy ledger) are retried as long, each attempt within its own deadline.
         */
        takeoverReadMs: pos.default(5000),
        /**
         * how long a pool whose dispatch finds no leader to answer (an election under way) holds the requests sent
         * to it: the cluster intake tells their callers so (a hold notice) and retries, ms; default 60000.
         */
        leaderHoldMs: pos.default(60_000),
        /**
         * the idle deadline of an engine's stream (the gateway's direct read, the instance manager's own): no byte
         * from the engine for longer ends the leg as an engine failure (retryable: the request continues on a peer).
         * Before the first token max(firstTokenFloorMs, firstTokenMultiple x the request's TTFT SLO), after it
         * max(nextTokenFloorMs, nextTokenMultiple x its TBT SLO); defaults 20 x / 30 s and 100 x / 10 s (why:
         * src/policy/engine-liveness.ts DEFAULT_ENGINE_IDLE).
         */
        engineIdle: z
          .object({
            firstTokenMultiple: pos.default(DEFAULT_ENGINE_IDLE.firstTokenMultiple),
            firstTokenFloorMs: pos.default(DEFAULT_ENGINE_IDLE.firstTokenFloorMs),
            nextTokenMultiple: pos.default(DEFAULT_ENGINE_IDLE.nextTokenMultiple),
            nextTokenFloorMs: pos.default(DEFAULT_ENGINE_IDLE.nextTokenFloorMs),
          }).strict()
          .default({}),
        /**
         * the instance manager's /health probe of its running engine: every intervalMs (skipped when tokens came
         * within it), each within deadlineMs; `misses` failures in a row make the engine hung: the instance leaves
         * ready, SIGKILLs it and restarts it as after a crash. Defaults 2000 ms / 3000 ms / 3.
         */
        engineHealth: z
          .object({
            intervalMs: pos.default(DEFAULT_ENGINE_HEALTH.intervalMs),
            deadlineMs: pos.default(DEFAULT_ENGINE_HEALTH.deadlineMs),
            misses: z.number().int().min(1).default(DEFAULT_ENGINE_HEALTH.misses),
          }).strict()
          .default({}),
      }).strict()
      .default({}),
  })
  .strict();

export type ClusterConfig = z.infer<typeof configSchema>;
export type ClusterConfigInput = z.input<typeof configSchema>;

/** The default configuration (Llama2-70B, 4 emulated 8xH100 servers, paper epochs). */
export function defaultConfig(): ClusterConfig {
  return configSchema.parse({});
}

/** Validate a config object (from YAML/JSON or code). Throws ConfigError listing every bad field. */
export function parseConfig(raw: unknown, where = 'config'): ClusterConfig {
  const r = configSchema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(`${where} is invalid:\n${formatIssues(r.error.issues, configSchema)}`);
  const c = r.data;
  const bad = crossFieldErrors(c);
  if (bad.length) throw new ConfigError(`${where} is invalid:\n${bad.map((b) => `  ${b}`).join('\n')}`);
  return c;
}

/** Contradictions between fields, each naming its keys (parseConfig refuses a config with any). */
export function crossFieldErrors(c: ClusterConfig): string[] {
  const out: string[] = [];
  if (!Object.hasOwn(MODELS, c.model)) out.push(`model: unknown model '${c.model}'${didYouMean(c.model, Object.keys(MODELS))} (known: ${Object.keys(MODELS).join(', ')})`);
  if (!Object.hasOwn(GPUS, c.gpu)) out.push(`gpu: unknown gpu '${c.gpu}'${didYouMean(c.gpu, Object.keys(GPUS))} (known: ${Object.keys(GPUS).join(', ')})`);
  if (c.scaling.sleepStandby && c.engine.kind === 'vllm' && c.engine.enableSleep === false) out.push('scaling.sleepStandby: the standby puts engines to sleep, and engine.enableSleep is false (vLLM serves /sleep only in sleep mode)');
  const ids = new Set<string>();
  c.servers.forEach((s, i) => {
    if (ids.has(s.id)) out.push(`servers.${i}.id: duplicate server id '${s.id}'`);
    ids.add(s.id);
  });
  if (c.pools) {
    const seen = new Map<string, string>();
    const poolIds = new Set<string>();
    c.pools.forEach((p, i) => {
      if (poolIds.has(p.id)) out.push(`pools.${i}.id: duplicate pool id '${p.id}'`);
      poolIds.add(p.id);
      for (const t of p.types) {
        const other = seen.get(t);
        if (other !== undefined) out.push(`pools.${i}.types: request type ${t} is served by two pools (${other} and ${p.id})`);
        else seen.set(t, p.id);
      }
    });
    const missing = REQUEST_TYPES.filter((t) => !seen.has(t));
    if (missing.length) out.push(`pools: no pool serves ${missing.join(', ')}`);
  }
  const l = c.liveness;
  if (l.deadAfterMs < 2 * l.statusIntervalMs) {
    out.push(`liveness.deadAfterMs: ${l.deadAfterMs} ms must be at least 2 x liveness.statusIntervalMs (${l.statusIntervalMs} ms): one late status would declare an actor dead`);
  }
  for (const p of [deathWindowProblem(l.deadAfterMs)]) if (p) out.push(p); // a silent NATS node's stale detection and reconnect fit in the window
  const inst = instanceStatusMs(l);
  if (inst < 50) out.push(`liveness.instanceStatusIntervalMs: ${inst} ms is below 50 ms: every dispatcher decodes each instance's status`);
  if (l.deadAfterMs < 2 * inst) out.push(`liveness.deadAfterMs: ${l.deadAfterMs} ms must be at least 2 x the instances' status interval (${inst} ms): one late status would declare an instance dead`);
  if (l.suspectAfterMs !== undefined && l.suspectAfterMs < 2 * inst) {
    out.push(`liveness.suspectAfterMs: ${l.suspectAfterMs} ms must be at least 2 x the instances' status interval (${inst} ms): one late status would take an instance out of dispatch`);
  }
  const suspect = suspectAfterMsOf(l);
  if (suspect >= l.deadAfterMs) {
    const how = l.suspectAfterMs !== undefined ? 'set' : `by default ${SUSPECT_INTERVALS} x the instances' status interval of ${inst} ms: set liveness.instanceStatusIntervalMs or liveness.suspectAfterMs lower, or liveness.deadAfterMs higher`;
    out.push(`liveness.suspectAfterMs: ${suspect} ms (${how}) must be below liveness.deadAfterMs (${l.deadAfterMs} ms): a silent instance would be dead before it is suspected`);
  }
  if (l.leaseTtlMs < 500) out.push(`liveness.leaseTtlMs: ${l.leaseTtlMs} ms is below 500 ms: a leader cannot renew its lease (every min(ttl, deadAfterMs)/3, at least 100 ms) before it lapses`);
  const e = c.epochs;
  if (e.instanceS > e.poolS) out.push(`epochs.instanceS (${e.instanceS} s) must not exceed epochs.poolS (${e.poolS} s)`);
  const ti = c.thresholds.input;
  if (!(ti.S < ti.M && ti.M < ti.L)) out.push(`thresholds.input: S < M < L required, got ${ti.S}/${ti.M}/${ti.L}`);
  const to = c.thresholds.output;
  if (!(to.S < to.M)) out.push(`thresholds.output: S < M required, got ${to.S}/${to.M}`);
  const ts = c.slo.ttftMs;
  if (!(ts.S <= ts.M && ts.M <= ts.L)) out.push(`slo.ttftMs: S <= M <= L required (longer prompts get at least as long), got ${ts.S}/${ts.M}/${ts.L}`);
  const maxGpus = Math.max(...c.servers.map((s) => s.gpus));
  if (c.engine.initialTp > maxGpus) out.push(`engine.initialTp: ${c.engine.initialTp} exceeds the largest server (${maxGpus} GPUs in servers)`);
  if (c.scaling.epochFloorS !== undefined && c.scaling.epochFloorS > e.clusterS) out.push(`scaling.epochFloorS (${c.scaling.epochFloorS} s) must not exceed epochs.clusterS (${e.clusterS} s)`);
  if (c.scaling.minEpochGapS > e.clusterS) out.push(`scaling.minEpochGapS (${c.scaling.minEpochGapS} s) must not exceed epochs.clusterS (${e.clusterS} s)`);
  if (c.planner === 'milp' && c.milpDeadlineMs >= e.poolS * 1000) out.push(`milpDeadlineMs (${c.milpDeadlineMs} ms) must be shorter than epochs.poolS (${e.poolS} s)`);
  const pw = c.power;
  if (pw.driver) {
    if (!pw.driver[0]!.startsWith('/')) out.push(`power.driver: the program must be an absolute path (no PATH lookup), got '${pw.driver[0]}'`);
    if (!pw.driver.some((a) => a.includes('{server}'))) out.push("power.driver: no argument names '{server}': every server would get the same command");
    if (!pw.driver.some((a) => a.includes('{action}'))) out.push("power.driver: no argument names '{action}': on and off would run the same command");
  }
  if (pw.bootDeadlineS < pw.bootS) out.push(`power.bootDeadlineS (${pw.bootDeadlineS} s) must be at least power.bootS (${pw.bootS} s)`);
  if (c.engine.kind === 'emulator' && c.gpuBackend !== 'emulated') out.push(`gpuBackend: '${c.gpuBackend}' controls real GPUs, but engine.kind is 'emulator' (use gpuBackend: emulated, or engine.kind: vllm)`);
  return out;
}

/**
 * A profile must cover the TP degrees the config will start instances with (engine.initialTp, and an
 * instance's own tp): without them the clock and dispatch decisions have no data. Throws ConfigError.
 */
export function checkProfileCovers(profile: { tpDegrees: number[]; model: string; gpu: string }, tps: number[], path: string, c?: ClusterConfig): void {
  const missing = [...new Set(tps)].filter((t) => !profile.tpDegrees.includes(t));
  if (missing.length) {
    throw new ConfigError(`profile ${path} covers TP ${profile.tpDegrees.join(', ')} but not TP ${missing.join(', ')} (engine.initialTp or the instance's tp): profile those degrees or change engine.initialTp`);
  }
  if (c && (profile.model !== c.model || profile.gpu !== c.gpu)) {
    throw new ConfigError(`profile ${path} is for ${profile.model} on ${profile.gpu}, the config says model ${c.model} on gpu ${c.gpu}`);
  }
}

/**
 * At an actor's start, before it connects: the profile the config names (when it exists; without one the
 * actors run on static splits and max clocks, and say so) must be for the config's model and GPU and cover
 * the TP degrees this actor starts instances with. Throws ConfigError naming the profile and the degrees, so
 * a standalone actor (systemd, Kubernetes) refuses to start as `up` does. Returns the profile (undefined when the
 * file does not exist), which the actor runs with: it is read and validated once per process.
 */
export function requireProfileCovers(c: ClusterConfig, tps: number[]): Profile | undefined {
  const path = profilePathOf(c);
  if (!existsSync(path)) return undefined;
  let profile: Profile;
  try {
    profile = loadProfile(path);
  } catch (err) {
    throw new ConfigError(`profile ${path}: ${(err as Error).message}`);
  }
  checkProfileCovers(profile, tps, path, c);
  return profile;
}

/** zod issues as lines naming the key; an unknown key gets the closest known key of its object. */
export function formatIssues(issues: z.ZodIssue[], root: z.ZodTypeAny, prefix: string[] = []): string {
  const lines: string[] = [];
  for (const i of issues) {
    const at = [...prefix, ...i.path].join('.');
    if (i.code === 'unrecognized_keys') {
      const known = Object.keys(shapeAt(root, i.path) ?? {});
      for (const k of i.keys) lines.push(`  ${at ? `${at}.` : ''}${k}: unknown key${didYouMean(k, known)}${known.length ? ` (known: ${known.join(', ')})` : ''}`);
    } else lines.push(`  ${at || '(root)'}: ${i.message}`);
  }
  return lines.join('\n');
}

/** The object shape a path leads to in a schema (through defaults, optionals, arrays, effects). */
function shapeAt(schema: z.ZodTypeAny, path: (string | number)[]): Record<string, z.ZodTypeAny> | undefined {
  let s: z.ZodTypeAny | undefined = schema;
  const unwrap = (t: z.ZodTypeAny): z.ZodTypeAny => {
    for (;;) {
      if (t instanceof z.ZodDefault || t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t._def.innerType as z.ZodTypeAny;
      else if (t instanceof z.ZodEffects) t = t._def.schema as z.ZodTypeAny;
      else return t;
    }
  };
  for (const p of path) {
    if (!s) return undefined;
    s = unwrap(s);
    if (s instanceof z.ZodArray) s = s.element as z.ZodTypeAny;
    else if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodTypeAny>)[String(p)];
    else return undefined;
  }
  if (!s) return undefined;
  s = unwrap(s);
  return s instanceof z.ZodObject ? (s.shape as Record<string, z.ZodTypeAny>) : undefined;
}

/** ' (did you mean X?)' for the closest candidate within a small edit distance, else ''. */
export function didYouMean(word: string, candidates: string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean '${best}'?)` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Load a YAML or JSON file (YAML is a superset of JSON); no path = defaultConfig(). */
export function loadConfig(path?: string): ClusterConfig {
  if (!path) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config ${path} is not valid YAML/JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, `config ${path}`);
}

/** The pools of a config: configured, else one per request type named pool-<TYPE>. */
export function poolsOf(c: ClusterConfig): { id: string; types: (typeof REQUEST_TYPES)[number][] }[] {
  return c.pools ?? REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] }));
}

/** Profile path of a config. */
export function profilePathOf(c: ClusterConfig): string {
  return c.profile ?? `profiles/${c.model}-${c.gpu}.json`;
}
