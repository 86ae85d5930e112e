/**
 * VllmEngine: manages one process that speaks vLLM's OpenAI-compatible HTTP API (`vllm serve`, or the
 * emulator). Spawns it with CUDA_VISIBLE_DEVICES, captures its log lines, waits on /health, streams
 * completions over SSE, scrapes /metrics, drives sleep mode, notices exits and restarts with exponential
 * backoff under a restart budget.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent } from 'node:http';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import type {
  Engine, EngineChunk, EngineCompletionRequest, EngineEvents, EngineExitInfo, EngineState, EngineTokenizeRequest, EngineTokenizeResult, RestartPolicy,
} from './engine.ts';
import { parseVllmMetrics, parseVllmPrefixCache, type EngineMetrics } from './metrics-parse.ts';
import { streamCompletion } from './client.ts';
import { Http1Pool } from './http1.ts';
import { Http1TimeoutError, http1Text } from './http1-text.ts';
import { tiedToParent } from '../runtime/parent-death.ts';
import {
  EngineCrashedError, EngineError, EngineHttpError, EngineStartError, EngineStateError, EngineStreamError, EngineTimeoutError,
} from './errors.ts';

export interface ProcessEngineSpec {
  command: string;
  args: string[];
  /** full environment of the child. */
  env: NodeJS.ProcessEnv;
  host: string;
  /** 0: learn the port from the process's output (`{"event":"listening","port":N}` or uvicorn's line). */
  port: number;
  healthDeadlineMs: number;
  enableSleep: boolean;
  autoRestart: boolean;
  restart: RestartPolicy;
  requestTimeoutMs: number;
  probeTimeoutMs: number;
  logLines: number;
  /** the engine's API key (VLLM_API_KEY in its environment): sent as a Bearer token on every call. */
  apiKey?: string;
}

export const DEFAULT_RESTART: RestartPolicy = { maxRestarts: 5, windowMs: 600_000, initialBackoffMs: 500, maxBackoffMs: 30_000 };

const PORT_PATTERNS = [/"event"\s*:\s*"listening".*?"port"\s*:\s*(\d+)/, /Uvicorn running on https?:\/\/[^\s]+:(\d+)/];
/** how long a broken stream waits for the process exit that would explain it, ms. */
const CRASH_ATTRIBUTION_MS = 1_000;
const HEALTH_POLL_MS = 100;
/**
 * deadline of /sleep and /wake_up, ms: vLLM answers them once the weights are off the GPU or back on it, seconds for
 * a 70B model (src/model/sleep.ts: level 2 of a TP2 Llama2-70B ~10 s), so a probe's deadline is too short.
 */
const SLEEP_CALL_TIMEOUT_MS = 60_000;
/**
 * /metrics with only the two prefix-cache counters (`name[]`, which prometheus_client's exposition and so vLLM's
 * /metrics honour, as the emulator does): ~0.5 KB instead of the ~15-KB text the instance manager would fetch every
 * second while its engine runs requests. An engine that sends the whole text anyway is read the same way
 * (parseVllmPrefixCache reads only those two families' lines).
 */
export const PREFIX_CACHE_METRICS = `/metrics?${['vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total'].map((n) => `name%5B%5D=${encodeURIComponent(n)}`).join('&')}`;

const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class VllmEngine extends EventEmitter<EngineEvents> implements Engine {
  private _state: EngineState = 'created';
  private child: ChildProcess | null = null;
  /** increments per spawn; exit handlers of older processes are ignored. */
  private generation = 0;
  private port: number;
  private readonly ring: string[] = [];
  private stopping = false;
  private exited = true;
  private lastExit: EngineExitInfo | null = null;
  private exitWaiters: (() => void)[] = [];
  private portWaiters: (() => void)[] = [];
  private readonly inflight = new Set<AbortController>();
  private restartTimes: number[] = [];
  private restartTimer: NodeJS.Timeout | null = null;
  /**
   * completions over node:http with keep-alive (one connection per concurrent stream, reused after it). An
   * idle pooled connection is closed after 4 s, before the servers' own keep-alive timeouts (uvicorn's and
   * Node's 5 s); `timeout` only notifies an active request, which its own deadline covers.
   */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, timeout: 4_000 });
  /** the small exchanges' connections (call()): kept alive, closed after 4 s idle as the agent's. */
  private readonly small = new Http1Pool({ maxIdlePerHost: 8 });

  constructor(readonly spec: ProcessEngineSpec) {
    super();
    this.port = spec.port;
  }

  get state(): EngineState {
    return this._state;
  }

  get baseUrl(): string {
    return `http://${this.spec.host}:${this.port}`;
  }

  logs(): readonly string[] {
    return this.ring;
  }

  async start(): Promise<void> {
    if (!['created', 'stopped', 'failed'].includes(this._state)) throw new EngineStateError(`start() in state ${this._state}`);
    this.stopping = false;
    this.restartTimes = [];
    this._state = 'starting';
    try {
      await this.launch();
    } catch (err) {
      this._state = 'failed';
      throw err;
    }
    this._state = 'ready';
  }

  /** Spawn and wait until healthy; on failure the process is killed and EngineStartError thrown. */
  private async launch(): Promise<void> {
    const gen = this.spawnChild();
    const deadline = Date.now() + this.spec.healthDeadlineMs;
    try {
      if (this.spec.port === 0) await this.waitPort(gen, deadline);
      await this.waitHealthy(deadline - Date.now(), gen);
    } catch (err) {
      await this.killChild(2_000);
      throw err;
    }
  }

  private spawnChild(): number {
    const gen = ++this.generation;
    this.port = this.spec.port;
    this.exited = false;
    this.lastExit = null;
    // detached: its own process group, so stop() also reaches vLLM's worker processes. A dead manager leaves no
    // orphan engine holding its GPUs: the kernel sends the engine SIGTERM when this process dies, however it dies
    // (src/runtime/parent-death.ts; Linux with util-linux setpriv). stdin is a pipe we never write: it closes when
    // this process dies, and the emulator (--exit-on-stdin-close) exits then too, where there is no setpriv.
    const cmd = tiedToParent(this.spec.command, this.spec.args, { path: this.spec.env?.PATH });
    const child: ChildProcess = spawn(cmd.command, cmd.args, { env: this.spec.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    child.stdin?.on('error', () => {}); // EPIPE when the child is gone
    this.child = child;
    for (const stream of ['stdout', 'stderr'] as const) {
      const rl = createInterface({ input: child[stream]! });
      rl.on('line', (line) => this.onLine(gen, stream, line));
    }
    let done = false;
    const onGone = (code: number | null, signal: NodeJS.Signals | null) => {
      if (done) return;
      done = true;
      this.onExit(gen, code, signal);
    };
    child.on('exit', onGone);
    child.on('error', (err) => {
      this.onLine(gen, 'stderr', `spawn error: ${err.message}`);
      onGone(null, null);
    });
    return gen;
  }

  private onLine(gen: number, stream: 'stdout' | 'stderr', line: string): void {
    this.ring.push(line);
    if (this.ring.length > this.spec.logLines) this.ring.shift();
    if (gen === this.generation && this.spec.port === 0 && this.port === 0) {
      for (const re of PORT_PATTERNS) {
        const m = re.exec(line);
        if (m) {
          this.port = Number(m[1]);
          for (const w of this.portWaiters.splice(0)) w();
          break;
        }
      }
    }
    this.emit('log', { stream, line, atMs: Date.now() });
  }

  private onExit(gen: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (gen !== this.generation) return;
    const info: EngineExitInfo = { code, signal, expected: this.stopping };
    this.exited = true;
    this.lastExit = info;
    this.child = null;
    for (const w of this.exitWaiters.splice(0)) w();
    for (const w of this.portWaiters.splice(0)) w();
    const crash = new EngineCrashedError(`engine process exited (code ${code}, signal ${signal}) while serving`, code, signal);
    for (const ac of this.inflight) ac.abort(crash);
    this.emit('exit', info);
    if (!info.expected && (this._state === 'ready' || this._state === 'sleeping')) {
      this.emit('crash', info);
      if (this.spec.autoRestart) this.scheduleRestart();
      else this._state = 'failed';
    }
  }

  private scheduleRestart(): void {
    const now = Date.now();
    this.restartTimes = this.restartTimes.filter((t) => now - t < this.spec.restart.windowMs);
    if (this.restartTimes.length >= this.spec.restart.maxRestarts) {
      this._state = 'failed';
      this.emit('failed', new EngineError(`restart budget spent: ${this.restartTimes.length} restarts within ${this.spec.restart.windowMs} ms`));
      return;
    }
    const attempt = this.restartTimes.length + 1;
    this.restartTimes.push(now);
    const backoff = Math.min(this.spec.restart.maxBackoffMs, this.spec.restart.initialBackoffMs * 2 ** (attempt - 1));
    this._state = 'restarting';
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      this.launch().then(
        () => {
          if (this.stopping) return;
          this._state = 'ready';
          this.emit('restarted', { attempt });
        },
        () => {
          if (!this.stopping) this.scheduleRestart();
        },
      );
    }, backoff);
  }

  private waitPort(gen: number, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        clearTimeout(timer);
        if (gen !== this.generation || this.exited) reject(this.startError('engine process exited before it listened'));
        else if (this.port !== 0) resolve();
        else reject(this.startError('engine did not report its port before the deadline'));
      };
      const timer = setTimeout(check, Math.max(0, deadline - Date.now()));
      if (this.port !== 0 || this.exited) check();
      else this.portWaiters.push(check);
    });
  }

  private startError(msg: string): EngineStartError {
    const tail = this.ring.slice(-20);
    const exit = this.lastExit ? ` (exit code ${this.lastExit.code}, signal ${this.lastExit.signal})` : '';
    return new EngineStartError(`${msg}${exit}; last log lines:\n${tail.join('\n')}`, tail);
  }

  async waitHealthy(deadlineMs: number, gen = this.generation): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (gen !== this.generation || this.exited) throw this.startError('engine process exited before it was healthy');
      const left = deadline - Date.now();
      if (left <= 0) throw this.startError(`engine not healthy within ${deadlineMs} ms`);
      try {
        const res = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(Math.min(left, this.spec.probeTimeoutMs)) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await Promise.race([sleepMs(Math.min(HEALTH_POLL_MS, Math.max(0, deadline - Date.now()))), this.exitPromise(gen)]);
    }
  }

  /** Resolves when process `gen` has exited (immediately if it has). */
  private exitPromise(gen: number): Promise<void> {
    if (gen !== this.generation || this.exited) return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  completion(req: EngineCompletionRequest, signal?: AbortSignal): AsyncIterable<EngineChunk> {
    return this.stream(req, signal);
  }

  private async *stream(req: EngineCompletionRequest, signal?: AbortSignal): AsyncGenerator<EngineChunk> {
    if (this._state !== 'ready') throw new EngineStateError(`completion() while engine is ${this._state}`);
    const gen = this.generation;
    const ac = new AbortController();
    const onAbort = () => ac.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    this.inflight.add(ac);
    try {
      yield* streamCompletion(
        { host: this.spec.host, port: this.port, agent: this.agent, apiKey: this.spec.apiKey, defaultTimeoutMs: this.spec.requestTimeoutMs },
        req,
        ac.signal,
        (err) => this.classifyBreak(gen, err),
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.inflight.delete(ac);
    }
  }

  /** A broken stream is a crash if the process exits shortly after; otherwise a plain stream error. */
  private async classifyBreak(gen: number, cause: unknown): Promise<EngineError> {
    await Promise.race([this.exitPromise(gen), sleepMs(CRASH_ATTRIBUTION_MS)]);
    if (gen !== this.generation || this.exited) {
      const e = this.lastExit;
      return new EngineCrashedError(`engine process exited mid-stream (code ${e?.code ?? null}, signal ${e?.signal ?? null})`, e?.code ?? null, e?.signal ?? null, { cause });
    }
    return new EngineStreamError(`stream broke: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }

  async tokenize(req: EngineTokenizeRequest): Promise<EngineTokenizeResult> {
    const body: Record<string, unknown> = { ...req.params, model: req.model };
    if (req.chat) body.messages = req.chat;
    else body.prompt = req.prompt ?? '';
    if (req.returnTokenStrs) body.return_token_strs = true;
    const text = await this.call('/tokenize', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }, 'tokenize');
    const r = JSON.parse(text) as { count?: unknown; max_model_len?: unknown; tokens?: unknown; token_strs?: unknown };
    if (typeof r.count !== 'number' || typeof r.max_model_len !== 'number' || !Array.isArray(r.tokens)) {
      throw new EngineStreamError('/tokenize answered without count, max_model_len and tokens');
    }
    const out: EngineTokenizeResult = { count: r.count, maxModelLen: r.max_model_len, tokens: r.tokens as number[] };
    if (Array.isArray(r.token_strs)) out.tokenStrs = r.token_strs as string[];
    return out;
  }

  async detokenize(tokens: number[]): Promise<string> {
    const text = await this.call('/detokenize', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens }) }, 'detokenize');
    const r = JSON.parse(text) as { prompt?: unknown };
    if (typeof r.prompt !== 'string') throw new EngineStreamError('/detokenize answered without prompt');
    return r.prompt;
  }

  async metrics(): Promise<EngineMetrics> {
    const text = await this.get('/metrics', 'metrics');
    return parseVllmMetrics(text);
  }

  async prefixCache(): Promise<{ queries: number; hits: number } | undefined> {
    return parseVllmPrefixCache(await this.get(PREFIX_CACHE_METRICS, 'metrics'));
  }

  async sleep(level: 1 | 2 = 1): Promise<void> {
    this.requireSleep();
    await this.call(`/sleep?level=${level}`, { method: 'POST' }, 'sleep', SLEEP_CALL_TIMEOUT_MS);
    this._state = 'sleeping';
  }

  async wakeUp(): Promise<void> {
    this.requireSleep();
    await this.call('/wake_up', { method: 'POST' }, 'wake_up', SLEEP_CALL_TIMEOUT_MS);
    if (this._state === 'sleeping') this._state = 'ready';
  }

  async isSleeping(): Promise<boolean> {
    this.requireSleep();
    const body = JSON.parse(await this.get('/is_sleeping', 'is_sleeping')) as { is_sleeping?: unknown };
    if (typeof body.is_sleeping !== 'boolean') throw new EngineStreamError('/is_sleeping answered without is_sleeping');
    return body.is_sleeping;
  }

  private requireSleep(): void {
    if (!this.spec.enableSleep) throw new EngineStateError('sleep mode is not enabled for this engine (enableSleep)');
    if (this._state !== 'ready' && this._state !== 'sleeping') throw new EngineStateError(`sleep mode call while engine is ${this._state}`);
  }

  private async get(path: string, what: string): Promise<string> {
    return this.call(path, { method: 'GET' }, what);
  }

  /**
   * One small exchange with the engine (/metrics, /tokenize, /detokenize, sleep mode) within the probe deadline,
   * over the lean HTTP/1.1 client's kept-alive connections (src/engine/http1.ts): the instance manager scrapes
   * /metrics every second, and the gateway's prompts are counted through /tokenize.
   */
  private async call(path: string, init: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string }, what: string, timeoutMs = this.spec.probeTimeoutMs): Promise<string> {
    let res: { status: number; text: string };
    try {
      const headers: Record<string, string> = { ...init.headers };
      if (this.spec.apiKey) headers.authorization = `Bearer ${this.spec.apiKey}`;
      res = await http1Text(this.small, { host: this.spec.host, port: this.port, method: init.method, path, headers, body: init.body ?? '' }, timeoutMs);
    } catch (err) {
      if (err instanceof Http1TimeoutError) throw new EngineTimeoutError(`${what}: no answer within ${timeoutMs} ms`, { cause: err });
      throw new EngineStreamError(`${what}: ${(err as Error)?.message}`, { cause: err });
    }
    if (res.status < 200 || res.status > 299) throw new EngineHttpError(res.status, res.text, what);
    return res.text;
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (this._state === 'stopped' || this._state === 'created') {
      this._state = 'stopped';
      return;
    }
    this.stopping = true;
    this._state = 'stopping';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.killChild(graceMs);
    this._state = 'stopped';
  }

  /** GET /health within `timeoutMs`: true on 200 (the instance manager's periodic probe while it serves). */
  async probeHealth(timeoutMs: number): Promise<boolean> {
    try {
      // the lean client's kept-alive connection (one a second per engine: fetch would cost several times the CPU)
      return (await http1Text(this.small, { host: this.spec.host, port: this.port, method: 'GET', path: '/health', headers: {}, body: '' }, timeoutMs)).status === 200;
    } catch {
      return false;
    }
  }

  /** SIGKILL the process group of a hung engine at once (a stopped process dies too): its exit is a crash, restarted as one. */
  killHung(): void {
    const child = this.child;
    if (!child || this.exited) return;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }

  /** SIGTERM the process group, SIGKILL after graceMs, and wait for the exit. */
  private async killChild(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || this.exited) return;
    const gen = this.generation;
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        child.kill(sig);
      }
    };
    const wasStopping = this.stopping;
    this.stopping = true; // an exit we cause is expected
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), graceMs);
    await this.exitPromise(gen);
    clearTimeout(timer);
    this.stopping = wasStopping;
  }
}

export { parseEvent } from './client.ts';
