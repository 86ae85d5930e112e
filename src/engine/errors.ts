/**
 * Typed failures of the engine layer. Every class says whether the caller may retry the same request
 * elsewhere (or later) and keeps the underlying `cause`.
 */

export class EngineError extends Error {
  override name = 'EngineError';
  readonly retryable: boolean = false;
}

/** The waiting queue of the batching core is at its bound; retry later or on another instance. */
export class QueueFullError extends EngineError {
  override name = 'QueueFullError';
  override readonly retryable = true;
  constructor(readonly bound: number) {
    super(`engine waiting queue is full (bound ${bound})`);
  }
}

/** The engine process exited or never became healthy within its deadline. */
export class EngineStartError extends EngineError {
  override name = 'EngineStartError';
  override readonly retryable = false;
  constructor(message: string, readonly lastLogLines: readonly string[] = [], options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The engine process died while a request was in flight; the request may be retried on a healthy engine. */
export class EngineCrashedError extends EngineError {
  override name = 'EngineCrashedError';
  override readonly retryable = true;
  constructor(message: string, readonly exitCode: number | null = null, readonly signal: string | null = null, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The stream broke for a reason other than a process exit (reset connection, truncated SSE). */
export class EngineStreamError extends EngineError {
  override name = 'EngineStreamError';
  override readonly retryable = true;
}

/** The engine answered with an HTTP error status. 429 and 5xx are retryable, 4xx are not. */
export class EngineHttpError extends EngineError {
  override name = 'EngineHttpError';
  override readonly retryable: boolean;
  constructor(readonly status: number, readonly body: string, what: string) {
    super(`${what}: HTTP ${status}: ${body.slice(0, 300)}`);
    this.retryable = status === 429 || status >= 500;
  }

  /** The engine's own error message (OpenAI/vLLM error body: {error: {message}} or {message}), else the body. */
  get engineMessage(): string {
    try {
      const b = JSON.parse(this.body) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
      const m = typeof b.error === 'object' && b.error ? b.error.message : b.message ?? b.detail ?? b.error;
      if (typeof m === 'string' && m.length > 0) return m.slice(0, 2000);
      if (m !== undefined) return JSON.stringify(m).slice(0, 2000);
    } catch {
      // not JSON
    }
    return this.body.slice(0, 2000) || `HTTP ${this.status}`;
  }
}

/** A remote call to the engine missed its deadline. */
export class EngineTimeoutError extends EngineError {
  override name = 'EngineTimeoutError';
  override readonly retryable = true;
}

/**
 * The engine sent nothing for longer than the request's idle deadline (EngineCompletionRequest.idle): a frozen or
 * hung engine; the request may continue on a healthy one, as after a crash.
 */
export class EngineStalledError extends EngineError {
  override name = 'EngineStalledError';
  override readonly retryable = true;
}

/** The engine is not in a state that allows the call (not started, stopped, sleeping, failed). */
export class EngineStateError extends EngineError {
  override name = 'EngineStateError';
  override readonly retryable = false;
}

/** The /metrics text is not valid Prometheus exposition format or lacks a required vLLM family. */
export class MetricsParseError extends EngineError {
  override name = 'MetricsParseError';
  override readonly retryable = true;
  constructor(message: string, readonly line?: number) {
    super(line === undefined ? message : `line ${line}: ${message}`);
  }
}

/** An EngineConfig that cannot work (bad TP / GPU ids / port). */
export class EngineConfigError extends EngineError {
  override name = 'EngineConfigError';
  override readonly retryable = false;
}
