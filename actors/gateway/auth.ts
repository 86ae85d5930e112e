/**
 * The gateway's API keys (GatewayServerOptions.apiKeys, metricsToken): the bearer check of the API, the dashboard's
 * cookie, the read-only metrics token, and the id a key is accounted under. Keys compare in constant time.
 */
import type { IncomingMessage } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { HttpError } from './openai.ts';

/** Constant-time comparison, so a key cannot be guessed byte by byte from response times. */
function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class ApiKeys {
  private readonly keys: Buffer[];
  private readonly metricsToken: Buffer | undefined;

  constructor(apiKeys: string[] | undefined, metricsToken: string | undefined) {
    this.keys = (apiKeys ?? []).filter((k) => k.length > 0).map((k) => Buffer.from(k));
    this.metricsToken = metricsToken ? Buffer.from(metricsToken) : undefined;
  }

  /** Keys are configured: every endpoint but the health probes needs one. */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** The accounting id of the (already checked) API key of a request; undefined when no keys are configured. */
  keyIdOf(req: IncomingMessage): string | undefined {
    if (this.keys.length === 0) return undefined;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m ? apiKeyIdOf(m[1]!) : undefined;
  }

  /** A key, given as a bearer token (or, for the dashboard, in its cookie); the metrics token on /metrics. */
  readAllowed(req: IncomingMessage, metrics = false): boolean {
    if (this.keys.length === 0) return true;
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (m) {
      if (this.isKey(Buffer.from(m[1]!))) return true;
      if (metrics && this.metricsToken && safeEqual(this.metricsToken, Buffer.from(m[1]!))) return true;
      return false;
    }
    const c = /(?:^|;\s*)dynamollm_key=([^;]+)/.exec(req.headers.cookie ?? '');
    if (!c) return false;
    let v: string;
    try {
      v = decodeURIComponent(c[1]!);
    } catch {
      return false;
    }
    return this.isKey(Buffer.from(v));
  }

  isKey(given: Buffer): boolean {
    return this.keys.some((k) => safeEqual(k, given));
  }

  /** The request's Authorization header names a key (Bearer): null, else the 401 it gets. */
  check(req: IncomingMessage): HttpError | null {
    if (this.keys.length === 0) return null;
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (!m) return new HttpError(401, 'missing API key: send Authorization: Bearer <key>', 'invalid_request_error', 'invalid_api_key');
    // isKey compares in constant time, so a key cannot be guessed byte by byte from response times
    return this.isKey(Buffer.from(m[1]!)) ? null : new HttpError(401, 'invalid API key', 'invalid_request_error', 'invalid_api_key');
  }

}

/**
 * A matcher of the readiness probe's token (GatewayServerOptions.probeToken), compared in constant time; without a
 * token nothing matches (no client may mark a probe).
 */
export function probeTokenMatcher(token: string | undefined): (given: string) => boolean {
  const t = token ? Buffer.from(token) : undefined;
  return (given) => t !== undefined && safeEqual(t, Buffer.from(given));
}

/**
 * The id a request's API key is accounted under (RequestRecord.apiKeyId): `key-` and the first 16 hex digits
 * of the key's SHA-256. It names the key in telemetry and ledgers without revealing it; an operator computes
 * it with `printf %s "$KEY" | sha256sum | cut -c1-16`.
 */
export function apiKeyIdOf(key: string): string {
  return `key-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}
