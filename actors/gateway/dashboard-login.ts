/**
 * The dashboard's login, with API keys set: the key is posted once to POST /login, as the form the gateway answers an
 * unauthenticated GET / with (application/x-www-form-urlencoded, field `key`) or as JSON {"key": "..."}; a valid key
 * comes back as the HttpOnly cookie `dynamollm_key` (SameSite=Strict, Path=/) that opens /, its assets, /api/live and
 * /ws. A key in the URL (GET /?key=...) is refused with 400: it would stay in the browser's history and in proxy and
 * access logs. The cookie carries Secure when the browser came over https (forwarded.ts viaHttps, gateway.cookieSecure).
 * A login from a page of another origin (its Origin header; ws-origin.ts) is refused with 403. The form's page sets no
 * referrer policy: under `no-referrer` a browser posts the form with `Origin: null`, which that check refuses.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BlockList } from 'node:net';
import { HttpError } from './openai.ts';
import { readBody } from './body.ts';
import { viaHttps, type CookieSecure } from './forwarded.ts';
export { trustedProxies } from './forwarded.ts';
import { wsOriginAllowed } from './ws-origin.ts';

export const LOGIN_PATH = '/login';
/** a login body's limit, bytes: a key and a form's framing. */
export const LOGIN_BODY_LIMIT = 4096;

export interface LoginSettings {
  /** API keys are set (without them the dashboard needs no login). */
  enabled: boolean;
  isKey(given: Buffer): boolean;
  cookieSecure: CookieSecure;
  trusted: BlockList;
  allowedOrigins: readonly string[];
}

/** An answer to write as is. */
export interface LoginAnswer {
  status: number;
  headers: Record<string, string | number>;
  body: string;
}

/** Writes `a`; its status. */
export function writeAnswer(res: ServerResponse, a: LoginAnswer): number {
  res.writeHead(a.status, a.headers).end(a.body);
  return a.status;
}

/** The cookie a valid key becomes. */
export function loginCookie(key: string, secure: boolean): string {
  return `dynamollm_key=${encodeURIComponent(key)}; HttpOnly; SameSite=Strict; Path=/${secure ? '; Secure' : ''}`;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The login form (an unauthenticated GET /, GET /login, a refused form login). */
export function loginPage(status: number, message?: string): LoginAnswer {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dynamollm: log in</title></head>
<body><h1>dynamollm</h1>${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="${LOGIN_PATH}"><label>API key <input type="password" name="key" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form></body></html>
`;
  return { status, headers: { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' }, body };
}

/** GET /?key=...: the 400 a key in the URL gets. */
export function keyInUrlError(): HttpError {
  return new HttpError(400, `an API key in the URL is refused (it stays in the browser's history and in access logs): log in with the form at / (POST ${LOGIN_PATH})`, 'invalid_request_error', 'key_in_url');
}

/** The key a login body carries, by its content type; a 4xx HttpError for any other body. */
function keyOf(req: IncomingMessage, body: Buffer): { key: string; form: boolean } {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    const key = new URLSearchParams(body.toString('utf8')).get('key');
    if (!key) throw new HttpError(400, 'the login form carries no `key`', 'invalid_request_error', 'invalid_request');
    return { key, form: true };
  }
  if (type === 'application/json') {
    let v: unknown;
    try {
      v = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError(400, 'the login body is not valid JSON', 'invalid_request_error', 'invalid_request');
    }
    const key = (v as { key?: unknown } | null)?.key;
    if (typeof key !== 'string' || key.length === 0) throw new HttpError(400, 'the login body needs {"key": "<API key>"}', 'invalid_request_error', 'invalid_request');
    return { key, form: false };
  }
  throw new HttpError(415, 'a login is application/x-www-form-urlencoded (field key) or application/json ({"key": ...})', 'invalid_request_error', 'unsupported_media_type');
}

/**
 * /login: GET answers the form; POST checks the key and answers 303 to / (a form) or 204 (JSON) with the cookie, or
 * the form again with 401 (a form) or throws the 401 (JSON). Throws an HttpError for a refused request.
 */
export async function dashboardLogin(req: IncomingMessage, s: LoginSettings): Promise<LoginAnswer> {
  const method = req.method ?? 'GET';
  if (method === 'GET') return loginPage(200);
  if (method !== 'POST') throw new HttpError(405, `method ${method} not allowed on ${LOGIN_PATH}`);
  if (!wsOriginAllowed(req.headers.origin, req.headers.host, s.allowedOrigins)) {
    throw new HttpError(403, 'a login from a page of another origin is refused', 'invalid_request_error', 'origin_not_allowed');
  }
  const { key, form } = keyOf(req, await readBody(req, LOGIN_BODY_LIMIT));
  if (s.enabled && !s.isKey(Buffer.from(key))) {
    if (form) return loginPage(401, 'invalid API key');
    throw new HttpError(401, 'invalid API key', 'invalid_request_error', 'invalid_api_key');
  }
  const headers: Record<string, string> = { 'cache-control': 'no-store' };
  if (s.enabled) headers['set-cookie'] = loginCookie(key, viaHttps(req, s.cookieSecure, s.trusted));
  if (form) return { status: 303, headers: { ...headers, location: '/', 'content-length': 0 }, body: '' };
  return { status: 204, headers, body: '' };
}
