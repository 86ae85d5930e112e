/**
 * Gateway settings: the `gateway:` section of the cluster config file (deploy/local.yaml documents it),
 * overridable per process with `--set key=value` (`--set journal.<name>=value` for a journal setting) and env
 * DYNAMOLLM_API_KEYS (comma-separated keys, so secrets need not sit in the file). The section is split off before
 * the rest goes to the shared cluster config parser (actors/common/config.ts), which stays strict about its own
 * fields.
 */
import { z } from 'zod';
import { ConfigError, formatIssues, parseConfig, type ClusterConfig } from '../common/config.ts';
import { DEFAULT_JOURNAL_TIMING } from './journal-writer.ts';
import { isAddressOrCidr } from './forwarded.ts';

/** an HTTP token (RFC 9110): a method or a field name; '*' is one too. */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const gatewaySchema = z
  .object({
    /** HTTP port; default 8000 (0 picks a free port). */
    port: z.number().int().min(0).max(65535).default(8000),
    /** bind address; default 127.0.0.1 (loopback: expose the gateway on purpose, e.g. 0.0.0.0 behind API keys). */
    host: z.string().default('127.0.0.1'),
    /** accepted API keys (Authorization: Bearer <key>); default [] = no auth. */
    apiKeys: z.array(z.string().min(8, 'API keys must be at least 8 characters')).default([]),
    /**
     * largest request body, bytes (413, not retryable, above it); default 524288 (512 KiB). At most 960 KiB:
     * the request must still fit NATS max_payload (1 MiB) once encoded.
     */
    bodyLimitBytes: z.number().int().positive().max(960 * 1024, 'bodyLimitBytes must stay below NATS max_payload (1 MiB): at most 983040').default(512 * 1024),
    /**
     * serve a non-loopback `host` without API keys: anyone who reaches the port may use the cluster. Without it
     * such a gateway refuses to start (checkExposure); default false.
     */
    allowUnauthenticated: z.boolean().default(false),
    /**
     * read-only bearer token accepted on /metrics only (for a Prometheus scraper), when apiKeys are set; env
     * DYNAMOLLM_METRICS_TOKEN when unset here; default none.
     */
    metricsToken: z.string().min(16, 'metricsToken must be at least 16 characters').optional(),
    /** a client must send its request headers within this, ms (cuts slow-loris clients); default 5000. */
    headersTimeoutMs: z.number().int().positive().default(5000),
    /** a client must send its whole request (headers and body) within this, ms; default 15000. */
    bodyTimeoutMs: z.number().int().positive().default(15_000),
    /**
     * a streaming client that reads nothing of the events it holds unsent (past 256 KiB, when the stream stops
     * reading its engine) for this long is disconnected and its request cancelled, freeing the engine, ms; default 30000.
     */
    clientStallMs: z.number().int().positive().default(30_000),
    /** requests in flight per gateway replica before 429; default 1024. */
    maxInflight: z.number().int().positive().default(1024),
    /** a request's overall deadline, s; default 600. */
    requestTimeoutS: z.number().positive().default(600),
    /** budget of cluster intake (admission, retries with the same request id included), ms; default 10000. */
    admitTimeoutMs: z.number().positive().default(10_000),
    /**
     * how long after a leader's last heartbeat (a pool's, the cluster planner's) its successor is waited for: while
     * such an election is under way, a request's intake is waited for past admitTimeoutMs (until admitTimeoutMs
     * after the election, never past the request's give-up time), ms; default 60000.
     */
    electionHoldMs: z.number().positive().default(60_000),
    /**
     * the longest a request's admission is waited for in all, pool holds and leader elections included: each hold or
     * election extends the wait past admitTimeoutMs, never past this after the intake began (then a retryable 503), ms;
     * default 60000.
     */
    holdLimitMs: z.number().positive().default(60_000),
    /** deadline of one intake attempt before it is sent again (a dead cluster manager held it), ms; default 3000. */
    admitAttemptMs: z.number().positive().default(3000),
    /** longest silence of a token stream before the request fails (retryable), ms; default 60000. */
    chunkTimeoutMs: z.number().positive().default(60_000),
    /**
     * direct: after the instance's grant the gateway streams from the engine itself (docs/DATAPATH.md; it must
     * reach the engines' host:port); nats: the instances relay the tokens over NATS. Default direct.
     */
    dataPath: z.enum(['direct', 'nats']).default('direct'),
    /**
     * Who moves a directly streamed request's plain text events (docs/DATAPATH.md "Native data plane"): js, the
     * gateway's JavaScript; native, one native thread (dist/native/relay.so, built by `npm run build` with a C
     * compiler; the gateway refuses to start without it); auto, native where the library loads, else js with one log
     * line. Eligible streams: one choice, streamed, not resumable, over plain
     * HTTP/1.1 chunked on both sides; the rest stay on js. Default auto.
     */
    dataPlane: z.enum(['auto', 'js', 'native']).default('auto'),
    /**
     * direct: the gateway follows the cluster's routing table and the instances' status, routes each request
     * itself with the cluster's and pools' own decisions and asks the chosen instance for admission (one round
     * trip; docs/DATAPATH.md); intake: every request goes through the cluster intake and its pool leader.
     * Default direct.
     */
    requestPlane: z.enum(['direct', 'intake']).default('direct'),
    /** legs a request may continue on after its engine or instance died mid-stream (0: none); default 3. */
    migrationLimit: z.number().int().min(0).max(16).default(3),
    /**
     * generated text kept per request for a migration, UTF-8 bytes; past it the request cannot migrate (it streams on),
     * and a resumable stream's journal stops (the stream is no longer resumable); default 1 MiB.
     */
    migrationMaxBytes: z.number().int().positive().default(1 << 20),
    /**
     * generated text kept for migration by all of a gateway process's streams together (each worker of `workers` its
     * own), UTF-8 bytes: a piece that would pass it makes its stream stop keeping text (that stream cannot migrate; it
     * streams on), and a stream's text leaves the total when the stream ends or stops keeping it; default 256 MiB.
     */
    migrationMaxTotalBytes: z.number().int().positive().default(256 << 20),
    /**
     * the resume journal's deadlines, ms (actors/gateway/journal-writer.ts): a resumable stream's head must be held by
     * JetStream within headMs before its first event (else the stream is served without resumption, header
     * `x-dynamollm-resumable: 0`); the client's events wait while an entry has waited lagMs for its ack (0: until each
     * is held), and an entry not held within giveUpMs opens an unresumable range (its later events go without ids, the
     * client's last event id reset, until the journal holds every event the client was sent); an append is sent again
     * after attemptMs unanswered. sloShare > 0 also bounds the head's wait by that share of the request's TTFT SLO and
     * an entry's by that share of its TBT SLO: latency kept through a journal leader's election, resumability given up
     * meanwhile. Each bound passed counts in dynamollm_gateway_journal_timeouts_total{wait}. Defaults 10000, 1000, 0,
     * 10000, 0 (no SLO bound).
     */
    journal: z.object({
      headMs: z.number().positive().default(DEFAULT_JOURNAL_TIMING.headMs),
      attemptMs: z.number().positive().default(DEFAULT_JOURNAL_TIMING.attemptMs),
      lagMs: z.number().min(0).default(DEFAULT_JOURNAL_TIMING.lagMs),
      giveUpMs: z.number().positive().default(DEFAULT_JOURNAL_TIMING.giveUpMs),
      sloShare: z.number().min(0).max(1).default(DEFAULT_JOURNAL_TIMING.sloShare),
    }).strict().default({}),
    /** gateway replicas `dynamollm up` starts (ports port, port+1, ...); default 1. */
    replicas: z.number().int().min(1).max(64).default(1),
    /**
     * worker processes of one gateway replica sharing its port (node:cluster hands them the connections round
     * robin): each a full replica with its own id `<id>-w<i>` (NATS inbox, routing view, admission credits),
     * restarted with backoff when it dies; the gateway is CPU-bound on one core per process (docs/DATAPATH.md
     * "Gateway workers"). Default 1 (no workers: the process is the replica).
     */
    workers: z.number().int().min(1).max(64).default(1),
    /**
     * a replica's standby process: while another process holds the port (the replica's serving process) this one
     * waits, started and connected but with no subscriptions, and takes the port over within ~250 ms once it is
     * free; without it a port in use fails the start. `dynamollm up` runs two such processes per replica (one
     * serving, one waiting: `--gateway-standbys`), so a replica whose process dies serves again without waiting
     * for a new process to load. Default false.
     */
    standby: z.boolean().default(false),
    /**
     * on SIGTERM, how long the gateway keeps serving (new connections and requests included) while /readyz and /healthz
     * answer 503, before it closes its listener, ms: the time a load balancer takes to notice the 503 or the endpoint's
     * removal (Kubernetes: the readiness probe's period times its failure threshold, plus the endpoint change reaching
     * every proxy), so that no client is sent to a port that stopped accepting. Default 0 (the listener closes at once).
     */
    drainDelayMs: z.number().int().min(0).max(600_000).default(0),
    /**
     * after the listener closed on SIGTERM, how long the requests and streams in flight are waited for, ms; past it the
     * rest end with a retryable error (a resumable stream continues on another replica, docs/DATAPATH.md). Default 10000.
     */
    drainStreamsMs: z.number().int().min(0).max(3_600_000).default(10_000),
    /**
     * CORS, as vLLM's --allowed-origins, --allowed-methods, --allowed-headers, --allow-credentials (actors/gateway/cors.ts),
     * with vLLM's defaults: any origin, method and header ('*'), no credentials. An origin is '*', 'null' or
     * scheme://host[:port] as a browser sends it (no path, no trailing slash). A preflight is answered without an API key.
     * /ws admits a browser page from the gateway's own host or an origin allowedOrigins names ('*' names none: ws-origin.ts).
     */
    allowedOrigins: z.array(z.string().regex(/^(\*|null|[a-z][a-z0-9+.-]*:\/\/[^\s/]+)$/i, "an origin is '*', 'null' or scheme://host[:port] (no path, no trailing slash)")).default(['*']),
    allowedMethods: z.array(z.string().regex(HTTP_TOKEN, 'a method is an HTTP token (e.g. GET, POST) or *')).default(['*']),
    allowedHeaders: z.array(z.string().regex(HTTP_TOKEN, 'a header is an HTTP field name (e.g. Authorization) or *')).default(['*']),
    allowCredentials: z.boolean().default(false),
    /** model ids served (/v1/models); default [the cluster's model]. */
    models: z.array(z.string().min(1)).optional(),
    /**
     * the dashboard cookie's Secure flag (the browser sends it over https only): true, false, or auto, when the
     * connection is TLS or a proxy of trustedProxies sends X-Forwarded-Proto: https (actors/gateway/forwarded.ts). Default auto.
     */
    cookieSecure: z.union([z.literal('auto'), z.boolean()]).default('auto'),
    /**
     * addresses or CIDRs of the TLS-terminating proxies in front of the gateway (an ingress controller's pods, a load
     * balancer) whose X-Forwarded-Proto is believed; the header from any other peer is ignored. Default [].
     */
    trustedProxies: z.array(z.string().refine(isAddressOrCidr, 'a trusted proxy is an IP address or CIDR (10.0.0.0/8, fd00::/8)')).default([]),
    /** serve the dashboard and /ws; default true. */
    dashboard: z.boolean().default(true),
  })
  .strict();

export type GatewaySettings = z.infer<typeof gatewaySchema>;

/** A value shipped in templates and examples: a gateway refuses it as a key or token (everyone knows it). */
const PLACEHOLDER = /change-?me|replace-?me|placeholder|<[^>]*>/i;

/** Whether `host` is a loopback address (only this machine reaches it). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * The gateway's exposure, secure by default (throws ConfigError, not retryable: the same settings fail again): a
 * non-loopback host needs API keys unless allowUnauthenticated says otherwise, and no key or metrics token may be a
 * template's placeholder.
 */
export function checkExposure(g: GatewaySettings): void {
  const placeholder = g.apiKeys.find((k) => PLACEHOLDER.test(k));
  if (placeholder !== undefined) {
    throw new ConfigError(`gateway API key '${placeholder}' is a placeholder from a template, known to everyone: set a secret key of your own (e.g. \`openssl rand -hex 24\`; Kubernetes: the Secret dynamollm-secrets, README "Deploying")`);
  }
  if (g.metricsToken !== undefined && PLACEHOLDER.test(g.metricsToken)) {
    throw new ConfigError(`gateway metricsToken '${g.metricsToken}' is a placeholder from a template: set a secret token of your own (e.g. \`openssl rand -hex 24\`)`);
  }
  if (g.apiKeys.length === 0 && !isLoopback(g.host) && !g.allowUnauthenticated) {
    throw new ConfigError(
      `gateway.host ${g.host} is not a loopback address and no API keys are set: anyone who reaches it could use the cluster. ` +
        'Set gateway.apiKeys or env DYNAMOLLM_API_KEYS (Kubernetes: the Secret dynamollm-secrets, README "Deploying"), ' +
        'bind host 127.0.0.1, or set gateway.allowUnauthenticated: true to serve it without keys on purpose',
    );
  }
}

/**
 * The warning a gateway logs once bound to `port` when it serves a non-loopback address without API keys because
 * gateway.allowUnauthenticated says so (anyone who reaches it can use the cluster); undefined otherwise.
 */
export function unauthenticatedWarning(g: Pick<GatewaySettings, 'apiKeys' | 'host' | 'allowUnauthenticated'>, port: number): string | undefined {
  if (g.apiKeys.length > 0 || isLoopback(g.host) || !g.allowUnauthenticated) return undefined;
  const host = g.host.includes(':') && !g.host.startsWith('[') ? `[${g.host}]` : g.host;
  return `gateway serves UNAUTHENTICATED on ${host}:${port} (gateway.allowUnauthenticated: true, no API keys): anyone who reaches it can use the cluster`;
}

/** What the gateway's drain does past its delay and its streams' wait (router, elections, subscriptions, the port's close), ms. */
export const DRAIN_MARGIN_MS = 5000;

/**
 * The gateway actor's drain grace (ActorOptions.drainGraceMs) from its settings: the delay, the wait for the streams in
 * flight and DRAIN_MARGIN_MS. Its whole shutdown bound is src/runtime/actor.ts shutdownLimitMs of it.
 */
export function gatewayDrainGraceMs(s: Pick<GatewaySettings, 'drainDelayMs' | 'drainStreamsMs'>): number {
  return s.drainDelayMs + s.drainStreamsMs + DRAIN_MARGIN_MS;
}

/** Splits a raw config object (parsed YAML/JSON) into the shared cluster config and the gateway section. */
export function splitConfig(raw: unknown, where = 'config'): { cluster: ClusterConfig; gateway: GatewaySettings; clusterRaw: Record<string, unknown> } {
  const obj = raw === undefined || raw === null ? {} : raw;
  if (typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`${where} must be a mapping`);
  const { gateway, ...rest } = obj as Record<string, unknown>;
  const g = gatewaySchema.safeParse(gateway ?? {});
  if (!g.success) {
    throw new ConfigError(`${where} is invalid:\n${formatIssues(g.error.issues, gatewaySchema, ['gateway'])}`);
  }
  return { cluster: parseConfig(rest, where), gateway: g.data, clusterRaw: rest };
}

/** The journal's settings, by name (`--set journal.<name>=ms`). */
const journalKeys = Object.keys(gatewaySchema.shape.journal.removeDefault().shape);

/**
 * Applies `--set key=value` overrides (port, host, apiKeys=a,b, bodyLimitBytes, journal.sloShare=0.5, ...), env
 * DYNAMOLLM_API_KEYS and DYNAMOLLM_METRICS_TOKEN (when metricsToken is unset), and checks the result's exposure
 * (checkExposure).
 */
export function applyOverrides(g: GatewaySettings, extra: Record<string, string>, env: NodeJS.ProcessEnv = process.env): GatewaySettings {
  const out: Record<string, unknown> = { ...g };
  for (const [k, v] of Object.entries(extra)) {
    if (k.startsWith('journal.')) {
      const name = k.slice('journal.'.length);
      if (!journalKeys.includes(name)) throw new ConfigError(`--set ${k}: not a journal setting (${journalKeys.map((j) => `journal.${j}`).join(', ')})`);
      out.journal = { ...(out.journal as Record<string, unknown>), [name]: Number(v) };
      continue;
    }
    if (!(k in gatewaySchema.shape)) throw new ConfigError(`--set ${k}: not a gateway setting (${Object.keys(gatewaySchema.shape).join(', ')})`);
    if (k === 'apiKeys' || k === 'models' || k === 'allowedOrigins' || k === 'allowedMethods' || k === 'allowedHeaders' || k === 'trustedProxies') out[k] = v.split(',').map((s) => s.trim()).filter(Boolean);
    else if (k === 'host' || k === 'metricsToken' || k === 'dataPath' || k === 'dataPlane' || k === 'requestPlane') out[k] = v;
    else if (k === 'cookieSecure') out[k] = v === 'auto' ? v : v === 'true' || v === '1';
    else if (k === 'dashboard' || k === 'standby' || k === 'allowUnauthenticated' || k === 'allowCredentials') out[k] = v === 'true' || v === '1';
    else out[k] = Number(v);
  }
  if (env.DYNAMOLLM_API_KEYS) out.apiKeys = [...(out.apiKeys as string[]), ...env.DYNAMOLLM_API_KEYS.split(',').map((s) => s.trim()).filter(Boolean)];
  if (out.metricsToken === undefined && env.DYNAMOLLM_METRICS_TOKEN) out.metricsToken = env.DYNAMOLLM_METRICS_TOKEN;
  const r = gatewaySchema.safeParse(out);
  if (!r.success) throw new ConfigError(`gateway settings are invalid:\n${r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  checkExposure(r.data);
  return r.data;
}
