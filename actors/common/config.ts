/**
 * The cluster configuration shared by `dynamollm up` and every actor (one YAML or JSON file). Validated
 * with zod; a bad file fails with the path of each bad field. Every knob states its unit and default.
 * Default (`defaultConfig()`): Llama2-70B on 4 emulated 8xH100 servers, the paper's epochs and SLOs.
 */
import { DEFAULT_HEADROOM } from '../../src/policy/types.ts';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';

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
});

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
        /** TLS files: CA to trust, client certificate and key (mutual TLS). */
        tls: z.object({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).strict().optional(),
        /**
         * per-role credentials (nats.conf users cluster/pool/instance/node): an actor connects as its own
         * role when given, else with user/pass. Default: none.
         */
        roles: z
          .object({ cluster: natsCreds.optional(), pool: natsCreds.optional(), instance: natsCreds.optional(), node: natsCreds.optional() })
          .strict()
          .optional(),
      })
      .default({}),
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
      .array(z.object({ id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), types: z.array(z.enum(REQUEST_TYPES)).min(1) }))
      .optional(),
    epochs: z
      .object({
        /** cluster scale-out/in epoch, s; default 1800 (paper: 30 min). */
        clusterS: pos.default(1800),
        /** pool re-shard epoch, s; default 300 (paper: 5 min). */
        poolS: pos.default(300),
        /** instance frequency epoch, s; default 5 (paper: 5 s). */
        instanceS: pos.default(5),
      })
      .default({}),
    liveness: z
      .object({
        /** status/heartbeat period of instances, pools and nodes, ms; default 1000. */
        statusIntervalMs: pos.default(1000),
        /**
         * an actor silent this long is dead, ms; default 3000 (3 missed statuses of 1 s). Shorter values give
         * false deaths when a loaded machine delays timers; a test that needs a faster verdict shortens
         * statusIntervalMs and keeps several missed statuses in this window.
         */
        deadAfterMs: pos.default(3000),
        /** leader lease TTL, ms; default 3000 (a standby takes over within about this). */
        leaseTtlMs: pos.default(3000),
      })
      .default({}),
    engine: z
      .object({
        kind: z.enum(['emulator', 'vllm']).default('emulator'),
        /** emulator: wall-time speed-up factor; default 1. */
        timeScale: pos.default(1),
        /** emulator: modelled weight-loading delay, ms; default 0. */
        startupDelayMs: nonneg.default(0),
        /** vllm: command and extra arguments. */
        command: z.string().optional(),
        args: z.array(z.string()).optional(),
        /** ms an engine gets to become healthy; default 600 000 (a 70B vLLM takes minutes). */
        healthDeadlineMs: pos.default(600_000),
        /** requests the instance keeps inside the engine at once (vLLM max_num_seqs); default 64. */
        maxInEngine: z.number().int().positive().default(64),
        /** TP degree of the instances a pool starts before its first re-shard (capped by its GPUs); default 8. */
        initialTp: z.union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)]).default(8),
        /** bound of the instance manager's own admission queue (not-yet-started requests); default 256. */
        maxQueued: z.number().int().positive().default(256),
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
      })
      .default({}),
    gpuBackend: z.enum(['emulated', 'nvml', 'smi']).default('emulated'),
    slo: z
      .object({
        /** TTFT p99 SLO by input class, ms; default Table IV (250/400/2000). */
        ttftMs: z.object({ S: pos, M: pos, L: pos }).default({ S: 250, M: 400, L: 2000 }),
        /** TBT p99 SLO, ms; default 100 (Table IV). */
        tbtMs: pos.default(100),
      })
      .default({}),
    thresholds: z
      .object({
        /** exclusive upper bounds of input S/M and inclusive L, tokens; default 256/1024/8192 (Table IV). */
        input: z.object({ S: pos, M: pos, L: pos }).default({ S: 256, M: 1024, L: 8192 }),
        /** exclusive upper bounds of output S/M, tokens; default 100/350 (Table IV). */
        output: z.object({ S: pos, M: pos }).default({ S: 100, M: 350 }),
      })
      .default({}),
    policy: z
      .object({
        /** fraction of each instance's SLO capacity kept free for bursts (dispatch, clock, sharding); default 0.2 (src/policy DEFAULT_HEADROOM, as the simulator). */
        headroom: z.number().min(0).max(0.9).default(DEFAULT_HEADROOM),
      })
      .default({}),
    emergency: z
      .object({
        /** a queued request waiting longer than this is rejected with a retryable error, ms; default 5000. */
        rejectAfterMs: pos.default(5000),
        /** the Retry-After the rejection suggests, s; default 1. */
        retryAfterS: pos.default(1),
        /** queued requests above which the instance asks its pool to move requests to peers; default 16. */
        moveQueueAbove: z.number().int().nonnegative().default(16),
      })
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
      })
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
      })
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
  if (!r.success) {
    const issues = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new ConfigError(`${where} is invalid:\n${issues}`);
  }
  const c = r.data;
  const ids = new Set<string>();
  for (const s of c.servers) {
    if (ids.has(s.id)) throw new ConfigError(`${where}: duplicate server id '${s.id}'`);
    ids.add(s.id);
  }
  if (c.pools) {
    const seen = new Set<string>();
    for (const p of c.pools) {
      for (const t of p.types) {
        if (seen.has(t)) throw new ConfigError(`${where}: request type ${t} is served by two pools`);
        seen.add(t);
      }
    }
    const missing = REQUEST_TYPES.filter((t) => !seen.has(t));
    if (missing.length) throw new ConfigError(`${where}: no pool serves ${missing.join(', ')}`);
  }
  return c;
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
