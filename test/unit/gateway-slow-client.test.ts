/**
 * A streaming client that stops reading (actors/gateway/client-flow.ts, docs/DATAPATH.md "A slow client"), over real
 * sockets: the gateway's HTTP layer and NatsBackend (an in-memory bus whose intake grants the leg) streaming from an
 * engine that writes a long generation as fast as it can. While the client reads nothing, the bytes the gateway holds
 * for it stay bounded (its engine reads stop; the engine's own socket holds the rest), and the engine's idle watch
 * (a short bound here) does not take the wait for a stalled engine: once the client reads again every token arrives,
 * once, in order, on the first leg, without an error. A client that never reads again is disconnected after
 * clientStallMs and its request cancelled (its engine connection closed, the Cancel published).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock, type ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import { CLIENT_HOLD_BYTES } from '../../actors/gateway/client-flow.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import { slowClient, sseEvents } from '../helpers/slow-client.ts';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** tokens of the generation, about 13 MB of events: far more than loopback's socket buffers to the client hold (some MB) */
const N = 40_000;
const PAD = ' 0123456789abcdef'.repeat(10);
const tok = (i: number) => `${PAD}${i}`;

/** An engine writing N text events (vLLM's completion events) in bursts, then the finish and [DONE]; `closed`: the response closed before its end; `connClosed`: a connection closed. */
async function engine() {
  const seen = { closed: false, ended: false, connClosed: false };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.on('close', () => (seen.closed = !seen.ended));
      let i = 0;
      const burst = () => {
        if (res.destroyed) return;
        let s = '';
        for (const end = Math.min(N, i + 500); i < end; i++) s += ev({ choices: [{ index: 0, text: tok(i), logprobs: null, finish_reason: null, stop_reason: null }] });
        res.write(s);
        if (i < N) return void setImmediate(burst);
        res.write(ev({ choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }] }));
        res.write(ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: N, total_tokens: 3 + N, energy_joules: 2.5, energy_source: 'modelled' } }));
        seen.ended = true;
        res.end('data: [DONE]\n\n');
      };
      burst();
    });
  });
  // the gateway's connection to the engine closed (a stream read to its end leaves it kept alive in the gateway's pool)
  server.on('connection', (s: Socket) => s.on('close', () => (seen.connClosed = true)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())), () => server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** A gateway whose legs are granted `url`, its engine idle bound between tokens 300 ms, and its client sockets. */
async function gateway(url: string, clientStallMs: number) {
  const bus = new VirtualBus(systemClock as unknown as ManualClock);
  const backend = new NatsBackend(bus as unknown as Bus, {
    direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock: systemClock,
    engineIdle: { settings: { firstTokenMultiple: 1, firstTokenFloorMs: 5000, nextTokenMultiple: 1, nextTokenFloorMs: 300 }, fallback: { ttftMs: 100, tbtMs: 10 } },
  });
  const legs: InferenceRequest[] = [];
  const published: { subject: string; msg: unknown }[] = [];
  const pub = bus.publish.bind(bus);
  bus.publish = (subject, codec, msg) => {
    published.push({ subject, msg });
    pub(subject, codec, msg);
  };
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const leg = m as InferenceRequest;
    legs.push(leg);
    reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: `i${legs.length - 1}`, type: 'SS' });
    bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: `i${legs.length - 1}`, pool: 'p', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
  });
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 3, maxModelLen: 1_000_000 }));
  const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'], clock: systemClock, clientStallMs, limits: { maxTokensLimit: 1_000_000 } });
  const clients: Socket[] = [];
  (gw as unknown as { server: Server }).server.on('connection', (s: Socket) => clients.push(s));
  const port = await gw.listen();
  closers.push(() => gw.close(100), () => backend.close());
  return { port, legs, published, clients };
}

const bodyOf = (n: number) => JSON.stringify({ model: 'm', prompt: 'a slow client', max_tokens: N, ignore_eos: true, stream: true, n });

/** A client that sends the request (`n` choices) and reads nothing (its socket paused) until `read()`. */
const client = (port: number, n = 1) => slowClient(port, bodyOf(n));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a client that stops reading', () => {
  // one choice: the engine's reads are pushed to the client and paused; two: each choice's stream is pulled, and waits
  it.each([1, 2])('holds the gateway to a bounded backlog, then gets every token once it reads again: no stall, no migration (n = %i)', async (n) => {
    const e = await engine();
    const g = await gateway(e.url, 10_000);
    const c = client(g.port, n);
    // the client reads nothing for 1.5 s: five times the engine's idle bound
    let most = 0;
    for (let t = 0; t < 150; t++) {
      await sleep(10);
      for (const s of g.clients) most = Math.max(most, s.writableLength);
    }
    expect(g.clients.length).toBe(1);
    expect(most).toBeGreaterThan(0);
    // the bound and one engine read's events past it (a read is at most 64 KiB of the engine's bytes)
    expect(most).toBeLessThan(CLIENT_HOLD_BYTES + 256 * 1024);
    c.read();
    await c.ended;
    const body = c.body();
    const evs = sseEvents(body);
    expect(evs.some((x) => x.error)).toBe(false);
    const whole = Array.from({ length: N }, (_, i) => tok(i)).join('');
    for (let i = 0; i < n; i++) {
      const mine = evs.filter((x) => x.choices[0]?.index === i);
      expect(mine.map((x) => x.choices[0]!.text).join('')).toBe(whole);
      expect(mine.at(-1)!.choices[0]!.finish_reason).toBe('length');
    }
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(g.legs).toHaveLength(n);
    expect(e.seen.closed).toBe(false);
  }, 30_000);

  it('disconnects a client that reads nothing for clientStallMs and cancels its request', async () => {
    const e = await engine();
    const g = await gateway(e.url, 400);
    client(g.port);
    const t0 = performance.now();
    // (the client, paused, does not see its socket's end: the gateway's side of it does)
    while (!g.clients[0]?.destroyed && performance.now() - t0 < 10_000) await sleep(10);
    const ms = performance.now() - t0;
    // past the stall bound, and long before the generation's end or any keep-alive timeout
    expect(ms).toBeGreaterThan(400);
    expect(ms).toBeLessThan(5000);
    for (let t = 0; t < 100 && !e.seen.connClosed; t++) await sleep(10);
    expect(e.seen.connClosed).toBe(true);
    const cancel = g.published.find((p) => p.subject === subjects.cancel(g.legs[0]!.id));
    expect(cancel?.msg).toMatchObject({ reason: 'client disconnected' });
    expect(g.legs).toHaveLength(1);
  }, 30_000);
});
