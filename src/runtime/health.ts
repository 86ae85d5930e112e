/**
 * Liveness and readiness over HTTP for an actor process (Kubernetes probes, load balancers, systemd
 * watchdog scripts): GET /livez answers 200 while the actor is alive (a NATS outage does not make it
 * dead: it reconnects by itself; restarting it would not help), GET /readyz 200 only when it can do its job
 * (Actor.health()). Anything else: 404. Started by `dynamollm actor ... --health HOST:PORT` (or env
 * DYNAMOLLM_HEALTH); the gateway also answers /livez and /readyz on its own port. An actor with metrics of
 * its own (the instance manager) also answers GET /metrics there.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthReport {
  live: boolean;
  ready: boolean;
  [k: string]: unknown;
}

export class HealthAddressError extends Error {
  override name = 'HealthAddressError';
  readonly retryable = false;
}

/** Parses `HOST:PORT` or `PORT` (host 0.0.0.0: probes come from the node, not from loopback). */
export function parseHealthAddress(addr: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new HealthAddressError(`health address must be HOST:PORT or PORT, got '${addr}'`);
  return { host: m[1] ? m[1].replace(/^\[|\]$/g, '') : '0.0.0.0', port };
}

/** Answers a probe path from a report; null for paths that are not probes. */
export function probeResponse(path: string, report: () => HealthReport): { status: number; body: HealthReport } | null {
  if (path !== '/livez' && path !== '/readyz') return null;
  const r = report();
  const ok = path === '/livez' ? r.live : r.ready;
  return { status: ok ? 200 : 503, body: r };
}

/**
 * `metrics`, when given, answers GET /metrics with Prometheus text (the instance manager's own metrics:
 * actors/instance-manager/metrics.ts).
 */
export async function startHealthServer(addr: string, report: () => HealthReport, metrics?: () => Promise<string>): Promise<{ port: number; close(): Promise<void> }> {
  const { host, port } = parseHealthAddress(addr);
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (metrics && path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      metrics().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
      );
      return;
    }
    let r: { status: number; body: HealthReport } | null = null;
    if (req.method === 'GET' || req.method === 'HEAD') {
      try {
        r = probeResponse(path, report);
      } catch (err) {
        r = { status: 503, body: { live: false, ready: false, error: (err as Error).message } };
      }
    }
    if (!r) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found: /livez and /readyz only"}');
      return;
    }
    res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(r.body));
  });
  server.headersTimeout = 5000;
  server.requestTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
