/**
 * A streaming client that stops reading (actors/gateway/client-flow.ts, docs/DATAPATH.md "A slow client"), over real
 * sockets: the gateway's HTTP layer and NatsBackend (an in-memory bus whose intake grants the leg) streaming from an
 * engine that writes a long generation as fast as it can. While the client reads nothing, the bytes the gateway holds
 * for it stay bounded (its engine reads stop; the engine's own socket holds the rest), and the engine's idle watch
 * (a short bound here) does not take the wait for a stalled engine: once the client reads again every token arrives,
 * once, in order, on the first leg, without an error. A client that never reads again is disconnected after
 * clientStallMs and its request cancelled (its engine connection closed, the Cancel published, no request left in
 * flight) while another client's stream on the same gateway runs to its end: on the JavaScript path and on the
 * native data plane (actors/gateway/data-plane.ts NativeOffer's stall watch, native/relay.c dp_stalled), where the
 * stalled client's bytes wait in the native thread and the kernel, not in the response's buffer.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../protocols/index.ts';
import { CLIENT_HOLD_BYTES } from '../../actors/gateway/client-flow.ts';
import type { NativeDataPlane, SpanEnd } from '../../actors/gateway/data-plane.ts';
import { grantedGateway } from '../helpers/granted-gateway.ts';
import { buildNativePlane } from '../helpers/native-plane.ts';
import { slowClient, sseEvents } from '../helpers/slow-client.ts';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});
let plane: NativeDataPlane;
beforeAll(async () => {
  plane = await buildNativePlane();
});

/** tokens of the generation, about 13 MB of events: far more than loopback's socket buffers to the client hold (some MB) */
const N = 40_000;
const PAD = ' 0123456789abcdef'.repeat(10);
const tok = (i: number) => `${PAD}${i}`;

/** What the engine saw of a request: `closed`, its response closed before its end; `connClosed`, its connection closed; `res`, its response. */
type Seen = { prompt: string; closed: boolean; ended: boolean; connClosed: boolean; res: ServerResponse };

/**
 * An engine writing max_tokens text events (vLLM's completion events), the first alone, then the rest in bursts (150
 * events, about 50 KB, per write: each an HTTP chunk the native thread carries), then the finish and [DONE]; `seen`
 * its first request's view of it, `all` every request's.
 */
async function engine() {
  const all: Seen[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { prompt: string; max_tokens: number };
      const n = body.max_tokens;
      const seen: Seen = { prompt: body.prompt, closed: false, ended: false, connClosed: false, res };
      all.push(seen);
      // the gateway's connection to the engine closed (a stream read to its end leaves it kept alive in the gateway's pool)
      req.socket.on('close', () => (seen.connClosed = true));
      const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.on('close', () => (seen.closed = !seen.ended));
      let i = 0;
      const burst = () => {
        if (res.destroyed) return;
        let s = '';
        for (const end = Math.min(n, i + 150); i < end; i++) s += ev({ choices: [{ index: 0, text: tok(i), logprobs: null, finish_reason: null, stop_reason: null }] });
        res.write(s);
        if (i < n) return void setImmediate(burst);
        res.write(ev({ choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }] }));
        res.write(ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: n, total_tokens: 3 + n, energy_joules: 2.5, energy_source: 'modelled' } }));
        seen.ended = true;
        res.end('data: [DONE]\n\n');
      };
      // the first token alone (the engine's response at a chunk boundary after it: where a stream may go native)
      res.write(ev({ choices: [{ index: 0, text: tok(i++), logprobs: null, finish_reason: null, stop_reason: null }] }));
      setTimeout(burst, 20);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())), () => server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, all, get seen(): Seen { return all[0]!; } };
}

/** A gateway whose legs are granted `url`, its engine idle bound between tokens 1 s (above a loaded test host's event-loop delays), and its client sockets; `native`: on the native data plane. */
const gateway = (url: string, clientStallMs: number, native = false) =>
  grantedGateway([url], {
    closers,
    backend: { engineIdle: { settings: { firstTokenMultiple: 1, firstTokenFloorMs: 5000, nextTokenMultiple: 1, nextTokenFloorMs: 1000 }, fallback: { ttftMs: 100, tbtMs: 10 } } },
    gateway: { clientStallMs, limits: { maxTokensLimit: 1_000_000 }, ...(native ? { dataPlane: plane } : {}) },
    tokenize: { count: 3, maxModelLen: 1_000_000 },
  });

const bodyOf = (n: number, prompt = 'a slow client', maxTokens = N) => JSON.stringify({ model: 'm', prompt, max_tokens: maxTokens, ignore_eos: true, stream: true, n });

/** A client that sends the request (`n` choices) and reads nothing (its socket paused) until `read()`. */
const client = (port: number, n = 1, prompt?: string, maxTokens?: number) => slowClient(port, bodyOf(n, prompt, maxTokens));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a client that stops reading', () => {
  // one choice: the engine's reads are pushed to the client and paused; two: each choice's stream is pulled, and waits
  it.each([1, 2])('holds the gateway to a bounded backlog, then gets every token once it reads again: no stall, no migration (n = %i)', async (n) => {
    const e = await engine();
    const g = await gateway(e.url, 10_000);
    const c = client(g.port, n);
    // the client reads nothing for 3 s: three times the engine's idle bound
    let most = 0;
    for (let t = 0; t < 300; t++) {
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
    expect(evs.find((x) => x.error)).toBeUndefined();
    const whole = Array.from({ length: N }, (_, i) => tok(i)).join('');
    for (let i = 0; i < n; i++) {
      const mine = evs.filter((x) => x.choices[0]?.index === i);
      expect(mine.map((x) => x.choices[0]!.text).join('')).toBe(whole);
      expect(mine.at(-1)!.choices[0]!.finish_reason).toBe('length');
    }
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(g.legs).toHaveLength(n);
    expect(e.seen.closed).toBe(false);
  }, 60_000);

  it.each(['js', 'native'] as const)('disconnects a client that reads nothing for clientStallMs and cancels its request; another client streams on (%s)', async (mode) => {
    const e = await engine();
    const g = await gateway(e.url, 400, mode === 'native');
    const spans = plane.spans;
    // the spans the gateway took back from the native thread
    const taken: SpanEnd[] = [];
    const remove = plane.remove.bind(plane);
    plane.remove = (h) => {
      const x = remove(h);
      if (x) taken.push(x);
      return x;
    };
    closers.push(() => (plane.remove = remove));
    const t0 = performance.now();
    client(g.port);
    // another client, reading, once the first one's engine is streaming
    let other: ReturnType<typeof client> | undefined;
    let backlog = 0;
    // (the client, paused, does not see its socket's end: the gateway's side of it does)
    while (!g.clients[0]?.destroyed && performance.now() - t0 < 15_000) {
      await sleep(10);
      if (!other && e.all.length === 1) (other = client(g.port, 1, 'a reading client', 4000)).read();
      backlog = Math.max(backlog, e.all[0]?.res.writableLength ?? 0);
    }
    const ms = performance.now() - t0;
    // past the stall bound, and long before the request's deadline (600 s)
    expect(ms).toBeGreaterThan(400);
    expect(ms).toBeLessThan(10_000);
    // the gateway stopped reading the stalled stream's engine: its bytes waited at the engine
    expect(backlog).toBeGreaterThan(0);
    // the other client's stream ran to its end: every token once, in order
    await other!.ended;
    const body = other!.body();
    const evs = sseEvents(body);
    expect(evs.map((x) => x.choices[0]?.text ?? '').join('')).toBe(Array.from({ length: 4000 }, (_, i) => tok(i)).join(''));
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    // the stalled request cancelled: its engine connection closed, the Cancel published, its in-flight slot given back
    for (let t = 0; t < 100 && !e.seen.connClosed; t++) await sleep(10);
    expect(e.seen.connClosed).toBe(true);
    expect(e.seen.prompt).toBe('a slow client');
    const cancel = g.published.find((p) => p.subject === subjects.cancel(g.legs[0]!.id));
    expect(cancel?.msg).toMatchObject({ reason: 'client disconnected' });
    expect(g.gw.inflightCount).toBe(0);
    // the other one's leg ended whole
    for (let t = 0; t < 100 && !legEnd(g.published, 'i1'); t++) await sleep(10);
    expect(legEnd(g.published, 'i1')).toMatchObject({ outcome: 'ok', completionTokens: 4000 });
    expect(legEnd(g.published, 'i0')).toBeUndefined();
    expect(g.legs).toHaveLength(2);
    if (mode === 'js') return;
    // both streams went native, and the stalled one was taken back from the native thread at the cut, which held
    // one engine read's events for it (the rest wait in the kernel's buffers and at the engine)
    expect(plane.spans - spans).toBeGreaterThanOrEqual(2);
    const cut = taken.find((x) => x.why === 'removed');
    expect(cut).toBeDefined();
    expect(cut!.events).toBeGreaterThan(0);
    expect(cut!.events).toBeLessThan(N / 2);
    expect(cut!.pending.length).toBeGreaterThan(0);
    expect(cut!.pending.length + cut!.rest.length).toBeLessThan(256 * 1024);
    expect(plane.active).toBe(0);
  }, 60_000);
});

/** a leg's end report (published a few ms after its end) */
const legEnd = (published: { subject: string; msg: unknown }[], instance: string) =>
  published.find((p) => p.subject === subjects.instanceLeg(instance) && (p.msg as { phase: string }).phase === 'end')?.msg;
