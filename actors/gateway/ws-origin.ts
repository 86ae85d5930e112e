/**
 * Who may open the live telemetry socket (/ws) from a browser. A WebSocket has no CORS, and a browser sends the
 * dashboard's cookie (SameSite=Strict) on an upgrade from any page of the same site, which includes another port and
 * a sibling subdomain; what it always sends too is Origin. So an upgrade with an Origin is admitted only from the
 * gateway's own origin (the host its Host header names, any scheme: a TLS proxy in front keeps the host) or from an
 * origin gateway.allowedOrigins names; its '*' (vLLM's CORS default) names none, as it would hand every page the
 * user's telemetry. An upgrade without Origin is no browser's: it authenticates with its key header as any request.
 */
import type { IncomingMessage } from 'node:http';

/** The answer that refuses an upgrade from a page of another origin. */
export const WS_ORIGIN_REFUSED = 'HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n';

/** Whether a browser page from `origin` may open /ws on the gateway the request's `host` names. */
export function wsOriginAllowed(origin: string | undefined, host: string | undefined, allowedOrigins: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (allowedOrigins.includes(origin)) return true;
  if (host === undefined) return false;
  try {
    const o = new URL(origin);
    // the request's host under the page's scheme: a default port written out or left off compares equal
    return (o.protocol === 'http:' || o.protocol === 'https:') && o.host === new URL(`${o.protocol}//${host}`).host;
  } catch {
    return false; // 'null' (a sandboxed or file: page) or a malformed Origin
  }
}

const WS_UNAUTHORIZED = 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\n\r\n';

/** The answer refusing an upgrade to /ws: 403 from another origin (wsOriginAllowed), 401 without a key; else undefined. */
export function wsUpgradeRefusal(req: IncomingMessage, allowedOrigins: readonly string[] | undefined, authorized: () => boolean): string | undefined {
  if (!wsOriginAllowed(req.headers.origin, req.headers.host, allowedOrigins ?? [])) return WS_ORIGIN_REFUSED;
  return authorized() ? undefined : WS_UNAUTHORIZED;
}
