/**
 * What a native span costs the gateway's main thread (actors/gateway/data-plane.ts, native/relay.c; docs/DATAPATH.md
 * "Native data plane: CPU per token"), on real sockets through the gateway's HTTP layer and NatsBackend: the engine's
 * connection leaves Node's epoll set at the hand-off (its events of the span wake the native thread alone, not the
 * event loop to take it out), the client's socket is read on (no epoll change for it), and a stream is not handed over
 * again after its finish event (a span of no events: a hand-off, an end and its wake-up for nothing).
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NativeDataPlane } from '../../actors/gateway/data-plane.ts';
import { grantedGateway } from '../helpers/granted-gateway.ts';
import { dechunk } from '../helpers/slow-client.ts';

let dir = '';
let plane: NativeDataPlane;
const closers: (() => unknown)[] = [];
/** Node's event loop's epoll set (libuv's, this process's main thread) */
const node = koffi.load(null);
const loopEp = (node.func('int uv_backend_fd(void *)') as (l: unknown) => number)((node.func('void *uv_default_loop(void)') as () => unknown)());

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dpw-'));
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-pthread', '-o', join(dir, 'relay.so'), 'native/relay.c']);
  const p = await NativeDataPlane.load(join(dir, 'relay.so'));
  if (!(p instanceof NativeDataPlane)) throw new Error(p.why);
  plane = p;
});
afterAll(async () => {
  for (const c of closers.splice(0)) await c();
  rmSync(dir, { recursive: true, force: true });
});

/** the fds an epoll set watches (its /proc fdinfo's `tfd:` lines) */
const watched = (ep: number) => new Set([...readFileSync(`/proc/self/fdinfo/${ep}`, 'utf8').matchAll(/^tfd:\s+(\d+)/gm)].map((m) => Number(m[1])));

/** An engine streaming `n` text events, the first two in one write, then one event per write 4 ms apart: the finish, the usage and [DONE]. */
async function engine(n: number): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
      const out = Array.from({ length: n }, (_, i) => ev({ choices: [{ index: 0, text: ` t${i}`, logprobs: null, finish_reason: null, stop_reason: null }] }));
      out.push(ev({ choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }] }));
      out.push(`${ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: n, total_tokens: 3 + n } })}data: [DONE]\n\n`);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(out[0]! + out[1]!);
      let i = 2;
      const next = () => {
        if (i === out.length) return void res.end();
        res.write(out[i++]);
        setTimeout(next, 4);
      };
      setTimeout(next, 4);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** a streamed completion of `n` tokens over a raw socket: its de-chunked body */
async function stream(port: number, n: number): Promise<string> {
  const body = JSON.stringify({ model: 'm', prompt: 'the main thread', max_tokens: n, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, '127.0.0.1');
    let raw = Buffer.alloc(0);
    s.on('connect', () => s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`));
    s.on('data', (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      if (raw.subarray(-5).toString() === '0\r\n\r\n') s.destroy();
    });
    s.on('close', () => resolve(dechunk(raw.subarray(raw.indexOf('\r\n\r\n') + 4))));
    s.on('error', reject);
  });
}

it("a span takes the engine's fd out of Node's epoll set and leaves the client's socket read as it was", async () => {
  const N = 30;
  const gw = await grantedGateway([await engine(N)], { closers, gateway: { dataPlane: plane } });
  const seen: { engineWatched: boolean; clientWatched: boolean; clientReading: boolean }[] = [];
  const add = plane.add.bind(plane);
  plane.add = (c, e, ...rest) => {
    const h = add(c, e, ...rest);
    const inLoop = watched(loopEp);
    // the client's socket: the gateway's side of the connection whose fd was handed over
    const client = gw.clients.map((s) => (s as unknown as { _handle: { fd: number; reading: boolean } | null })._handle).find((x) => x?.fd === c);
    seen.push({ engineWatched: inLoop.has(e), clientWatched: inLoop.has(c), clientReading: client?.reading === true });
    return h;
  };
  const carried = plane.carried;
  let body = '';
  try {
    body = await stream(gw.port, N);
  } finally {
    plane.add = add;
  }
  expect(seen.length).toBeGreaterThanOrEqual(1);
  // the engine's first event of the span wakes the native thread alone (Node's loop no longer watches the fd)
  expect(seen.every((x) => !x.engineWatched)).toBe(true);
  // the client's socket is read on through the span (a client's close is seen by both sides), its watch unchanged
  expect(seen.every((x) => x.clientWatched && x.clientReading)).toBe(true);
  expect(plane.carried - carried).toBeGreaterThan(0);
  // JavaScript read the engine again after the span: the end, usage and [DONE] are there
  expect(body).toContain('"completion_tokens":30');
  expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
});

it('after the finish event, the stream is not handed over again for its usage event and [DONE] (a span that would carry nothing)', async () => {
  const N = 20;
  const gw = await grantedGateway([await engine(N)], { closers, gateway: { dataPlane: plane } });
  const spans = plane.spans, carried = plane.carried;
  const body = await stream(gw.port, N);
  // one span, from the hand-off to the finish event (the usage event comes in a later read than the finish)
  expect(plane.spans - spans).toBe(1);
  expect(plane.carried - carried).toBeGreaterThanOrEqual(N - 3);
  expect(body.match(/"text":" t\d+"/g)).toHaveLength(N);
  expect(body).toContain('"completion_tokens":20');
  expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
});
