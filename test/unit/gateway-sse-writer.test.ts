/**
 * The gateway's SSE writer (actors/gateway/sse-writer.ts): the first batch (TTFT) goes out at once, the
 * batches of one event-loop turn after it leave in one write at the end of the turn, a batch past the byte
 * bound at once; the bytes a client reads are exactly the events in their order, over a real HTTP socket too.
 */
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SseWriter } from '../../actors/gateway/sse-writer.ts';

/** a ServerResponse that records its writes. */
function fakeRes() {
  const writes: string[] = [];
  const r = {
    writes,
    ended: undefined as string | undefined,
    writableEnded: false,
    destroyed: false,
    write(s: string) {
      writes.push(s);
      return true;
    },
    end(s: string) {
      r.ended = s;
      r.writableEnded = true;
    },
  };
  return r;
}
const turn = () => new Promise<void>((r) => setImmediate(r));
const ev = (i: number) => `data: {"i":${i}}\n\n`;

describe('SseWriter', () => {
  it('writes the first batch at once and the later batches of one turn in one write at its end', async () => {
    const f = fakeRes();
    const w = new SseWriter(f as unknown as ServerResponse);
    w.add(ev(0));
    w.flush();
    expect(f.writes).toEqual([ev(0)]);
    for (let i = 1; i <= 3; i++) {
      w.add(ev(i));
      w.flush();
    }
    expect(f.writes).toHaveLength(1);
    await turn();
    expect(f.writes).toEqual([ev(0), ev(1) + ev(2) + ev(3)]);
    w.add(ev(4));
    w.flush();
    await turn();
    expect(f.writes).toEqual([ev(0), ev(1) + ev(2) + ev(3), ev(4)]);
  });

  it('with a gate (a resumable stream\'s journal): nothing is written, the end included, while it is held; at its release what was held leaves in one write', async () => {
    const f = fakeRes();
    let held = true;
    const waiting: (() => void)[] = [];
    const gate = { held: () => held, onRelease: (fn: () => void) => void waiting.push(fn) };
    const release = () => {
      held = false;
      for (const fn of waiting.splice(0)) fn();
    };
    const w = new SseWriter(f as unknown as ServerResponse, undefined, gate);
    w.add(ev(0));
    w.flush();
    w.add(ev(1));
    w.flush();
    await turn();
    expect(f.writes).toEqual([]);
    release();
    expect(f.writes).toEqual([ev(0) + ev(1)]);
    held = true;
    w.add(ev(2));
    w.flush();
    w.end('data: [DONE]\n\n');
    w.drop(); // the relay's own cleanup: an end asked for still goes out
    await turn();
    expect(f.ended).toBeUndefined();
    release();
    expect(f.ended).toBe(ev(2) + 'data: [DONE]\n\n');
    expect(waiting).toHaveLength(0);
  });

  it('writes at once past the byte bound, folds held events into the end, and drops them for a gone client', async () => {
    const f = fakeRes();
    const w = new SseWriter(f as unknown as ServerResponse, 40);
    w.add(ev(0));
    w.flush();
    w.add(ev(1));
    w.flush();
    expect(f.writes).toEqual([ev(0)]);
    w.add('x'.repeat(40));
    w.flush();
    expect(f.writes).toEqual([ev(0), ev(1) + 'x'.repeat(40)]);
    w.add(ev(2));
    w.flush();
    w.end('data: [DONE]\n\n');
    expect(f.ended).toBe(ev(2) + 'data: [DONE]\n\n');
    await turn();
    expect(f.writes).toHaveLength(2);

    const g = fakeRes();
    const d = new SseWriter(g as unknown as ServerResponse);
    d.add(ev(0));
    d.flush();
    d.add(ev(1));
    d.flush();
    d.drop();
    await turn();
    expect(g.writes).toEqual([ev(0)]);
  });

  it('a client over HTTP reads exactly the events in order, in one socket write per turn, framed without res.write after the first', async () => {
    const n = 200;
    let writes = 0;
    let resWrites = 0;
    const srv = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const orig = res.write.bind(res) as (s: string) => boolean;
      res.write = ((s: string) => (resWrites++, orig(s))) as typeof res.write;
      // every write(v) the socket makes (net.Socket's one way to the kernel)
      const sock = res.socket as unknown as { _writeGeneric: (...a: unknown[]) => unknown };
      const gen = sock._writeGeneric.bind(sock);
      sock._writeGeneric = (...a: unknown[]) => (writes++, gen(...a));
      const w = new SseWriter(res);
      let i = 0;
      const step = () => {
        // three batches per turn, as three engine reads of one stream in one poll phase
        for (let k = 0; k < 3 && i < n; k++, i++) {
          w.add(ev(i));
          w.flush();
        }
        if (i < n) setImmediate(step);
        else w.end('data: [DONE]\n\n');
      };
      step();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1' }, (res) => {
        let s = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (s += d));
        res.on('end', () => resolve(s));
      });
      req.on('error', reject);
      req.end();
    });
    srv.close();
    expect(body).toBe(Array.from({ length: n }, (_, i) => ev(i)).join('') + 'data: [DONE]\n\n');
    // the first batch alone (with the head), the rest of its turn in one write, then one write per turn of
    // three batches but the last, whose batches go with the end; only the first through res.write
    expect(writes).toBe(2 + Math.ceil((n - 3) / 3));
    expect(resWrites).toBe(1);
  });
});
