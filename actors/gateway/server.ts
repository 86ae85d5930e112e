/**
 * The gateway's HTTP layer: OpenAI-compatible endpoints in front of an injectable backend (NATS to the
 * cluster in production, a fake or the emulator in tests), plus /healthz, /health and /version (vLLM's), /metrics, the dashboard at `/`
 * and its WebSocket telemetry stream at `/ws`.
 *
 * Flow of one request: auth (Bearer, when keys are configured) -> body read with a size limit -> OpenAI
 * validation -> in-flight bound -> backend.submit (admission; a refusal becomes 429/503 with Retry-After)
 * -> tokens streamed as SSE, or collected into one JSON response. A client that disconnects aborts the
 * request's AbortSignal, which the backend turns into a Cancel downstream. Its parts: server-options.ts (GatewayBackend,
 * GatewayServerOptions), auth.ts (API keys, the dashboard cookie, the metrics token), tokenize-routes.ts (/tokenize,
 * /detokenize, the prompt count), collect.ts (the non-streamed answer), sse-stream.ts and sse-writer.ts (the SSE stream),
 * resume.ts (resumable streams), openai.ts (validation), drain.ts (the requests in flight, cut at a drain's end),
 * static-files.ts (the dashboard's files).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { newRequestId, requestIdHeader } from './request-id.ts';
import { MARK, firstTokenTrace } from '../../src/runtime/first-token-trace.ts';
import type { AddressInfo } from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import { systemClock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';
import { PROTOCOL_VERSION } from '../../protocols/codec.ts';
import type { Usage, InferenceRequest, TokenChunk, TokenizeRequest } from '../../protocols/messages.ts';
import { subjects } from '../../protocols/subjects.ts';
import {
  ERROR_CODE_HEADER, HttpError, badRequest, probeOf, PROBE_HEADER, parseOpenAiRequest, toHttp, DEFAULT_LIMITS, type ApiKind, type ChoiceOut, type ParsedRequest, type ValidationLimits,
} from './openai.ts';
import { childRequest, inBatches, submitAll, type TokenSource } from './choices.ts';
import { StreamTimer } from './stream-timer.ts';
import { HoldLimit, holdPassed } from './hold-limit.ts';
import { parseJsonBody, readBody, requireJsonContentType } from './body.ts';
import { framingOf, headFraming, journalHeadOf, relaySse, replayPrelude, resumePlan, type Framing, type Resumable } from './sse-stream.ts';
import { LAST_EVENT_ID_HEADER, RESUMABLE_HEADER, parseLastEventId, resumableOf, type StreamHooks } from './resume.ts';
export type { ResumeFrom, StreamHooks, StreamJournal } from './resume.ts';
import type { GatewayServerOptions } from './server-options.ts';
export type { GatewayBackend, GatewayServerOptions } from './server-options.ts';
import { PromptCounter, localTokenizer } from './tokens.ts';
import { STATIC, staticFile } from './static-files.ts';
import { probeResponse } from '../../src/runtime/health.ts';
import { RateLimitedLog } from '../../src/runtime/logger.ts';
import { ApiKeys, probeTokenMatcher } from './auth.ts';
import { LOGIN_PATH, dashboardLogin, keyInUrlError, loginPage, trustedProxies, writeAnswer, type LoginAnswer, type LoginSettings } from './dashboard-login.ts';
export { apiKeyIdOf } from './auth.ts';
import { countTokens, detokenizeRoute, engineLimitsError, knownCount, readJson, tokenizeRoute, type Tokenizers } from './tokenize-routes.ts';
import { ModelList } from './models-route.ts';
import { routeLabel } from './route-label.ts';
import { DYNAMOLLM_VERSION } from '../../src/runtime/version.ts';
import { collectChoice, collectedBody } from './collect.ts';
import { Cors } from './cors.ts';
import { wsUpgradeRefusal } from './ws-origin.ts';
import { echoSource, echoedPrompt } from './echo.ts';
import { LeanAbort, type AbortLike } from '../../src/runtime/abort.ts';
import { InFlight } from './drain.ts';
import { IgnoredFields } from './ignored-fields.ts';

/** The request target as a URL; undefined when the URL parser refuses it (e.g. `//a|b`, read as a host). */
function requestUrl(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'http://x');
  } catch {
    return undefined;
  }
}

export class GatewayServer {
  readonly server: Server;
  private wss?: WebSocketServer; // the dashboard's, made at the first /ws upgrade (ws is not loaded before it: a gateway starts sooner)
  private readonly opts: Required<Pick<GatewayServerOptions, 'port' | 'host' | 'bodyLimitBytes' | 'maxInflight' | 'requestTimeoutMs' | 'holdLimitMs' | 'models' | 'liveTickMs' | 'clock'>> & GatewayServerOptions;
  private readonly limits: ValidationLimits;
  private readonly failLog: RateLimitedLog | undefined;
  private readonly auth: ApiKeys;
  private readonly isProbeToken: (given: string) => boolean;
  private inflight = 0;
  /** leaving the load balancer (leave()): not ready, every answer closes its connection; requests still served. */
  private leaving = false;
  /** closing (close()): the listener is closed and new requests get 503. */
  private draining = false;
  private liveTimer: unknown;
  private readonly aborts = new InFlight();
  private readonly counter: PromptCounter;
  private readonly tokenizers: Tokenizers;
  private readonly cors: Cors;
  private readonly login: LoginSettings;
  private readonly modelList: ModelList;
  private readonly ignored: IgnoredFields;

  constructor(opts: GatewayServerOptions) {
    this.opts = {
      port: 8000, host: '127.0.0.1', bodyLimitBytes: 512 * 1024, maxInflight: 1024, requestTimeoutMs: 600_000, holdLimitMs: 60_000,
      models: ['llama2-70b'], liveTickMs: 1000, clock: systemClock, ...opts,
    };
    this.limits = { ...DEFAULT_LIMITS, maxN: this.opts.maxInflight, ...opts.limits };
    this.ignored = new IgnoredFields(opts.metrics?.gatewayIgnoredFields, opts.log);
    this.failLog = opts.log ? new RateLimitedLog(opts.log) : undefined;
    const backend = this.opts.backend;
    const tokenize = backend.tokenize ? (r: TokenizeRequest) => backend.tokenize!(r) : localTokenizer(opts.maxModelLen ?? 4096, opts.maxLogprobs);
    this.counter = new PromptCounter(tokenize);
    this.tokenizers = { models: this.opts.models, tokenize, backend, counter: this.counter };
    this.modelList = new ModelList(this.counter, this.opts.models, this.opts.clock);
    this.auth = new ApiKeys(opts.apiKeys, opts.metricsToken);
    this.isProbeToken = probeTokenMatcher(opts.probeToken);
    this.cors = new Cors(opts.cors);
    this.login = { enabled: this.auth.enabled, isKey: (b) => this.auth.isKey(b), cookieSecure: opts.cookieSecure ?? 'auto', trusted: trustedProxies(opts.trustedProxies ?? []), allowedOrigins: opts.cors?.allowedOrigins ?? [] };
    // the timeouts below are enforced by a sweep every connectionsCheckingInterval (Node's default: 30 s)
    this.server = createServer({ connectionsCheckingInterval: 500 }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // an outsider can provoke this (it is a bug when it happens): one entry per route and interval
        this.failLog?.error('handler', { err, method: req.method, url: (req.url ?? '').slice(0, 128) }, 'gateway handler failed');
        if (!res.headersSent) this.sendError(res, '/?', new HttpError(500, 'internal error', 'internal_error', 'internal'));
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 65_000;
    // slow-loris: headers within headersTimeoutMs, the whole request within bodyTimeoutMs (then 408 and close)
    this.server.headersTimeout = opts.headersTimeoutMs ?? 5000;
    this.server.requestTimeout = Math.max(this.server.headersTimeout, opts.bodyTimeoutMs ?? 15_000);
    this.server.on('upgrade', (req, socket, head) => {
      const target = requestUrl(req.url);
      if (!target) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        return;
      }
      if (target.pathname !== '/ws' || !this.opts.live) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      const refused = wsUpgradeRefusal(req, this.opts.cors?.allowedOrigins, () => this.auth.readAllowed(req)); // ws-origin.ts: 403, 401
      if (refused) return void socket.end(refused);
      // (the socket has no data listener until handleUpgrade binds one: nothing it sends meanwhile is lost)
      import('ws').then((m) => (this.wss ??= new m.WebSocketServer({ noServer: true, maxPayload: 4096 })).handleUpgrade(req, socket, head, (ws) => this.onWs(ws)), () => socket.destroy());
    });
  }

  /** Starts listening; resolves with the bound port. */
  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    if (this.opts.live) this.liveTimer = this.opts.clock.setInterval(() => this.broadcast(), this.opts.liveTickMs);
    return (this.server.address() as AddressInfo).port;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get inflightCount(): number {
    return this.inflight;
  }

  /**
   * Leaves the load balancer while still serving: /readyz and /healthz answer 503 (reason draining), and every answer
   * from now on closes its connection, so a client's keep-alive connection goes back through the load balancer to
   * another replica; new connections and requests are served as before. Then close() (the gateway's drain:
   * gateway.drainDelayMs between the two).
   */
  leave(): void {
    this.leaving = true;
  }

  /**
   * Stops taking requests: closes the listener (a new connection is refused; the idle kept-alive ones are closed, and
   * a request on another gets a retryable 503), waits up to graceMs for the in-flight ones, then cancels the rest, each
   * answered with a retryable error (drain.ts), and closes every connection once those answers are sent.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.leaving = true;
    this.draining = true;
    if (this.liveTimer !== undefined) this.opts.clock.clearInterval(this.liveTimer);
    this.liveTimer = undefined;
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    const until = this.opts.clock.now() + graceMs;
    while (this.inflight > 0 && this.opts.clock.now() < until) await this.opts.clock.sleep(50);
    await this.aborts.cut(this.opts.clock);
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    this.server.closeAllConnections();
    await closed;
  }

  private withWarnings<T extends object>(snap: T): T & { warnings?: string[] } {
    return this.opts.warnings?.length ? { ...snap, warnings: this.opts.warnings } : snap;
  }

  // ---- live stream ----

  private onWs(ws: WebSocket): void {
    ws.on('error', () => ws.terminate());
    ws.on('message', () => undefined); // the stream is one-way: client messages are ignored
    if (this.opts.live) ws.send(JSON.stringify(this.withWarnings(this.opts.live.snapshot(this.opts.clock.now(), 600))));
  }

  private broadcast(): void {
    const live = this.opts.live;
    if (!live) return;
    live.tick(this.opts.clock.now());
    if (!this.wss?.clients.size) return;
    const msg = JSON.stringify(this.withWarnings(live.snapshot(this.opts.clock.now())));
    for (const c of this.wss.clients) {
      // a slow client is skipped rather than buffered without bound
      if (c.readyState === c.OPEN && c.bufferedAmount < 1 << 20) c.send(msg);
    }
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (this.opts.replicaId) res.setHeader('x-dynamollm-gateway', this.opts.replicaId);
    if (this.leaving) res.setHeader('connection', 'close');
    const origin = req.headers.origin;
    if (origin !== undefined) {
      // CORS as vLLM's: a preflight is answered here, unauthenticated (a browser sends it without credentials)
      const asked = req.headers['access-control-request-method'];
      if (method === 'OPTIONS' && asked !== undefined) return this.corsPreflight(req, res, origin, asked);
      const h = this.cors.answerHeaders(origin, req.headers.cookie !== undefined);
      for (const k in h) res.setHeader(k, h[k]!);
    }
    if (method === 'POST' && (req.url === '/v1/completions' || req.url === '/v1/chat/completions')) { // spelt exactly: their own path, no URL parse
      const authErr = this.auth.check(req);
      return authErr ? this.sendError(res, req.url, authErr) : this.inference(req, res, req.url, req.url === '/v1/completions' ? 'completion' : 'chat');
    }
    const url = requestUrl(req.url);
    if (!url) return this.sendError(res, '/?', new HttpError(400, 'the request target is not a valid path', 'invalid_request_error', 'invalid_request'));
    const path = url.pathname;

    if (method === 'GET' && this.opts.health && (path === '/livez' || path === '/readyz')) {
      const r = probeResponse(path, this.opts.health)!;
      // a draining replica leaves the load balancer at once but stays alive until its streams end
      if (path === '/readyz' && this.leaving) return this.sendJson(res, path, 503, { ...r.body, ready: false, reason: 'draining' });
      return this.sendJson(res, path, r.status, r.body);
    }
    if (method === 'GET' && path === '/healthz') {
      const ok = !this.leaving && (this.opts.backend.ready?.() ?? true);
      return this.sendJson(res, path, ok ? 200 : 503, { status: ok ? 'ok' : this.leaving ? 'draining' : 'backend unavailable', inflight: this.inflight, protocol: PROTOCOL_VERSION });
    }
    if (method === 'GET' && path === '/health') {
      // vLLM's: 200 and an empty body when it can serve, else 503; answered as /readyz is (as /healthz without a report)
      const ok = !this.leaving && (this.opts.health ? this.opts.health().ready : (this.opts.backend.ready?.() ?? true));
      this.count(path, ok ? 200 : 503);
      return void res.writeHead(ok ? 200 : 503, { 'content-length': 0 }).end();
    }
    // with API keys, everything below needs one (the health probes above do not)
    if (path === LOGIN_PATH) return this.answer(res, path, dashboardLogin(req, this.login)); // dashboard-login.ts
    if (method === 'GET' && path === '/' && url.searchParams.has('key')) return this.sendError(res, path, keyInUrlError());
    const readOnly = path === '/metrics' || path === '/api/live' || STATIC[path] !== undefined;
    if (readOnly && !this.auth.readAllowed(req, path === '/metrics')) {
      if (method === 'GET' && (path === '/' || path === '/index.html')) return this.answer(res, path, loginPage(401));
      return this.sendError(res, path, new HttpError(401, STATIC[path] ? `API key required: log in at / (POST ${LOGIN_PATH})` : 'API key required: send Authorization: Bearer <key>', 'invalid_request_error', 'invalid_api_key'));
    }
    if (method === 'GET' && path === '/metrics') {
      if (!this.opts.metrics) return this.sendError(res, path, new HttpError(404, 'metrics are not enabled', 'invalid_request_error', 'not_found'));
      const body = await (this.opts.metricsText ?? (() => this.opts.metrics!.text()))().catch((err: unknown) => new HttpError(503, `metrics unavailable: ${(err as Error).message}`, 'service_unavailable', 'unavailable', null, 1));
      if (body instanceof HttpError) return this.sendError(res, path, body);
      this.count(path, 200);
      return void res.writeHead(200, { 'content-type': this.opts.metrics.contentType }).end(body);
    }
    if (method === 'GET' && STATIC[path]) return this.serveStatic(res, path, STATIC[path]!);
    if (method === 'GET' && path === '/version') {
      // vLLM's {"version": ...}, the package's version; not a health probe, so with API keys it needs one
      const authErr = this.auth.check(req);
      return authErr ? this.sendError(res, path, authErr) : this.sendJson(res, path, 200, { version: DYNAMOLLM_VERSION });
    }
    if (method === 'GET' && path === '/api/live') {
      if (!this.opts.live) return this.sendError(res, path, new HttpError(404, 'live telemetry is not enabled', 'invalid_request_error', 'not_found'));
      return this.sendJson(res, path, 200, this.withWarnings(this.opts.live.snapshot(this.opts.clock.now())));
    }

    if (path.startsWith('/v1/')) {
      const authErr = this.auth.check(req);
      if (authErr) return this.sendError(res, path, authErr);
      if (path === '/v1/models') {
        if (method !== 'GET') return this.sendError(res, path, new HttpError(405, `method ${method} not allowed on ${path}`));
        // max_model_len as the engine's tokenizer reports it, waited for within a bound (models-route.ts)
        return this.sendJson(res, path, 200, await this.modelList.list());
      }
      if (path === '/v1/completions' || path === '/v1/chat/completions') {
        if (method !== 'POST') return this.sendError(res, path, new HttpError(405, `method ${method} not allowed on ${path}`));
        return this.inference(req, res, path, path === '/v1/completions' ? 'completion' : 'chat');
      }
    }
    if (path === '/tokenize' || path === '/detokenize') {
      const authErr = this.auth.check(req);
      if (authErr) return this.sendError(res, path, authErr);
      if (method !== 'POST') return this.sendError(res, path, new HttpError(405, `method ${method} not allowed on ${path}`));
      try {
        const ignored: string[] = [];
        const out = await (path === '/tokenize' ? tokenizeRoute : detokenizeRoute)(this.tokenizers, await readJson(req, this.opts.bodyLimitBytes), ignored);
        return (this.ignored.note(path, ignored, res), this.sendJson(res, path, 200, out));
      } catch (err) {
        return this.sendError(res, path, err);
      }
    }
    return this.sendError(res, path, new HttpError(404, `no route for ${method} ${path}`, 'invalid_request_error', 'not_found'));
  }

  private corsPreflight(req: IncomingMessage, res: ServerResponse, origin: string, asked: string): void {
    const requested = req.headers['access-control-request-headers'];
    const p = this.cors.preflight(origin, asked, Array.isArray(requested) ? requested.join(',') : requested);
    this.count(requestUrl(req.url)?.pathname ?? '/?', p.status);
    res.writeHead(p.status, { ...p.headers, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(p.body) }).end(p.body);
  }

  /** An answer of dashboard-login.ts as it is, or the error it threw. */
  private answer(res: ServerResponse, route: string, a: LoginAnswer | Promise<LoginAnswer>): Promise<void> {
    return Promise.resolve(a).then((r) => this.count(route, writeAnswer(res, r)), (err: unknown) => this.sendError(res, route, err));
  }

  private async inference(req: IncomingMessage, res: ServerResponse, route: string, kind: ApiKind): Promise<void> {
    // its wait for its answer to begin is bounded (holdLimitMs), a resume's too: then a retryable 503, and what is
    // under way for it (the prompt's count, its admission, its legs; a resume's next leg) is cancelled
    const hold = new HoldLimit(this.opts.clock, this.opts.holdLimitMs, () => !res.headersSent && !res.destroyed, () => {
      this.opts.metrics?.gatewayRejections.inc({ reason: 'hold_limit' });
      this.sendError(res, route, new HttpError(503, `the request did not start within the gateway's hold limit (${Math.round(this.opts.holdLimitMs / 1000)} s): retry`, 'service_unavailable', 'unavailable', null, 1));
    });
    const held = req.headers[LAST_EVENT_ID_HEADER] !== undefined ? this.resumeStream(req, res, route, kind, hold) : this.inferenceHeld(req, res, route, kind, hold);
    return held.finally(() => hold.clear());
  }

  /** The answer of a request aborted before its response began: the drain's error (close()), or none (the client left, or it was answered). */
  private endAborted(res: ServerResponse, route: string, signal: AbortLike): void {
    const e = this.aborts.answerOf(signal.reason);
    if (e) this.sendError(res, route, e);
  }

  private async inferenceHeld(req: IncomingMessage, res: ServerResponse, route: string, kind: ApiKind, hold: HoldLimit): Promise<void> {
    // from its start, the client's leaving (or the hold limit) aborts what is under way for the request: the prompt's
    // count, its admission, its legs; and its slots of maxInflight, taken at the in-flight check, are given back at its end
    const ac = new LeanAbort(); // (no EventTarget: src/runtime/abort.ts)
    const onClose = () => {
      if (!res.writableEnded) ac.abort(new DynError('cancelled', 'client disconnected', { retryable: false }));
    };
    res.on('close', onClose);
    hold.onPass(() => ac.abort(holdPassed()));
    this.aborts.add(ac, res);
    const slots = { n: 0 };
    const tr = firstTokenTrace.on ? firstTokenTrace.begin() : -1; // the first token's path (DYN_TRACE_FIRST_TOKEN): its slot
    try {
      await this.inferenceSlotted(req, res, route, kind, hold, ac, slots, tr);
    } finally {
      if (tr >= 0) firstTokenTrace.end(tr);
      res.off('close', onClose);
      this.aborts.delete(ac);
      if (slots.n > 0) {
        this.inflight -= slots.n;
        this.opts.metrics?.inflightSoon(() => this.inflight);
      }
    }
  }

  private async inferenceSlotted(req: IncomingMessage, res: ServerResponse, route: string, kind: ApiKind, hold: HoldLimit, ac: LeanAbort, slots: { n: number }, tr: number): Promise<void> {
    // its receipt (the HTTP head parsed), for the debug log's time to its arrival stamp (the body's read, its parse, the prompt's count)
    const receivedMs = this.opts.clock.now();
    let parsed: ParsedRequest;
    let inputTokens: number;
    let echoed: string | undefined; // the prompt's text, for echo without generation
    let resumable = false;
    let opted = false;
    try {
      if (this.draining) throw new HttpError(503, 'gateway is shutting down', 'service_unavailable', 'unavailable', null, 1);
      requireJsonContentType(req.headers['content-type']);
      const raw = await readBody(req, this.opts.bodyLimitBytes);
      let body: unknown;
      try {
        body = parseJsonBody(raw.toString('utf8'));
      } catch (e) {
        throw badRequest(`request body is not valid JSON: ${(e as Error).message}`);
      }
      parsed = parseOpenAiRequest(kind, body, this.limits);
      this.ignored.note(route, parsed.ignored, res);
      if (parsed.model === '') parsed.model = this.opts.models[0]!; // as vLLM: no model, the (first) served model
      parsed.probe = probeOf(req.headers[PROBE_HEADER], parsed, this.isProbeToken);
      const optIn = resumableOf(req.headers[RESUMABLE_HEADER]);
      if (optIn === 'invalid') throw badRequest(`${RESUMABLE_HEADER} takes the value 1 (a resumable stream)`);
      opted = optIn;
      // one streamed choice, and a journal to keep it in: otherwise the stream is vLLM's as it is
      resumable = optIn && parsed.stream && parsed.n === 1 && this.opts.journal !== undefined && parsed.maxTokens > 0;
      if (!this.opts.models.includes(parsed.model)) {
        throw new HttpError(404, `The model \`${parsed.model}\` does not exist.`, 'invalid_request_error', 'model_not_found', 'model');
      }
      if (this.inflight + parsed.n > this.opts.maxInflight) {
        this.opts.metrics?.gatewayRejections.inc({ reason: 'inflight_limit' });
        throw new HttpError(429, `gateway at its in-flight limit (${this.opts.maxInflight})`, 'rate_limit_error', 'overloaded', null, 1);
      }
      if (tr >= 0) firstTokenTrace.markAt(tr, MARK.parsed);
      slots.n = parsed.n;
      this.inflight += parsed.n;
      this.opts.metrics?.inflightSoon(() => this.inflight);
      // the engine's tokenizer counts the prompt (chat template applied); the context check happens here,
      // before anything is dispatched
      const counted = knownCount(this.counter, parsed.model, parsed.prompt, parsed.messages, parsed.params) ?? await countTokens(this.counter, parsed.model, parsed.prompt, parsed.messages, parsed.params, ac.signal);
      inputTokens = counted.count;
      if (tr >= 0) firstTokenTrace.markAt(tr, MARK.counted);
      if (!parsed.maxTokensGiven) parsed.maxTokens = Math.max(1, Math.min(parsed.maxTokens, counted.maxModelLen - counted.count));
      if ((parsed.minTokens ?? 0) > parsed.maxTokens) throw badRequest(`'min_tokens' (${parsed.minTokens}) exceeds max_tokens (${parsed.maxTokens}: the context's rest)`, 'min_tokens');
      // the context length, then the logprobs bound of the model's instances (vLLM's 400s)
      const beyond = engineLimitsError(this.counter, parsed, counted);
      if (beyond?.code === 'context_length_exceeded') this.opts.metrics?.gatewayRejections.inc({ reason: 'context_length' });
      if (beyond) throw beyond;
      if (parsed.maxTokens === 0) echoed = await echoedPrompt(this.tokenizers, parsed);
    } catch (err) {
      if (hold.passed) return; // answered already
      // a refused body may still be arriving; answer and close rather than read it
      if (err instanceof HttpError && err.status === 413) res.setHeader('connection', 'close');
      return this.sendError(res, route, err);
    }
    if (hold.passed || ac.signal.aborted) return this.endAborted(res, route, ac.signal); // answered already, the client left, or the drain

    const id = newRequestId(), f = framingOf(parsed, req.headers['x-request-id'], id);
    if (tr >= 0) firstTokenTrace.bind(tr, id);
    const now = this.opts.clock.now();
    const t0 = performance.now();
    const ir: InferenceRequest = {
      v: 1,
      id,
      model: parsed.model,
      kind,
      inputTokens,
      maxTokens: parsed.maxTokens,
      arrivalMs: now,
      giveUpAtMs: now + this.opts.requestTimeoutMs,
      streamSubject: subjects.stream(id), ...(parsed.probe ? { probe: true } : {}),
    };
    if (parsed.kind === 'chat') ir.messages = parsed.messages;
    else ir.prompt = parsed.prompt;
    // debug level: its receipt and its arrival stamp by request id (the twin check's time from the client's send to the stamp)
    if (this.opts.log?.isLevelEnabled('debug')) this.opts.log.debug({ rid: id, receivedMs, arrivalMs: now, inputTokens }, 'request arrival');
    if (parsed.minTokens !== undefined) ir.minTokens = parsed.minTokens;
    if (parsed.ignoreEos !== undefined) ir.ignoreEos = parsed.ignoreEos;
    if (parsed.temperature !== undefined) ir.temperature = parsed.temperature;
    if (parsed.params !== undefined) ir.params = parsed.params;
    if (parsed.user !== undefined) ir.tenant = parsed.user;
    const keyId = this.auth.keyIdOf(req);
    if (keyId !== undefined) ir.apiKeyId = keyId;

    // n choices are n requests to the cluster, each classified, dispatched and (if its engine dies) migrated on
    // its own, as vLLM makes each choice a child request: child i samples with seed + i when a seed is given
    const n = parsed.n;
    const irs = n === 1 ? [ir] : Array.from({ length: n }, (_, i) => childRequest(ir, i));
    let complete = false;
    const created = Math.floor(now / 1000);
    let journal: Resumable | undefined = resumable ? { journal: this.opts.journal!.writer(id, 0, this.opts.sloOf?.(ir)), next: 0, sent: 0, prelude: '' } : undefined;
    // the head is appended while the request is admitted, and held by the journal before the stream's first event
    const headHeld = journal?.journal.head(journalHeadOf(ir, created, f));
    const hooks: StreamHooks | undefined = journal ? { onLeg: (leg) => journal?.journal.leg(leg) } : undefined;
    try {
      const sources = echoed !== undefined ? irs.map((r) => echoSource(r, echoed)) : await submitAll<TokenSource>(irs, (r) => this.opts.backend.submit(r, ac.signal, hooks));
      if (tr >= 0) firstTokenTrace.markAt(tr, MARK.routed);
      if (!Array.isArray(sources)) {
        if (ac.signal.aborted && !res.writable) return;
        journal?.journal.stop('the request was refused');
        const err = sources.refused;
        this.opts.metrics?.gatewayRejections.inc({ reason: err instanceof DynError ? err.code : 'internal' });
        return this.sendError(res, route, toHttp(err));
      }
      if (headHeld && !(await headHeld)) {
        // the journal did not hold the head in time: the stream is served as it is, not resumable (the header says so)
        journal = undefined;
      }
      if (opted && parsed.stream) res.setHeader(RESUMABLE_HEADER, journal ? '1' : '0');
      const timers = sources.map(() => new StreamTimer(this.opts.metrics, parsed.model, t0));
      complete = parsed.stream
        ? await this.streamSse(res, route, f, id, created, inputTokens, sources, ac, timers, hold, journal)
        : await this.collect(res, route, f, id, created, inputTokens, sources.map((s) => inBatches(s)), ac, timers, hold);
    } finally {
      // a request that did not complete ends its other choices (an admitted choice nobody reads is cancelled)
      if (!complete && n > 1 && !ac.signal.aborted) ac.abort(new DynError('cancelled', 'another choice of the request failed', { retryable: false }));
    }
  }

  /** The whole answer as one JSON response: every choice, with its index. Resolves true when it was sent. */
  private async collect(res: ServerResponse, route: string, p: Framing, id: string, created: number, inputTokens: number, streams: AsyncIterable<readonly TokenChunk[]>[], ac: LeanAbort, timers: StreamTimer[], hold: HoldLimit): Promise<boolean> {
    let got: { out: ChoiceOut; tokens: number; usage?: Usage }[];
    try {
      got = await Promise.all(streams.map((s, i) => collectChoice(s, timers[i]!, hold)));
    } catch (err) {
      if (ac.signal.aborted) this.endAborted(res, route, ac.signal);
      else this.sendError(res, route, toHttp(err));
      return false;
    }
    if (ac.signal.aborted) return (this.endAborted(res, route, ac.signal), false);
    this.sendJson(res.setHeader('x-request-id', requestIdHeader(p.responseId ?? id, id)), route, 200, collectedBody(p, id, created, inputTokens, got));
    return true;
  }

  /** The token streams relayed as SSE (sse-stream.ts relaySse); resolves true when [DONE] was sent. */
  private streamSse(res: ServerResponse, route: string, p: Framing, id: string, created: number, inputTokens: number, sources: TokenSource[], ac: LeanAbort, timers: StreamTimer[], hold?: HoldLimit, r?: Resumable): Promise<boolean> {
    const started = () => (hold?.begin(), this.count(route, 200));
    return relaySse({ res, started, fail: (e: HttpError) => this.sendError(res, route, e), aborted: this.aborts.answerOf, plane: this.opts.dataPlane, clientStallMs: this.opts.clientStallMs, clock: this.opts.clock }, p, id, created, inputTokens, sources, ac, timers, r);
  }

  /**
   * A reconnect with `Last-Event-ID: <request id>:<event index>` (docs/PROTOCOL.md "Resumable streams"): the stream's
   * journal is read (the body is ignored), the events after the client's last are sent again, and the generation goes
   * on as a new leg (backend.resume), journaled as the next writer generation. Refusals: resumePlan; 503 (retryable),
   * the hold limit's among them: the missed events go with the status line, at the new leg's first token.
   */
  private async resumeStream(req: IncomingMessage, res: ServerResponse, route: string, kind: ApiKind, hold: HoldLimit): Promise<void> {
    const journalOf = this.opts.journal;
    const backend = this.opts.backend;
    let found: Extract<ReturnType<typeof resumePlan>, { state: unknown }>;
    try {
      if (this.draining) throw new HttpError(503, 'gateway is shutting down', 'service_unavailable', 'unavailable', null, 1);
      const last = parseLastEventId(req.headers[LAST_EVENT_ID_HEADER]);
      if (last === 'invalid' || last === undefined) throw new HttpError(400, `${LAST_EVENT_ID_HEADER} is not an event id of this gateway (<request id>:<event index>)`, 'invalid_request_error', 'invalid_last_event_id');
      await readBody(req, this.opts.bodyLimitBytes);
      const got = resumePlan(journalOf && backend.resume ? await journalOf.read(last.id) : [], last, kind, this.auth.keyIdOf(req));
      if ('error' in got) throw got.error;
      found = got;
      if (this.inflight + 1 > this.opts.maxInflight) {
        this.opts.metrics?.gatewayRejections.inc({ reason: 'inflight_limit' });
        throw new HttpError(429, `gateway at its in-flight limit (${this.opts.maxInflight})`, 'rate_limit_error', 'overloaded', null, 1);
      }
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) res.setHeader('connection', 'close');
      return this.sendError(res, route, err);
    }
    if (hold.passed) return; // answered: a 503
    const { state: s, plan, id } = found;
    const { head } = s;
    const p = headFraming(head);
    const inputTokens = head.req.inputTokens;
    const prelude = replayPrelude(id, head, plan);
    if (plan.end) {
      // the stream had ended: its last events and [DONE]
      this.count(route, 200);
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': requestIdHeader(p.responseId ?? id, id) });
      res.end(prelude + 'data: [DONE]\n\n');
      return;
    }
    const ac = new LeanAbort();
    hold.onPass(() => ac.abort(holdPassed()));
    this.aborts.add(ac, res);
    this.inflight++;
    this.opts.metrics?.inflightSoon(() => this.inflight);
    const onClose = () => {
      if (!res.writableEnded) ac.abort(new DynError('cancelled', 'client disconnected', { retryable: false }));
    };
    res.on('close', onClose);
    const writer = journalOf!.writer(id, s.gen + 1, this.opts.sloOf?.(head.req));
    res.setHeader(RESUMABLE_HEADER, '1');
    const r: Resumable = { journal: writer, next: plan.next, sent: plan.sent, prelude };
    try {
      let stream: TokenSource;
      try {
        stream = await backend.resume!(head.req, { sent: plan.sent, text: plan.text, ...(s.leg ? { leg: s.leg } : {}), resumes: s.gen }, ac.signal, { onLeg: (leg) => writer.leg(leg) });
      } catch (err) {
        if (ac.signal.aborted) return this.endAborted(res, route, ac.signal);
        this.opts.metrics?.gatewayRejections.inc({ reason: err instanceof DynError ? err.code : 'internal' });
        return this.sendError(res, route, toHttp(err));
      }
      const timer = new StreamTimer(this.opts.metrics, p.model, performance.now());
      await this.streamSse(res, route, p, id, head.created, inputTokens, [stream], ac, [timer], hold, r);
    } finally {
      res.off('close', onClose);
      this.inflight--;
      this.aborts.delete(ac);
      this.opts.metrics?.inflightSoon(() => this.inflight);
    }
  }

  private async serveStatic(res: ServerResponse, route: string, file: string): Promise<void> {
    const f = await staticFile(file);
    if (!f) return this.sendError(res, route, new HttpError(404, `${file} not found`, 'invalid_request_error', 'not_found'));
    this.count(route, 200);
    res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-cache' }).end(f.body);
  }

  private count(route: string, code: number): void {
    this.opts.metrics?.httpRequests.inc({ route: routeLabel(route), code: String(code) });
  }

  private sendJson(res: ServerResponse, route: string, status: number, body: unknown): void {
    this.count(route, status);
    const s = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.end(s);
  }

  private sendError(res: ServerResponse, route: string, err: unknown): void {
    const e = toHttp(err);
    if (res.headersSent || res.destroyed) return;
    // a refusal's own cause (the client gets fixed words): which wait or answer ended it
    if (e.status >= 500 || e.status === 429) this.opts.log?.info({ route, status: e.status, code: e.code, cause: (err as Error)?.message, remoteCode: (err as { remoteCode?: string }).remoteCode }, 'request refused');
    if (e.retryAfterS !== undefined) res.setHeader('retry-after', String(Math.max(1, Math.ceil(e.retryAfterS))));
    if (e.status === 401) res.setHeader('www-authenticate', 'Bearer');
    if (e.code) res.setHeader(ERROR_CODE_HEADER, e.code);
    this.sendJson(res, route, e.status, e.body());
  }
}
