/**
 * The first token trace (src/runtime/first-token-trace.ts, DYN_TRACE_FIRST_TOKEN): on, a streamed request through the
 * gateway's HTTP layer gets one line with every mark of its first token's path, in order (the engine's request written
 * and its first bytes read by the lean HTTP/1.1 client, src/engine/http1.ts, to an engine stand-in on loopback); a
 * request that ends without a first token (refused) is written by the flush after its end, and its record is held no
 * more; off, nothing is recorded or written.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { Http1Pool, http1Request } from '../../src/engine/http1.ts';
import { performance } from 'node:perf_hooks';
import { MARK, SEGMENTS, FirstTokenTrace, firstTokenTrace, monoMs, type FirstTokenLine } from '../../src/runtime/first-token-trace.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { DynError } from '../../protocols/errors.ts';

/** A backend that asks an engine stand-in for each request (its x-request-id the request's id) and streams its answer as one token. */
class EngineBacked implements GatewayBackend {
  constructor(private readonly port: number, private readonly pool: Http1Pool) {}
  async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    const { port, pool } = this;
    async function* gen(): AsyncGenerator<TokenChunk> {
      const r = await http1Request(pool, { host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json', 'x-request-id': req.id }, body: '{}' });
      let text = '';
      await r.pipe((b) => (text += b.toString()));
      yield { v: 1, id: req.id, seq: 0, text, tokens: 1, done: true, finishReason: 'stop' };
    }
    return Promise.resolve(gen());
  }
}

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  firstTokenTrace.stop();
  for (const c of closers.splice(0)) await c();
});

async function streamed(): Promise<string> {
  const engine: Server = createServer((_q, s) => s.writeHead(200, { 'content-type': 'text/plain' }).end(' tok'));
  await new Promise<void>((r) => engine.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => engine.close(() => r())));
  const pool = new Http1Pool();
  closers.push(() => pool.destroy());
  const gw = new GatewayServer({ backend: new EngineBacked((engine.address() as AddressInfo).port, pool), port: 0, host: '127.0.0.1', models: ['m1'] });
  closers.push(() => gw.close(0));
  const url = `http://127.0.0.1:${await gw.listen()}`;
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1', prompt: 'hello there', max_tokens: 1, stream: true }) });
  const body = await res.text();
  expect(res.status).toBe(200);
  expect(body).toContain(' tok');
  expect(body).toContain('[DONE]');
  return res.headers.get('x-request-id')!;
}

describe('first token trace', () => {
  it('on: records every mark of a streamed request, in order, as one JSON line', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftt-')), 'trace.jsonl');
    firstTokenTrace.start(file, { flushMs: 60_000 });
    const before = monoMs();
    const id = await streamed();
    firstTokenTrace.stop();
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FirstTokenLine);
    expect(lines).toHaveLength(1);
    const l = lines[0]!;
    expect(l.id).toBe(id);
    expect(l.pid).toBe(process.pid);
    expect(l.marks).toHaveLength(SEGMENTS.length);
    expect(l.marks[0]).toBe(0);
    for (let i = 1; i < l.marks.length; i++) {
      expect(l.marks[i], SEGMENTS[i]).not.toBeNull();
      expect(l.marks[i]!, SEGMENTS[i]).toBeGreaterThanOrEqual(l.marks[i - 1]!);
    }
    // the head's arrival on CLOCK_MONOTONIC, comparable with a client's send
    expect(l.headMonoMs).toBeGreaterThan(before);
    expect(l.headMonoMs + l.marks.at(-1)!).toBeLessThan(monoMs());
    expect(l.gapMs).toBeGreaterThanOrEqual(l.loopBusyMs);
    expect(l.loopBusyMs).toBeGreaterThanOrEqual(0);
    expect(l.gcMs).toBeGreaterThanOrEqual(0);
  });

  it('a request refused after its admission was asked: written by the flush after its end, its record held no more', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftt-')), 'trace.jsonl');
    firstTokenTrace.start(file, { flushMs: 60_000 });
    const refusing: GatewayBackend = { submit: () => Promise.reject(new DynError('unavailable', 'no capacity', { retryable: true })) };
    const gw = new GatewayServer({ backend: refusing, port: 0, host: '127.0.0.1', models: ['m1'] });
    closers.push(() => gw.close(0));
    const url = `http://127.0.0.1:${await gw.listen()}`;
    const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1', prompt: 'hello there', max_tokens: 1, stream: true }) });
    await res.text();
    expect(res.status).toBe(503);
    // its end is past the settle window: the flush writes it, and nothing of it waits (not until the stale limit, a minute)
    await new Promise((r) => setTimeout(r, 300));
    firstTokenTrace.flush(false);
    expect(firstTokenTrace.held).toBe(0);
    // the flush appends asynchronously: the file may exist before its line is written
    const written = () => existsSync(file) && readFileSync(file, 'utf8').endsWith('\n');
    for (let i = 0; i < 100 && !written(); i++) await new Promise((r) => setTimeout(r, 20));
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FirstTokenLine);
    expect(lines).toHaveLength(1);
    const m = lines[0]!.marks;
    expect(m[0]).toBe(0);
    expect(m[3], 'routed').not.toBeNull();
    expect(m.slice(4)).toEqual([null, null, null, null]);
  });

  it('a request that outlives its stale record (a stream over a minute) marks and ends no later request whose record took its slot', async () => {
    let now = 1000;
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const file = join(mkdtempSync(join(tmpdir(), 'ftt-')), 'trace.jsonl');
    const tr = new FirstTokenTrace();
    closers.push(() => tr.stop());
    tr.start(file, { cap: 4, flushMs: 3_600_000 });
    const a = tr.begin();
    tr.bind(a, 'long');
    tr.markAt(a, MARK.parsed);
    now += 61_000;
    // open over a minute: written stale, its slot given back
    tr.flush(false);
    expect(tr.held).toBe(0);
    const b = tr.begin();
    tr.bind(b, 'next');
    now += 5;
    // the long stream goes on and ends: nothing of it reaches the next request's record
    tr.markAt(a, MARK.counted);
    tr.end(a);
    now += 5;
    tr.markAt(b, MARK.counted);
    tr.mark('next', MARK.routed);
    now += 5;
    tr.end(b);
    expect(tr.held).toBe(1);
    now += 300;
    tr.flush(false);
    expect(tr.held).toBe(0);
    const lines = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FirstTokenLine) : []);
    for (let i = 0; i < 100 && lines().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const byId = new Map(lines().map((l) => [l.id, l]));
    expect([...byId.keys()].sort()).toEqual(['long', 'next']);
    expect(byId.get('long')!.marks.slice(0, 3)).toEqual([0, 0, null]);
    expect(byId.get('next')!.marks.slice(0, 4)).toEqual([0, null, 10, 10]);
  });

  it('off: nothing is recorded or written', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftt-')), 'trace.jsonl');
    expect(firstTokenTrace.on).toBe(false);
    await streamed();
    // a start after the request: the request left no record to write
    firstTokenTrace.start(file, { flushMs: 60_000 });
    firstTokenTrace.stop();
    expect(existsSync(file)).toBe(false);
  });
});
