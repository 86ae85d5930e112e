/**
 * The route label of the gateway's HTTP request counter (dynamollm_gateway_http_requests_total): one of the paths the
 * gateway serves (server.ts, its dashboard's files included), else `other`. A closed set: a client that asks for
 * made-up paths (answered 401, 404, 405, or a CORS preflight) adds no series.
 */
const ROUTES: ReadonlySet<string> = new Set([
  '/v1/completions', '/v1/chat/completions', '/v1/models', '/tokenize', '/detokenize',
  '/health', '/healthz', '/livez', '/readyz', '/metrics', '/version', '/api/live',
  '/', '/index.html', '/dashboard.js', '/dashboard.css', '/login',
]);

export function routeLabel(path: string): string {
  return ROUTES.has(path) ? path : 'other';
}
