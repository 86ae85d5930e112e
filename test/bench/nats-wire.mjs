// The NATS protocol as this process's NATS client sockets carry it, both ways, for the bench's preloads
// (test/bench/device/nats-latency.mjs, scripts/nats-census.ts): each socket whose first read starts with INFO is a NATS
// connection; its bytes written and read are split into protocol lines, a PUB/HPUB/MSG/HMSG's payload skipped by its
// size, whatever the reads' and writes' boundaries (a line or a payload split over two reads is joined).
//   tapNats({ onChunk(out), onOp({ sock, out, op, subject, reply, fields }) -> (payload => void) | undefined })
// onOp's returned function, if any, gets that message's payload (latin1) once it is whole.
import net from 'node:net';

const text = (d) => (typeof d === 'string' ? d : Buffer.from(d.buffer ?? d, d.byteOffset ?? 0, d.byteLength ?? d.length).toString('latin1'));

/** the reply subject's position among a message op's fields, by op: present when the fields are one more than without it. */
const BARE = { MSG: 4, HMSG: 5, PUB: 3, HPUB: 4 };

export function tapNats({ onChunk, onOp }) {
  const state = new WeakMap();
  const feed = (sock, d, out) => {
    let st = state.get(sock);
    if (st === undefined) {
      if (out) return; // the client writes CONNECT after the server's INFO: a socket is known by its first read
      if (!text(d).startsWith('INFO ')) return void state.set(sock, null);
      st = { true: { buf: '', skip: 0 }, false: { buf: '', skip: 0 } };
      state.set(sock, st);
    }
    if (st === null) return;
    onChunk?.(out);
    const p = st[out];
    p.buf += text(d);
    for (;;) {
      if (p.skip > 0) {
        const n = Math.min(p.skip, p.buf.length);
        if (p.payload !== undefined) p.payload += p.buf.slice(0, n);
        p.buf = p.buf.slice(n);
        p.skip -= n;
        if (p.skip > 0) return;
        if (p.payload !== undefined) {
          // the payload's own trailing CRLF is not part of it
          const body = p.payload.slice(0, -2);
          const take = p.take;
          p.payload = p.take = undefined;
          take(body);
        }
      }
      const e = p.buf.indexOf('\r\n');
      if (e < 0) return;
      const line = p.buf.slice(0, e);
      p.buf = p.buf.slice(e + 2);
      const fields = line.split(' ').filter(Boolean);
      const op = (fields[0] ?? '').toUpperCase();
      const bare = BARE[op];
      // MSG subject sid [reply] size, HMSG subject sid [reply] hsize size; PUB subject [reply] size, HPUB subject [reply] hsize size
      const reply = bare !== undefined && fields.length > bare ? fields[op.endsWith('MSG') ? 3 : 2] : undefined;
      const take = onOp({ sock, out, op, subject: fields[1], reply, fields });
      if (bare !== undefined) {
        p.skip = Number(fields[fields.length - 1]) + 2;
        if (take) (p.payload = ''), (p.take = take);
      }
    }
  };
  const write = net.Socket.prototype.write;
  net.Socket.prototype.write = function (d, ...r) {
    try { feed(this, d, true); } catch { /* measuring only */ }
    return write.call(this, d, ...r);
  };
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (ev, d, ...r) {
    if (ev === 'data') try { feed(this, d, false); } catch { /* measuring only */ }
    return emit.call(this, ev, d, ...r);
  };
}
