/**
 * The gateway's native data plane (actors/gateway/data-plane.ts, native/relay.c) on real sockets: the gateway's HTTP
 * layer and NatsBackend (an in-memory bus whose intake grants the leg) streaming from the emulator stepping in wall
 * time, one event per read, with the library built here and without it. Checks: the client's bytes through the native
 * plane equal the JavaScript path's (the request id and `created` aside), the end (usage, modelled energy, the leg's
 * end report with its token and TBT counts) is JavaScript's, a client gone and a JavaScript-side cancel end the span,
 * an engine that dies mid-span continues on another engine with every token once, an engine silent after the hand-off
 * ends its leg at the idle bound and continues, a client that reads nothing past the idle bound keeps its one leg, a
 * stream with fewer than NATIVE_SPAN_MIN_LEFT tokens left after its first event is not handed over, the
 * fallback without the library, and one plane per process (a gateway started again is given the plane already loaded).
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { TokenChunk, subjects } from '../../protocols/index.ts';
import { NativeDataPlane, loadDataPlane } from '../../actors/gateway/data-plane.ts';
import { NATIVE_SPAN_MIN_LEFT } from '../../src/policy/span-offer.ts';
import { grantedGateway, type GrantedGatewayOptions } from '../helpers/granted-gateway.ts';
import { dechunk } from '../helpers/slow-client.ts';

let dir = '';
let plane: NativeDataPlane;
let emu: EmulatorServer;
let emuUrl = '';
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dp-'));
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-pthread', '-o', join(dir, 'relay.so'), 'native/relay.c']);
  const p = await NativeDataPlane.load(join(dir, 'relay.so'));
  if (!(p instanceof NativeDataPlane)) throw new Error(p.why);
  plane = p;
  emu = new EmulatorServer({ perf: createPerfModel('llama3.1-8b', 'h100'), tp: 1, servedModelName: 'm', seed: 7 });
  emuUrl = `http://127.0.0.1:${await emu.listen(0)}`;
});
afterAll(async () => {
  for (const c of closers.splice(0)) await c();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A gateway (HTTP layer + NatsBackend over an in-memory bus) whose legs are granted `engines[k]` for the k-th leg. */
const gateway = (native: boolean, engines: string[], backend: GrantedGatewayOptions['backend'] = {}) =>
  grantedGateway(engines, { closers, backend, ...(native ? { gateway: { dataPlane: plane } } : {}) });

/** the emulator's requests running (its vllm:num_requests_running) */
const running = () => Number(/vllm:num_requests_running\{[^}]*\} ([\d.]+)/.exec(emu.metricsText())?.[1] ?? NaN);

const request = (maxTokens: number, prompt = 'the native plane', continuous = false) => JSON.stringify({ model: 'm', prompt, max_tokens: maxTokens, ignore_eos: true, seed: 11, stream: true, stream_options: { include_usage: true, ...(continuous ? { continuous_usage_stats: true } : {}) } });

/**
 * The de-chunked response body of a streamed completion, read over a raw socket (`stopAfter`: close after that many
 * text events; `pauseMs`: no read of the socket for that long after its first bytes).
 */
async function stream(port: number, body: string, stopAfter?: number, path = '/v1/completions', pauseMs?: number, headers = ''): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let raw = Buffer.alloc(0);
    s.on('connect', () => s.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n${headers}\r\n${body}`));
    const done = () => {
      const at = raw.indexOf('\r\n\r\n');
      resolve({ head: raw.subarray(0, at).toString(), body: dechunk(raw.subarray(at + 4)) });
    };
    s.on('data', (d: Buffer) => {
      if (pauseMs !== undefined && raw.length === 0) {
        // the kernel's reads stopped, the stream told nothing (it would start them again to fill its buffer)
        const h = (s as unknown as { _handle: { readStop(): number; readStart(): number } })._handle;
        h.readStop();
        setTimeout(() => h.readStart(), pauseMs);
      }
      raw = Buffer.concat([raw, d]);
      // the response's end (its terminating chunk), or enough text events for a client that leaves
      if ((stopAfter !== undefined && (raw.toString().match(/"text":/g) ?? []).length >= stopAfter) || raw.subarray(-5).toString() === '0\r\n\r\n') {
        s.destroy();
        done();
      }
    });
    s.on('end', done);
    s.on('error', reject);
  });
}

type Ev = { id?: string; created?: number; choices: { text: string; finish_reason: string | null }[]; usage?: { completion_tokens: number; prompt_tokens: number; energy_joules?: number }; error?: { code: string } };
const events = (body: string): Ev[] => body.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)) as Ev);
const textOf = (body: string) => events(body).map((e) => e.choices[0]?.text ?? '').join('');
/** the bytes with the request's id and created set to fixed values: what legitimately differs between two requests */
const normal = (body: string) => body.replace(/"id":"cmpl-[^"]+"/g, '"id":"ID"').replace(/"created":\d+/g, '"created":0').replace(/"energy_joules":[\d.e-]+/g, '"energy_joules":E');

/** texts JSON.stringify escapes in every form it uses, multi-byte characters, and one event escaped as JSON.stringify does not (`\/`) */
const TEXTS = [' one', ' "two"', ' back\\slash', '\n\tthree', ' é😀', ' \u0001\u001f', ' \u2028', ' a/b', ' four', ' five', ' six', ' seven', ' eight', ' nine', ' ten'];

/**
 * An engine streaming `texts` as vLLM's and the emulator's events (with the usage so far when asked), one event per
 * write 4 ms apart, then the finish, the usage with a modelled energy and [DONE]; `cutAfter`: the connection destroyed
 * after that many text events; `hangAfter`: nothing more sent after that many, the connection left open. Records each
 * request's body, parsed and as sent.
 */
async function scripted(texts: string[], cutAfter?: number, hangAfter?: number) {
  const bodies: Record<string, unknown>[] = [];
  const raws: string[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { prompt: string; stream_options?: { continuous_usage_stats?: boolean } };
      bodies.push(body);
      raws.push(raw);
      const every = body.stream_options?.continuous_usage_stats === true;
      const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
      const usage = (n: number) => (every ? { usage: { prompt_tokens: 3, total_tokens: 3 + n, completion_tokens: n } } : {});
      const out = texts.map((t, i) => {
        const e = ev({ choices: [{ index: 0, text: t, logprobs: null, finish_reason: null, stop_reason: null }], ...usage(i + 1) });
        return t === ' a/b' ? e.replace('a/b', 'a\\/b') : e;
      });
      out.push(ev({ choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }], ...usage(texts.length) }));
      out.push(ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: texts.length, total_tokens: 3 + texts.length, energy_joules: 2.5, energy_source: 'modelled' } }), 'data: [DONE]\n\n');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const next = () => {
        if (cutAfter !== undefined && i === cutAfter) return void res.socket?.destroy();
        if (i === hangAfter) return;
        if (i === out.length) return void res.end();
        res.write(out[i++]);
        setTimeout(next, 4);
      };
      next();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, raws };
}

/** the first leg's end report (held a few ms before it is published) */
async function endReport(published: { subject: string; msg: unknown }[], instance = 'i0'): Promise<unknown> {
  for (let i = 0; i < 100; i++) {
    const m = published.find((p) => p.subject === subjects.instanceLeg(instance) && (p.msg as { phase: string }).phase === 'end');
    if (m) return m.msg;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

describe('the native data plane', () => {
  it('sends the bytes the JavaScript path sends, and the end (usage, energy, the leg report) is JavaScript\'s', async () => {
    const js = await gateway(false, [emuUrl]);
    const nat = await gateway(true, [emuUrl]);
    const spans = plane.spans, carried = plane.carried;
    const a = await stream(js.port, request(40));
    const b = await stream(nat.port, request(40));
    expect(plane.spans).toBeGreaterThan(spans);
    // most of the 40 tokens went native (the first and the last event are JavaScript's)
    expect(plane.carried - carried).toBeGreaterThanOrEqual(30);
    expect(normal(b.body)).toBe(normal(a.body));
    expect(b.body.endsWith('data: [DONE]\n\n')).toBe(true);
    const usage = events(b.body).at(-1)!.usage!;
    expect(usage.completion_tokens).toBe(40);
    expect(usage.energy_joules).toBeGreaterThan(0);
    // the leg's end report counts every token and a gap between each two
    const end = (await endReport(nat.published)) as { completionTokens: number; tbtN: number; tbtSumMs: number; outcome: string };
    expect(end).toMatchObject({ outcome: 'ok', completionTokens: 40, tbtN: 39 });
    expect(end.tbtSumMs).toBeGreaterThan(0);
  });

  it('keeps a stream with fewer than NATIVE_SPAN_MIN_LEFT tokens left on JavaScript, and offers one with that many', async () => {
    // one event per engine write: after the first token's read the stream is at a chunk boundary with max_tokens - 1 left
    const short = TEXTS.slice(8, 8 + NATIVE_SPAN_MIN_LEFT);
    const engine = await scripted(short);
    const js = await gateway(false, [engine.url]);
    const nat = await gateway(true, [engine.url]);
    const spans = plane.spans;
    const a = await stream(js.port, request(short.length));
    const b = await stream(nat.port, request(short.length));
    expect(plane.spans).toBe(spans);
    expect(normal(b.body)).toBe(normal(a.body));
    expect(textOf(b.body)).toBe(short.join(''));
    const longer = TEXTS.slice(8, 9 + NATIVE_SPAN_MIN_LEFT);
    const c = await stream((await gateway(true, [(await scripted(longer)).url])).port, request(longer.length));
    expect(plane.spans).toBeGreaterThan(spans);
    expect(textOf(c.body)).toBe(longer.join(''));
  });

  it("with the client's usage on every event (continuous_usage_stats): the same bytes, its counts native", async () => {
    const js = await gateway(false, [emuUrl]);
    const nat = await gateway(true, [emuUrl]);
    const carried = plane.carried;
    const a = await stream(js.port, request(40, 'the native plane', true));
    const b = await stream(nat.port, request(40, 'the native plane', true));
    expect(plane.carried - carried).toBeGreaterThanOrEqual(30);
    expect(normal(b.body)).toBe(normal(a.body));
    expect(events(b.body).filter((e) => e.choices[0]?.text).map((e) => e.usage!.completion_tokens)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // vLLM's usage so far on a completion chunk (exclude_unset False): its counts in its order, prompt_tokens_details null
    const p = events(b.body)[0]!.usage!.prompt_tokens;
    const usages = [...b.body.matchAll(/"usage":(\{[^}]*\})\}\n\n/g)].map((m) => m[1]).slice(0, 40);
    expect(usages).toEqual(Array.from({ length: 40 }, (_, i) => `{"prompt_tokens":${p},"total_tokens":${p + i + 1},"completion_tokens":${i + 1},"prompt_tokens_details":null}`));
  });

  it('a chat stream: the same bytes (its role event and deltas), its content native', async () => {
    const js = await gateway(false, [emuUrl]);
    const nat = await gateway(true, [emuUrl]);
    const carried = plane.carried;
    const chat = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'the native plane' }], max_tokens: 40, ignore_eos: true, seed: 11, stream: true, stream_options: { include_usage: true } });
    const a = await stream(js.port, chat, undefined, '/v1/chat/completions');
    const b = await stream(nat.port, chat, undefined, '/v1/chat/completions');
    expect(plane.carried - carried).toBeGreaterThanOrEqual(30);
    const norm = (x: string) => normal(x).replace(/"id":"chatcmpl-[^"]+"/g, '"id":"ID"');
    expect(norm(b.body)).toBe(norm(a.body));
    expect(b.body).toContain('"delta":{"content":');
  });

  it("sends the engine a token-id prompt's body as JSON.stringify writes it, whether the client's text of it is kept or not", async () => {
    const engine = await scripted(TEXTS.slice(-3));
    const nat = await gateway(true, [engine.url]);
    const ids = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 50_000);
    const kept = request(3, ids as unknown as string, true); // the replay's shape: the ids' text kept from the client's body
    const spaced = kept.replace(/,/g, ', '); // the same values in a text JSON.stringify would not write: parsed again
    await stream(nat.port, kept);
    await stream(nat.port, spaced);
    expect(engine.raws).toHaveLength(2);
    expect(engine.raws[0]).toBe(JSON.stringify(JSON.parse(engine.raws[0]!)));
    expect(engine.raws[0]).toContain(`"prompt":${JSON.stringify(ids)}`);
    expect(engine.raws[1]).toBe(engine.raws[0]);
  });

  it('passes escapes and multi-byte text as the JavaScript path frames them, and gives back an event it does not pass', async () => {
    const engine = await scripted(TEXTS);
    const js = await gateway(false, [engine.url]);
    const nat = await gateway(true, [engine.url]);
    const spans = plane.spans, carried = plane.carried;
    const a = await stream(js.port, request(TEXTS.length));
    const b = await stream(nat.port, request(TEXTS.length));
    // the `\/` event went back to JavaScript, and the stream was handed over again after it
    expect(plane.spans - spans).toBeGreaterThanOrEqual(2);
    expect(plane.carried - carried).toBeGreaterThanOrEqual(TEXTS.length - 4);
    expect(normal(b.body)).toBe(normal(a.body));
    expect(textOf(b.body)).toBe(TEXTS.join(''));
    expect(events(b.body).at(-1)!.usage).toMatchObject({ completion_tokens: TEXTS.length, energy_joules: 2.5 });
  });

  it('a client gone mid-span ends the span and the request is cancelled', async () => {
    const nat = await gateway(true, [emuUrl]);
    const spans = plane.spans;
    const got = await stream(nat.port, request(400), 12);
    expect(events(got.body).length).toBeGreaterThanOrEqual(12);
    for (let i = 0; i < 100 && !nat.published.some((p) => p.subject.startsWith('dyn.v1.cancel.')); i++) await new Promise((r) => setTimeout(r, 10));
    expect(plane.spans).toBeGreaterThan(spans);
    expect(nat.published.some((p) => p.subject === subjects.cancel(nat.legs[0]!.id))).toBe(true);
    // the engine's request ended: the emulator holds nothing running
    for (let i = 0; i < 100 && running() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(running()).toBe(0);
  });

  it('a cancel on the JavaScript side (the instance ends the leg) takes the stream back before its connection is closed', async () => {
    const nat = await gateway(true, [emuUrl]);
    const spans = plane.spans, carried = plane.carried;
    const body = stream(nat.port, request(400));
    // once the span carries tokens, the instance ends the leg (an error chunk on its stream subject)
    for (let i = 0; i < 300 && plane.active === 0; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    expect(plane.active).toBe(1);
    const id = nat.legs[0]!.id;
    nat.bus.publish(subjects.stream(id), TokenChunk, { v: 1, id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'stopped', retryable: false } });
    const got = await body;
    expect(plane.active).toBe(0);
    expect(plane.spans).toBeGreaterThan(spans);
    const evs = events(got.body);
    expect(evs.at(-1)!.error).toBeDefined();
    // every text event the client got is counted once: the native ones and JavaScript's
    expect(evs.filter((e) => e.choices?.[0]?.text).length).toBe(plane.carried - carried + 1);
    // the error event, then [DONE] (vLLM's end of a failed stream): nothing of the engine's after the error
    expect(got.body.slice(got.body.lastIndexOf('data: {"error"')).split('\n\n').filter(Boolean).length).toBe(2);
  });

  it('an engine that dies mid-span: the stream continues on another engine, every token once', async () => {
    const texts = TEXTS;
    const dying = await scripted(texts, 12);
    const nat = await gateway(true, [dying.url, emuUrl]);
    const carried = plane.carried;
    const got = await stream(nat.port, request(30), undefined, undefined, undefined, 'x-request-id: client-9\r\n');
    expect(plane.carried - carried).toBeGreaterThanOrEqual(6);
    // the client's id names every event, the native ones and the continuation's, and the header; the legs have the cluster's
    expect(new Set(events(got.body).map((e) => e.id))).toEqual(new Set(['cmpl-client-9']));
    expect(got.head).toMatch(/\r\nx-request-id: client-9\r\n/i);
    expect(nat.legs.map((l) => l.id)).not.toContain('client-9');
    const evs = events(got.body).filter((e) => e.choices?.[0]?.text);
    expect(evs.length).toBe(30);
    const sent = texts.slice(0, 12).join('');
    expect(textOf(got.body).startsWith(sent)).toBe(true);
    expect(nat.legs.length).toBe(2);
    // the continuation's prompt is the client's prompt and exactly the text it had before the break
    expect(nat.legs[1]!.prompt).toBe(`the native plane${sent}`);
    expect(nat.legs[1]!.maxTokens).toBe(18);
    expect(events(got.body).at(-1)!.usage!.completion_tokens).toBe(30);
    expect(got.body.endsWith('data: [DONE]\n\n')).toBe(true);
  });
  it("an engine silent after the hand-off: the idle deadline ends the leg and the stream continues on another engine", async () => {
    const silent = await scripted(TEXTS, undefined, 1);
    // the idle deadline 1 s between two tokens
    const engineIdle = { settings: { firstTokenMultiple: 1, firstTokenFloorMs: 5000, nextTokenMultiple: 1, nextTokenFloorMs: 1000 }, fallback: { ttftMs: 1, tbtMs: 1 } };
    const nat = await gateway(true, [silent.url, emuUrl], { engineIdle });
    const spans = plane.spans;
    const got = await Promise.race([stream(nat.port, request(20)), new Promise<undefined>((r) => setTimeout(r, 8000))]);
    // the silent engine's stream was native when it went quiet
    expect(plane.spans).toBeGreaterThan(spans);
    expect(got).toBeDefined();
    expect(nat.legs.length).toBe(2);
    expect(nat.legs[1]!.prompt).toBe(`the native plane${TEXTS[0]}`);
    expect(events(got!.body).filter((e) => e.choices?.[0]?.text).length).toBe(20);
    expect(got!.body.endsWith('data: [DONE]\n\n')).toBe(true);
  });
  it('a client that reads nothing for longer than the idle bound: no stall, every token once it reads', async () => {
    // one token, then 800 of 1000 bytes at once (more than the sockets between the gateway and the client hold)
    const texts = [' first', ...Array.from({ length: 800 }, (_, i) => String(i % 10).repeat(1000))];
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
        const text = (t: string) => ev({ choices: [{ index: 0, text: t, logprobs: null, finish_reason: null, stop_reason: null }] });
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(text(texts[0]!));
        setTimeout(() => {
          for (const t of texts.slice(1)) res.write(text(t));
          res.write(ev({ choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }] }));
          res.end(`${ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: texts.length, total_tokens: 3 + texts.length } })}data: [DONE]\n\n`);
        }, 100);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    const engineIdle = { settings: { firstTokenMultiple: 1, firstTokenFloorMs: 5000, nextTokenMultiple: 1, nextTokenFloorMs: 1000 }, fallback: { ttftMs: 1, tbtMs: 1 } };
    const nat = await gateway(true, [`http://127.0.0.1:${(server.address() as AddressInfo).port}`, emuUrl], { engineIdle });
    // a small send buffer on the client's socket as the span starts (its receive window on top)
    const setsockopt = koffi.load('libc.so.6').func('int setsockopt(int, int, int, const int *, int)') as (fd: number, level: number, opt: number, v: number[], n: number) => number;
    const add = plane.add.bind(plane);
    plane.add = (c, ...rest) => (setsockopt(c, 1, 7, [16384], 4), add(c, ...rest));
    const carried = plane.carried;
    const got = await stream(nat.port, request(texts.length), undefined, '/v1/completions', 2500).finally(() => (plane.add = add));
    // one leg: the engine was not taken for stalled while the client read nothing
    expect(nat.legs.length).toBe(1);
    expect(plane.carried - carried).toBeGreaterThan(700);
    expect(textOf(got.body)).toBe(texts.join(''));
    expect(got.body.endsWith('data: [DONE]\n\n')).toBe(true);
  });
});

describe('without the library', () => {
  it('auto stays on the JavaScript path with one log line; native refuses to start', async () => {
    const before = process.env.DYN_DATAPLANE_LIB;
    process.env.DYN_DATAPLANE_LIB = join(dir, 'absent.so');
    try {
      const lines: unknown[] = [];
      expect(await loadDataPlane('auto', { info: (o) => lines.push(o) })).toBeUndefined();
      expect(lines).toEqual([expect.objectContaining({ dataPlane: 'js' })]);
      await expect(loadDataPlane('native')).rejects.toThrow(/did not load/);
      expect(await loadDataPlane('js')).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env.DYN_DATAPLANE_LIB;
      else process.env.DYN_DATAPLANE_LIB = before;
    }
  });
});

describe('a gateway started again in the same process', () => {
  it('is given the plane already loaded from the same library (one native thread per process)', async () => {
    const before = process.env.DYN_DATAPLANE_LIB;
    process.env.DYN_DATAPLANE_LIB = join(dir, 'relay.so');
    try {
      const lines: unknown[] = [];
      expect(await loadDataPlane('native', { info: (o) => lines.push(o) })).toBe(plane);
      expect(await loadDataPlane('auto', { info: (o) => lines.push(o) })).toBe(plane);
      expect(lines).toEqual([expect.objectContaining({ dataPlane: 'native' }), expect.objectContaining({ dataPlane: 'native' })]);
    } finally {
      if (before === undefined) delete process.env.DYN_DATAPLANE_LIB;
      else process.env.DYN_DATAPLANE_LIB = before;
    }
  });
});
