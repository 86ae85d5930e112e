/**
 * The lean HTTP/1.1 client of the gateway's direct data path (src/engine/http1.ts), against real sockets: a
 * node:http server and raw TCP servers that frame responses byte by byte. Bodies come out exactly as sent
 * (chunked, split anywhere, with extensions and trailers; Content-Length; to the close), informational heads
 * are skipped, a finished exchange leaves its connection to the pool and the next one reuses it, a kept
 * connection the server closed as we sent is replaced, an abort breaks the exchange and closes the socket,
 * idle connections are closed after their timeout, and streamCompletionBatches gives the same chunks through
 * it as through node:http. Piped (push mode), the body's pieces go to a callback as read, and
 * streamCompletionPush gives the same chunks as streamCompletionBatches, whatever the reads' splits.
 */
import { createServer as createHttpServer, Agent, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Pool, http1Request, type Http1Response } from '../../src/engine/http1.ts';
import { streamCompletionBatches, streamCompletionPush } from '../../src/engine/client.ts';
import type { EngineChunk } from '../../src/engine/engine.ts';
import { EngineStreamError } from '../../src/engine/errors.ts';
import { LeanAbort } from '../../src/engine/abort.ts';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function listen(s: Server | HttpServer): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => {
    (s as HttpServer).closeAllConnections?.();
    s.close(() => r());
  }));
  return (s.address() as AddressInfo).port;
}

function pool(opts?: ConstructorParameters<typeof Http1Pool>[0]): Http1Pool {
  const p = new Http1Pool(opts);
  closers.push(() => p.destroy());
  return p;
}

async function body(r: Http1Response): Promise<string> {
  const parts: Buffer[] = [];
  for (let b = await r.next(); b !== null; b = await r.next()) parts.push(Buffer.from(b));
  return Buffer.concat(parts).toString('utf8');
}

const post = (port: number, path = '/x', b = '{"a":1}') => ({ host: '127.0.0.1', port, method: 'POST' as const, path, headers: { 'content-type': 'application/json' }, body: b });
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** A raw TCP server: `answer(socket, requestText, n)` for the n-th request head+body seen on any connection. */
async function raw(answer: (s: Socket, req: string, n: number) => void): Promise<{ port: number; conns: Socket[] }> {
  const conns: Socket[] = [];
  let n = 0;
  const srv = createServer((s) => {
    conns.push(s);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, he))?.[1] ?? 0);
        if (buf.length < he + 4 + len) return;
        const req = buf.slice(0, he + 4 + len);
        buf = buf.slice(he + 4 + len);
        answer(s, req, n++);
      }
    });
    s.on('error', () => undefined);
  });
  const port = await listen(srv);
  closers.push(() => conns.forEach((c) => c.destroy()));
  return { port, conns };
}

/** Writes `bytes` one at a time, a macrotask apart (every split of the framing is seen). */
async function dribble(s: Socket, bytes: string): Promise<void> {
  for (const c of Buffer.from(bytes, 'utf8')) {
    s.write(Buffer.from([c]));
    await tick();
  }
}

describe('http1Request', () => {
  it('reads a chunked body split at every byte, with chunk extensions, 103 Early Hints and trailers', async () => {
    const { port } = await raw((s) => void dribble(s,
      'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n' +
      '6\r\ndata: \r\nb;ext=1\r\n{"t":"é"}\n\r\n' + '1\r\n\n\r\n' + '0\r\nTrailer-Field: x\r\n\r\n'));
    const p = pool();
    const r = await http1Request(p, post(port));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/event-stream');
    expect(r.headers['x-a']).toBe('1, 2');
    expect(await body(r)).toBe('data: {"t":"é"}\n\n');
    expect(r.complete).toBe(true);
    r.close();
    expect(p.idleCount).toBe(1);
  });

  it('pieces waiting for their reader keep their bytes while later reads of every connection land in the shared read buffer', async () => {
    // two exchanges at once, each body in many writes, read only once both are in: a queued piece that were a view
    // of the connections' one read buffer would show the other body's or a later piece's bytes
    const pieces = (tag: string) => Array.from({ length: 40 }, (_, i) => `${tag}${String(i).padStart(3, '0')}`);
    const { port } = await raw((s, req) => void (async () => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      for (const p of pieces(req.endsWith('"a"}') ? 'a' : 'b')) {
        s.write(`${p.length.toString(16)}\r\n${p}\r\n`);
        await tick(1);
      }
      s.write('0\r\n\r\n');
    })());
    const p = pool();
    const [r1, r2] = await Promise.all([http1Request(p, post(port, '/x', '{"tag":"a"}')), http1Request(p, post(port, '/x', '{"tag":"b"}'))]);
    for (let i = 0; i < 400 && !(r1.complete && r2.complete); i++) await tick(5);
    expect(r1.complete && r2.complete).toBe(true);
    expect(await body(r1)).toBe(pieces('a').join(''));
    expect(await body(r2)).toBe(pieces('b').join(''));
  });

  it('reuses the connection of a finished exchange for the next one (node:http server, streamed chunks)', async () => {
    const ports: number[] = [];
    const srv = createHttpServer((req, res) => {
      ports.push(req.socket.remotePort!);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const t = setInterval(() => {
          if (i < 5) res.write(`data: ${i++}\n\n`);
          else {
            clearInterval(t);
            res.end('data: [DONE]\n\n');
          }
        }, 2);
      });
    });
    const port = await listen(srv);
    const p = pool();
    for (let k = 0; k < 3; k++) {
      const r = await http1Request(p, post(port));
      expect(await body(r)).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: [DONE]\n\n');
      r.close();
    }
    expect(new Set(ports).size).toBe(1);
    expect(p.idleCount).toBe(1);
  });

  it('reads a Content-Length body and a body that runs to the close; a Connection: close answer is not pooled', async () => {
    const { port } = await raw((s, _req, n) => {
      if (n === 0) s.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 13\r\n\r\n{"error":"x"}');
      else if (n === 1) s.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end');
    });
    const p = pool();
    const a = await http1Request(p, post(port));
    expect([a.status, await body(a)]).toEqual([400, '{"error":"x"}']);
    a.close();
    expect(p.idleCount).toBe(1);
    const b = await http1Request(p, post(port));
    expect([b.status, await body(b)]).toEqual([200, 'until the end']);
    b.close();
    expect(p.idleCount).toBe(0);
  });

  it('sends a request again on a new connection when the kept one was closed by the server before any answer', async () => {
    const { port, conns } = await raw((s, req, n) => {
      expect(req).toContain('{"a":1}');
      if (n === 1) return void s.destroy(); // the server timed the kept connection out as the request came
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const p = pool();
    const a = await http1Request(p, post(port));
    expect(await body(a)).toBe('ok');
    a.close();
    const b = await http1Request(p, post(port));
    expect(await body(b)).toBe('ok');
    b.close();
    expect(conns.length).toBe(2);
  });

  it('an answer cut mid-body rejects the reader; a server that never answers a new connection is not retried', async () => {
    const { port } = await raw((s, _req, n) => {
      if (n === 0) s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab');
      else s.destroy();
    });
    const p = pool();
    const r = await http1Request(p, post(port));
    await expect(body(r)).rejects.toThrow(/closed/);
    await expect(http1Request(p, post(port))).rejects.toThrow(/hang up/);
  });

  it.each([['an AbortController', () => new AbortController()], ['a LeanAbort', () => new LeanAbort()]])('an abort (%s) breaks the exchange with its reason and closes the connection', async (_kind, make) => {
    let serverSaw: Socket | undefined;
    const { port } = await raw((s) => {
      serverSaw = s;
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    });
    const p = pool();
    const ac = make();
    const r = await http1Request(p, post(port), ac.signal);
    expect((await r.next())!.toString()).toBe('abc');
    const closed = new Promise((res) => serverSaw!.once('close', res));
    ac.abort(new Error('stop here'));
    await expect(r.next()).rejects.toThrow('stop here');
    await closed;
    r.close();
    expect(p.idleCount).toBe(0);
  });

  it('a reader done before the terminator came leaves the connection to the pool once it comes (drain)', async () => {
    let sock: Socket | undefined;
    const { port } = await raw((s) => {
      sock = s;
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    });
    const p = pool();
    const r = await http1Request(p, post(port));
    expect((await r.next())!.toString()).toBe('abc');
    r.close(1000);
    expect(p.idleCount).toBe(0);
    sock!.write('0\r\n\r\n');
    for (let i = 0; i < 50 && p.idleCount === 0; i++) await tick(10);
    expect(p.idleCount).toBe(1);
  });

  it('closes idle connections after their idle timeout', async () => {
    const { port, conns } = await raw((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx'));
    const p = pool({ idleTimeoutMs: 200 });
    const r = await http1Request(p, post(port));
    await body(r);
    r.close();
    expect(p.idleCount).toBe(1);
    const closed = new Promise((res) => conns[0]!.once('close', res));
    await closed;
    expect(p.idleCount).toBe(0);
  });

  it('refuses a header value that would break the request framing; a bad status line is an error', async () => {
    const { port } = await raw((s) => s.write('HTTP/2 200\r\n\r\n'));
    const p = pool();
    await expect(http1Request(p, { ...post(port), headers: { 'x-request-id': 'a\r\nInjected: 1' } })).rejects.toThrow(/invalid HTTP header/);
    await expect(http1Request(p, post(port))).rejects.toThrow(/not an HTTP\/1.x response/);
  });
});

describe('http1Request piped', () => {
  it('gives every piece of a body split at every byte to the callback, the queued ones first, and resolves at its end', async () => {
    const { port } = await raw((s) => void dribble(s, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + '3\r\nabc\r\n' + 'b;x=1\r\n{"t":"é"}\n\r\n' + '0\r\n\r\n'));
    const p = pool();
    const r = await http1Request(p, post(port));
    const first = (await r.next())!.toString(); // read pulled, then piped
    const pieces: Buffer[] = [];
    await r.pipe((b) => pieces.push(Buffer.from(b)));
    expect(first + Buffer.concat(pieces).toString('utf8')).toBe('abc{"t":"é"}\n');
    expect(pieces.length).toBeGreaterThan(1);
    expect(r.complete).toBe(true);
    r.close();
    expect(p.idleCount).toBe(1);
  });

  it('a body cut mid-way rejects it; an exception of the callback breaks the exchange with it and closes the connection', async () => {
    const { port, conns } = await raw((s, _req, n) => {
      if (n === 0) s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab');
      else s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    });
    const p = pool();
    const cut = await http1Request(p, post(port));
    await expect(cut.pipe(() => undefined)).rejects.toThrow(/closed/);
    const r = await http1Request(p, post(port));
    const closed = new Promise((res) => conns[1]!.once('close', res));
    const boom = new Error('the reader failed');
    await expect(r.pipe(() => {
      throw boom;
    })).rejects.toBe(boom);
    await closed;
    r.close();
    expect(p.idleCount).toBe(0);
  });

  it('an exception of the callback on a body read to its end before it was piped rejects with it too', async () => {
    const { port } = await raw((s) => void s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'));
    const r = await http1Request(pool(), post(port));
    for (let i = 0; i < 100 && !r.complete; i++) await new Promise((res) => setTimeout(res, 5));
    expect(r.complete).toBe(true);
    const boom = new Error('the reader stopped');
    await expect(Promise.race([r.pipe(() => {
      throw boom;
    }), new Promise((res) => setTimeout(() => res('unsettled'), 1000))])).rejects.toBe(boom);
    r.close();
  });
});

describe('streamCompletionBatches through the lean client', () => {
  it('gives the same chunks as node:http, and an engine that closes mid-stream is a classified error', async () => {
    const events = [
      { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: 'Hel', logprobs: null, finish_reason: null }] },
      { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: 'lo "x"', logprobs: null, finish_reason: null }] },
      { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length' }] },
      { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    ];
    let cut = false;
    const srv = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        if (cut) {
          res.write(`data: ${JSON.stringify(events[0])}\n\n`);
          setTimeout(() => res.destroy(), 5);
          return;
        }
        for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
        res.end('data: [DONE]\n\n');
      });
    });
    const port = await listen(srv);
    const p = pool();
    const agent = new Agent({ keepAlive: true });
    closers.push(() => agent.destroy());
    const req = { model: 'm', prompt: 'x', maxTokens: 2 };
    const classify = (c: unknown) => new EngineStreamError(`broke: ${(c as Error).message}`);
    const all = async (t: Parameters<typeof streamCompletionBatches>[0]) => {
      const out = [];
      for await (const b of streamCompletionBatches(t, req, undefined, classify)) out.push(...b);
      return out;
    };
    const viaLean = await all({ host: '127.0.0.1', port, pool: p, defaultTimeoutMs: 5000 });
    const viaNode = await all({ host: '127.0.0.1', port, agent, defaultTimeoutMs: 5000 });
    expect(viaLean).toEqual(viaNode);
    expect(viaLean.map((c) => c.text).join('')).toBe('Hello "x"');
    expect(viaLean.at(-1)!.usage).toMatchObject({ promptTokens: 3, completionTokens: 2 });
    cut = true;
    await expect(all({ host: '127.0.0.1', port, pool: p, defaultTimeoutMs: 5000 })).rejects.toThrow(/broke/);
  });
});

describe('streamCompletionPush', () => {
  const events = [
    { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: 'Hel', logprobs: null, finish_reason: null }] },
    { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: 'lo', logprobs: null, finish_reason: null }] },
    { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: ' "x"', logprobs: null, finish_reason: null }] },
    { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: ' é', logprobs: null, finish_reason: 'length' }] },
    { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } },
  ];
  const sse = events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';
  const chunked = (b: string) => `${Buffer.byteLength(b).toString(16)}\r\n${b}\r\n`;
  const req = { model: 'm', prompt: 'x', maxTokens: 4 };
  const classify = (c: unknown) => new EngineStreamError(`broke: ${(c as Error).message}`);

  it('gives the chunks streamCompletionBatches gives, from reads split at many places or all in one', async () => {
    const head = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n';
    /** the bytes in pieces of 1 to 12 bytes, a macrotask apart (the splits fall everywhere in the framing and the events) */
    const pieces = async (s: Socket, text: string) => {
      const b = Buffer.from(text, 'utf8');
      for (let at = 0, k = 0; at < b.length; at += (k++ % 12) + 1) {
        s.write(b.subarray(at, at + (k % 12) + 1));
        await tick();
      }
    };
    const { port } = await raw((s, _req, n) => {
      if (n % 2 === 0) void pieces(s, head + chunked(sse) + '0\r\n\r\n');
      else s.write(head + chunked(sse) + '0\r\n\r\n');
    });
    const p = pool();
    const t = { host: '127.0.0.1', port, pool: p, defaultTimeoutMs: 20_000 };
    for (let round = 0; round < 2; round++) {
      const pushed: EngineChunk[][] = [];
      await streamCompletionPush(t, req, undefined, classify, (b) => pushed.push(b));
      const pulled: EngineChunk[] = [];
      for await (const b of streamCompletionBatches(t, req, undefined, classify)) pulled.push(...b);
      expect(pushed.every((b) => b.length > 0)).toBe(true);
      expect(pushed.flat()).toEqual(pulled);
      expect(pulled.map((c) => c.text).join('')).toBe('Hello "x" é');
      expect(pulled.find((c) => c.finishReason)).toMatchObject({ text: ' é', finishReason: 'length' });
      expect(pulled.at(-1)).toMatchObject({ usage: { promptTokens: 3, completionTokens: 4 } });
    }
  });

  it('a stream cut before [DONE] is a classified error; an exception of onBatch is its own, and closes the connection', async () => {
    const { port, conns } = await raw((s, _req, n) => {
      const part = `data: ${JSON.stringify(events[0])}\n\n`;
      if (n === 0) s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + chunked(part) + '0\r\n\r\n', () => s.destroy());
      else s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + chunked(part));
    });
    const p = pool();
    const t = { host: '127.0.0.1', port, pool: p, defaultTimeoutMs: 5000 };
    await expect(streamCompletionPush(t, req, undefined, classify, () => undefined)).rejects.toThrow(/broke: stream ended without \[DONE\]/);
    const boom = new Error('the reader failed');
    const got: string[] = [];
    await expect(streamCompletionPush(t, req, undefined, classify, (b) => {
      got.push(...b.map((c) => c.text));
      throw boom;
    })).rejects.toBe(boom);
    expect(got).toEqual(['Hel']);
    await new Promise((res) => (conns[1]!.destroyed ? res(undefined) : conns[1]!.once('close', res)));
    expect(p.idleCount).toBe(0);
  });

  it('an engine answer that is not 2xx is an EngineHttpError with its body, and its connection goes back to the pool; one cut mid-body is closed', async () => {
    const bad = '{"error":{"message":"bad"}}';
    const { port, conns } = await raw((s, _req, n) => {
      if (n < 6) s.write(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${bad.length}\r\n\r\n${bad}`);
      else s.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n{"error"`, () => s.destroy());
    });
    const p = pool();
    const t = { host: '127.0.0.1', port, pool: p, defaultTimeoutMs: 5000 };
    for (let i = 0; i < 3; i++) {
      await expect(streamCompletionPush(t, req, undefined, classify, () => undefined)).rejects.toMatchObject({ name: 'EngineHttpError', status: 400, body: bad });
      await expect((async () => {
        for await (const b of streamCompletionBatches(t, req, undefined, classify)) expect(b).toBeUndefined();
      })()).rejects.toMatchObject({ name: 'EngineHttpError', status: 400 });
    }
    // six error answers over one kept-alive connection, idle in the pool
    expect(conns.length).toBe(1);
    expect(p.idleCount).toBe(1);
    await expect(streamCompletionPush(t, req, undefined, classify, () => undefined)).rejects.toThrow();
    await new Promise((res) => (conns[0]!.destroyed ? res(undefined) : conns[0]!.once('close', res)));
    expect(p.idleCount).toBe(0);
  });
});

describe('response heads', () => {
  it('reads a head seen before as that head (its headers, status, keep-alive), and any other head anew', async () => {
    // the same head twice on one kept connection, then another head (another status, a header more, a close)
    const heads = [
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-one: 1\r\ncontent-length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-one: 1\r\ncontent-length: 2\r\n\r\n',
      'HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-two: 2\r\nConnection: close\r\ncontent-length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-one: 1\r\ncontent-length: 2\r\n\r\n',
    ];
    const { port } = await raw((s, _req, n) => {
      s.write(`${heads[n]!}${n}!`);
      if (n === 2) s.end();
    });
    const p = pool();
    const got: { status: number; headers: Record<string, string>; body: string }[] = [];
    for (let i = 0; i < heads.length; i++) {
      const r = await http1Request(p, post(port));
      got.push({ status: r.status, headers: r.headers, body: await body(r) });
      r.close();
      await tick(5);
    }
    const one = { 'content-type': 'text/event-stream', 'x-one': '1', 'content-length': '2' };
    expect(got.map((g) => g.status)).toEqual([200, 200, 201, 200]);
    expect(got[0]!.headers).toEqual(one);
    expect(got[1]!.headers).toEqual(one);
    expect(got[2]!.headers).toEqual({ 'content-type': 'text/plain', 'x-two': '2', connection: 'close', 'content-length': '2' });
    expect(got[3]!.headers).toEqual(one);
    expect(got.map((g) => g.body)).toEqual(['0!', '1!', '2!', '3!']);
    // a head's headers are read, never written: no response's reader changes another's
    expect(() => {
      (got[1]!.headers as Record<string, string>)['x-one'] = 'changed';
    }).toThrow(TypeError);
    expect(got[0]!.headers['x-one']).toBe('1');
  });
});
