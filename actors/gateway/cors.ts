/**
 * CORS as vLLM's OpenAI server answers it (FastAPI's CORSMiddleware, from Starlette, with vLLM's --allowed-origins,
 * --allowed-methods, --allowed-headers, --allow-credentials; defaults ["*"], ["*"], ["*"], false): a preflight
 * (OPTIONS with Origin and Access-Control-Request-Method) is answered at once, without authentication (a browser sends
 * no Authorization on it), 200 "OK" or 400 "Disallowed CORS origin, method, headers"; every other request with an
 * Origin goes on as it is (authenticated as any) and its answer carries the allow headers. Pure: headers in, headers out.
 */

/** The gateway's CORS settings (gateway.allowedOrigins, allowedMethods, allowedHeaders, allowCredentials). */
export interface CorsSettings {
  /** origins allowed ('*': any); vLLM's default ['*']. */
  allowedOrigins: readonly string[];
  /** methods allowed ('*': DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT); default ['*']. */
  allowedMethods: readonly string[];
  /** request headers allowed besides the CORS-safelisted ones ('*': any); default ['*']. */
  allowedHeaders: readonly string[];
  /** Access-Control-Allow-Credentials: true (and the origin named, never '*', on preflights); default false. */
  allowCredentials: boolean;
}

export const DEFAULT_CORS: CorsSettings = { allowedOrigins: ['*'], allowedMethods: ['*'], allowedHeaders: ['*'], allowCredentials: false };

const ALL_METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT'];
const SAFELISTED_HEADERS = ['Accept', 'Accept-Language', 'Content-Language', 'Content-Type'];
/** how long a browser may keep a preflight's answer, s (Starlette's default). */
const MAX_AGE_S = 600;

/** A preflight's answer: status, headers, body. */
export interface CorsPreflight {
  status: 200 | 400;
  headers: Record<string, string>;
  body: string;
}

/** The settings compiled once: what every request's check reads. */
export class Cors {
  private readonly allOrigins: boolean;
  private readonly allHeaders: boolean;
  private readonly explicitOrigin: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly methods: ReadonlySet<string>;
  private readonly headers: ReadonlySet<string>;
  /** the headers of every answer to a request with an Origin. */
  private readonly simple: Record<string, string> = {};
  private readonly preflightBase: Record<string, string> = {};

  constructor(s: CorsSettings = DEFAULT_CORS) {
    const methods = s.allowedMethods.includes('*') ? ALL_METHODS : [...s.allowedMethods];
    this.allOrigins = s.allowedOrigins.includes('*');
    this.allHeaders = s.allowedHeaders.includes('*');
    this.explicitOrigin = !this.allOrigins || s.allowCredentials;
    this.origins = new Set(s.allowedOrigins);
    this.methods = new Set(methods);
    const headers = [...new Set([...SAFELISTED_HEADERS, ...s.allowedHeaders])].sort();
    this.headers = new Set(headers.map((h) => h.toLowerCase()));
    if (this.allOrigins) this.simple['access-control-allow-origin'] = '*';
    if (s.allowCredentials) this.simple['access-control-allow-credentials'] = 'true';
    if (this.explicitOrigin) this.preflightBase.vary = 'Origin';
    else this.preflightBase['access-control-allow-origin'] = '*';
    this.preflightBase['access-control-allow-methods'] = methods.join(', ');
    this.preflightBase['access-control-max-age'] = String(MAX_AGE_S);
    if (!this.allHeaders) this.preflightBase['access-control-allow-headers'] = headers.join(', ');
    if (s.allowCredentials) this.preflightBase['access-control-allow-credentials'] = 'true';
  }

  allowsOrigin(origin: string): boolean {
    return this.allOrigins || this.origins.has(origin);
  }

  /** The answer to a preflight from `origin` asking for `method` and (Access-Control-Request-Headers) `requested`. */
  preflight(origin: string, method: string, requested: string | undefined): CorsPreflight {
    const headers = { ...this.preflightBase };
    const failures: string[] = [];
    if (this.allowsOrigin(origin)) {
      if (this.explicitOrigin) headers['access-control-allow-origin'] = origin;
    } else failures.push('origin');
    if (!this.methods.has(method)) failures.push('method');
    if (this.allHeaders && requested !== undefined) headers['access-control-allow-headers'] = requested;
    else if (requested !== undefined && requested.split(',').some((h) => !this.headers.has(h.trim().toLowerCase()))) failures.push('headers');
    return failures.length > 0 ? { status: 400, headers, body: `Disallowed CORS ${failures.join(', ')}` } : { status: 200, headers, body: 'OK' };
  }

  /** The headers an answer to a request from `origin` carries (`cookie`: the request has a Cookie header). */
  answerHeaders(origin: string, cookie: boolean): Record<string, string> {
    // an allowed origin is named rather than '*' when only some are allowed, or the request has cookies
    if ((this.allOrigins && cookie) || (!this.allOrigins && this.origins.has(origin))) return { ...this.simple, 'access-control-allow-origin': origin, vary: 'Origin' };
    return this.simple;
  }
}
