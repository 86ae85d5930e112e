/**
 * pino logging. JSON lines (machine-readable, cheap) unless stdout is a terminal; pretty when asked
 * (`pretty: true` or env DYNAMOLLM_LOG_PRETTY=1) or on a terminal (env DYNAMOLLM_LOG_PRETTY=0: JSON there too). Level from `level`, else env DYNAMOLLM_LOG_LEVEL, else 'info'.
 * Each actor logs through a child carrying `actor` (its kind) and `id`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** pino level: trace|debug|info|warn|error|fatal|silent. Default env DYNAMOLLM_LOG_LEVEL or 'info'. */
  level?: string;
  /** human-readable output through pino-pretty. Default: env DYNAMOLLM_LOG_PRETTY (1/0), else whether stdout is a terminal. */
  pretty?: boolean;
  name?: string;
  /** write to this destination instead of stdout (tests). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.DYNAMOLLM_LOG_LEVEL ?? 'info';
  const env = process.env.DYNAMOLLM_LOG_PRETTY;
  const pretty = opts.pretty ?? (env === '1' ? true : env === '0' ? false : !opts.destination && process.stdout.isTTY);
  const base = { level, name: opts.name ?? 'dynamollm' };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, destination: 2 } } });
  }
  if (opts.destination) return pino(base, opts.destination);
  return pino(base);
}

export function actorLogger(root: Logger, kind: string, id: string): Logger {
  return root.child({ actor: kind, id });
}

/** A logger that drops everything (for tests and benchmarks that do not care). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Warnings an outsider can provoke (bad payloads, forged subjects, failing HTTP requests) logged at most once per key
 * per interval; the next entry says how many were suppressed since. Keys are bounded (the map is cleared past
 * `maxKeys`), so a flood of distinct keys cannot grow memory either.
 */
export class RateLimitedLog {
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;

  constructor(log: Logger, intervalMs = 10_000, opts: { maxKeys?: number; now?: () => number } = {}) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#maxKeys = opts.maxKeys ?? 1024;
    this.#now = opts.now ?? Date.now;
  }

  warn(key: string, obj: Record<string, unknown>, msg: string): boolean {
    return this.#emit('warn', key, obj, msg);
  }

  error(key: string, obj: Record<string, unknown>, msg: string): boolean {
    return this.#emit('error', key, obj, msg);
  }

  /** true when the entry was written, false when it was suppressed. */
  #emit(level: 'warn' | 'error', key: string, obj: Record<string, unknown>, msg: string): boolean {
    const now = this.#now();
    const st = this.#last.get(key);
    if (st && now - st.at < this.#intervalMs) {
      st.suppressed++;
      return false;
    }
    if (!st && this.#last.size >= this.#maxKeys) this.#last.clear();
    this.#last.set(key, { at: now, suppressed: 0 });
    this.#log[level]({ ...obj, suppressedSinceLast: st?.suppressed ?? 0 }, msg);
    return true;
  }
}
