/**
 * The first token's path does its own work first (docs/DATAPATH.md "The first token's path"): a request started on an
 * admission credit has its engine request written before the credited report goes to its instance (a top-up is a
 * NATS request: it follows the engine request), and the engine call's deadlines and abort link are set after it; the
 * client's first bytes are written before the gateway's bookkeeping of them (the response's count, the TTFT
 * histogram). A client that leaves between the engine request's write and the engine's first bytes still has its leg
 * cancelled: the engine call closed, the instance told of the credited start and then of the Cancel.
 * The gateway's HTTP layer and NatsBackend over an in-memory bus (test/helpers/virtual-bus.ts), the engine and the
 * client on real sockets; the order is read from the sockets' writes (net.Socket.prototype.write) as they are made.
 */
import { createServer, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock, type ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { Cancel, subjects, type InferenceRequest, type LegReport } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import type { RequestRouter } from '../../actors/gateway/router.ts';
import { StreamTimer } from '../../actors/gateway/stream-timer.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const KEY = 'k'.repeat(16);
const closers: (() => unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of closers.splice(0)) await c();
});

/** An engine that answers each completion with two tokens (or, `hang`, answers nothing until its client closes). */
async function engine(hang: boolean): Promise<{ url: string; closed: () => number }> {
  let closed = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.on('close', () => closed++);
      if (hang) return;
      const ev = (text: string, finish: string | null) => `data: ${JSON.stringify({ id: 'cmpl-e', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }] })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(ev(' a', null));
      setTimeout(() => res.end(ev(' b', 'length') + 'data: [DONE]\n\n'), 20);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.closeAllConnections(), () => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, closed: () => closed };
}

/** A gateway whose router starts every request on a credit of instance i0 that asks for a top-up; `log` gets the order of things. */
async function gateway(url: string, log: string[]) {
  const bus = new VirtualBus(systemClock as unknown as ManualClock);
  const router: RequestRouter = {
    creditId: 'gw-t',
    plan: (req: InferenceRequest) => ({ req: { ...req, type: 'SS', slo: { ttftMs: 1000, tbtMs: 100 }, ttftDeadlineMs: req.arrivalMs + 1000 }, pools: ['p'] }),
    pick: (_pool, _req, exclude) => (exclude.has('i0') ? undefined : 'i0'),
    gone: () => undefined,
    holderGone: () => false,
    spendCredit: () => ({ grant: { url, apiKey: KEY }, epoch: 0, topUp: true, joins: true }),
    creditLoan: () => undefined,
  };
  const backend = new NatsBackend(bus as unknown as Bus, { direct: true, router, admitTimeoutMs: 2000, admitAttemptMs: 1000, chunkTimeoutMs: 30_000, clock: systemClock });
  bus.responders.set(subjects.instanceLeg('i0'), (r, answer) => {
    log.push(`report ${(r as LegReport).phase}`);
    answer({ v: 1, ok: true });
  });
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 3, maxModelLen: 100_000 }));
  bus.subscribe(subjects.cancelAll(), Cancel, () => log.push('cancel'));
  const metrics = new TelemetryMetrics();
  const inc = metrics.httpRequests.inc.bind(metrics.httpRequests);
  vi.spyOn(metrics.httpRequests, 'inc').mockImplementation(((...a: Parameters<typeof inc>) => (log.push('count'), inc(...a))) as typeof inc);
  const gw = new GatewayServer({ backend, metrics, port: 0, host: '127.0.0.1', models: ['m'], clock: systemClock });
  const port = await gw.listen();
  closers.push(() => gw.close(0), () => backend.close());
  return port;
}

/** Each socket write of the engine request and of the client's response head, logged as it is made. */
function logWrites(log: string[]): void {
  const write = Reflect.get(net.Socket.prototype, 'write') as net.Socket['write'];
  vi.spyOn(net.Socket.prototype, 'write').mockImplementation(function (this: net.Socket, ...a: Parameters<net.Socket['write']>) {
    const s = typeof a[0] === 'string' ? a[0] : Buffer.isBuffer(a[0]) ? a[0].toString('latin1') : '';
    // the gateway's engine request carries the grant's key (the client's own request to the gateway does not)
    if (s.startsWith('POST /v1/completions') && s.includes(`authorization: Bearer ${KEY}`)) log.push('engine request');
    else if (s.startsWith('HTTP/1.1 200') && s.length > 0) log.push('client head');
    return write.apply(this, a);
  } as net.Socket['write']);
}

const body = JSON.stringify({ model: 'm', prompt: [1, 2, 3], max_tokens: 2, stream: true });

describe('the first token\'s path: its own work first', () => {
  it('a credited request: the engine request before the credited report (a top-up request), the client\'s first bytes before their count and TTFT', async () => {
    const e = await engine(false);
    const log: string[] = [];
    const port = await gateway(e.url, log);
    const onChunk = Reflect.get(StreamTimer.prototype, 'onChunk') as StreamTimer['onChunk'];
    vi.spyOn(StreamTimer.prototype, 'onChunk').mockImplementation(function (this: StreamTimer, c) {
      if (c.tokens > 0) log.push('timed');
      return onChunk.call(this, c);
    });
    logWrites(log);
    const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await r.text();
    expect(r.status, text + ' ' + log.join(',')).toBe(200);
    expect(text).toContain('data: [DONE]');
    // the client's socket write of its head may carry its first event too (one write): what matters is what precedes it
    const first = (k: string) => log.indexOf(k);
    expect(first('engine request')).toBeGreaterThanOrEqual(0);
    expect(first('engine request')).toBeLessThan(first('report credited'));
    expect(first('client head')).toBeGreaterThan(first('engine request'));
    expect(first('client head')).toBeLessThan(first('count'));
    expect(first('client head')).toBeLessThan(first('timed'));
  });

  it('a client that leaves after the engine request was written: the engine call closed, the credited report then the Cancel', async () => {
    const e = await engine(true);
    const log: string[] = [];
    const port = await gateway(e.url, log);
    logWrites(log);
    const ac = new AbortController();
    const res = fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: ac.signal }).catch((err: unknown) => err);
    for (let i = 0; i < 200 && !log.includes('engine request'); i++) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await res;
    for (let i = 0; i < 200 && (e.closed() === 0 || !log.includes('cancel')); i++) await new Promise((r) => setTimeout(r, 5));
    expect(e.closed()).toBe(1);
    expect(log.filter((k) => k !== 'count')).toEqual(['engine request', 'report credited', 'cancel']);
  });
});
