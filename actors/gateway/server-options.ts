/**
 * What the gateway's HTTP server (server.ts) is built with: the backend it needs from the cluster (GatewayBackend:
 * NATS in production, a fake or the emulator in tests) and its options (GatewayServerOptions).
 */
import type { NativeDataPlane } from './data-plane.ts';
import type { Logger } from 'pino';
import type { Clock } from '../../src/runtime/clock.ts';
import type { DetokenizeReply, DetokenizeRequest, InferenceRequest, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import type { LiveState } from '../../src/telemetry/live.ts';
import type { HealthReport } from '../../src/runtime/health.ts';
import type { ValidationLimits } from './openai.ts';
import type { TokenSource } from './choices.ts';
import type { JournalSlo, ResumeFrom, StreamHooks, StreamJournal } from './resume.ts';
import type { CorsSettings } from './cors.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';
import type { CookieSecure } from './forwarded.ts';

/** What the gateway needs from the cluster. */
export interface GatewayBackend {
  /**
   * Admits the request. Resolves once the cluster accepted it, with the request's token stream (ends after
   * a chunk with `done` or `error`); rejects with a DynError when refused. Aborting `signal` cancels it
   * downstream and ends the stream.
   */
  submit(req: InferenceRequest, signal: AbortLike, hooks?: StreamHooks): Promise<TokenSource>;
  /** Continues a resumable stream from `from` as a new leg (the stream's usage sums every leg); absent: resumes are refused. */
  resume?(req: InferenceRequest, from: ResumeFrom, signal: AbortLike, hooks?: StreamHooks): Promise<TokenSource>;
  /** false while the backend cannot reach the cluster (healthz answers 503). Default true. */
  ready?(): boolean;
  /**
   * Counts (and with returnTokens, gives) a prompt's tokens with the engine's tokenizer (vLLM's /tokenize,
   * chat template applied). Without it the gateway uses the emulator's Llama tokenizer (tests, a lone gateway).
   */
  tokenize?(req: TokenizeRequest): Promise<TokenizeReply>;
  /** Token ids back to text with the engine's tokenizer (vLLM's /detokenize). */
  detokenize?(req: DetokenizeRequest): Promise<DetokenizeReply>;
}

export interface GatewayServerOptions {
  backend: GatewayBackend;
  /** TCP port; 0 picks a free one. Default 8000. */
  port?: number;
  /** bind address. Default '127.0.0.1' (loopback: expose it on purpose). */
  host?: string;
  /**
   * accepted API keys (Authorization: Bearer <key>); empty = no auth. Default []. With keys, every endpoint
   * but the health probes (/healthz, /health, /livez, /readyz) needs one: the API in the Authorization header, the dashboard (/, /api/live, /ws) also
   * through the cookie a login (POST /login, dashboard-login.ts) sets, /metrics also with `metricsToken`.
   */
  apiKeys?: string[];
  /** the dashboard cookie's Secure flag: true, false, or auto (default): when the browser came over https (forwarded.ts). */
  cookieSecure?: CookieSecure;
  /** addresses or CIDRs of the proxies whose X-Forwarded-Proto is believed (forwarded.ts); default none. */
  trustedProxies?: string[];
  /** CORS (cors.ts), as vLLM's --allowed-origins, --allowed-methods, --allowed-headers, --allow-credentials. Default vLLM's: any origin, method and header, no credentials. */
  cors?: CorsSettings;
  /** read-only token accepted on /metrics only (Authorization: Bearer <token>), for a Prometheus scraper. */
  metricsToken?: string;
  /**
   * the readiness probe's token: a request whose header x-dynamollm-probe carries it is a probe (served, not counted
   * as traffic; openai.ts probeOf). `up` makes one per run (env DYNAMOLLM_PROBE_TOKEN of its gateways). Default none:
   * the header is refused (403) from everyone.
   */
  probeToken?: string;
  /** largest request body, bytes (413 above, not retryable). Default 512 KiB (below NATS max_payload). */
  bodyLimitBytes?: number;
  /** a client must send its request headers within this, ms (slow-loris). Default 5000. */
  headersTimeoutMs?: number;
  /** a client must send its whole request (headers and body) within this, ms. Default 15000. */
  bodyTimeoutMs?: number;
  /** a streaming client that reads nothing of what it holds unsent for this long is disconnected (its request cancelled), ms. Default 30000 (client-flow.ts; on the native data plane, data-plane.ts NativeOffer). */
  clientStallMs?: number;
  /** requests in flight at this replica before 429. Default 1024. */
  maxInflight?: number;
  /** a request (admission to last token) gets this long before its deadline, ms. Default 600000. */
  requestTimeoutMs?: number;
  /** the longest a request waits for its answer to begin, from its arrival, ms: then a retryable 503. Default 60000 (gateway.holdLimitMs). */
  holdLimitMs?: number;
  /** model ids served; a request for another model gets 404. Default ['llama2-70b']. */
  models?: string[];
  limits?: Partial<ValidationLimits>;
  /** context length for the built-in tokenizer (a backend without tokenize()); default 4096. */
  maxModelLen?: number;
  /** the logprobs bound the built-in tokenizer reports (vLLM's `--max-logprobs`); default vLLM's, 20. */
  maxLogprobs?: number;
  metrics?: TelemetryMetrics;
  /** the /metrics text where not `metrics`' own (a worker: its replica's workers aggregated). */ metricsText?: () => Promise<string>;
  live?: LiveState;
  /** WebSocket snapshot period, ms. Default 1000. */
  liveTickMs?: number;
  log?: Logger;
  /** id of this replica (logs, headers). */
  replicaId?: string;
  /** liveness/readiness of the process for GET /livez and /readyz (src/runtime/health.ts); absent: both 404. */
  health?: () => HealthReport;
  /** shown on the dashboard (in /api/live and the /ws snapshots), e.g. NATS without authorization. */
  warnings?: string[];
  /** time and timers (src/runtime/clock.ts): request arrival and give-up times, the /ws ticks, the drain's wait. Default the system clock. */ clock?: Clock;
  /** the resume journal (docs/PROTOCOL.md "Resumable streams"); absent: no stream is resumable, a Last-Event-ID gets 404. */
  journal?: StreamJournal;
  /** the native data plane (gateway.dataPlane), when loaded (data-plane.ts). */
  dataPlane?: NativeDataPlane;
  /** a request's SLO before its classification (its prompt's TTFT SLO, the TBT SLO): bounds its journal's waits. */
  sloOf?: (r: InferenceRequest) => JournalSlo;
}
