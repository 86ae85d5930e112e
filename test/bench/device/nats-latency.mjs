// NODE_OPTIONS="--import ./test/bench/device/nats-latency.mjs" NATSLAT=<file>: each gateway process times its admission
// requests on its NATS socket (the PUB written to the reply read) and the instance manager each admission it answers
// (the MSG read to the reply written), appending percentiles to NATSLAT every 3 s: what lies outside both is
// nats-server and the kernel between them.
import net from 'node:net';
import { appendFileSync } from 'node:fs';
const a = process.argv.indexOf('actor');
if (a >= 0 && (process.argv[a + 1] === 'gateway' || process.argv[a + 1] === 'instance')) {
  const role = process.argv[a + 1];
  const pend = new Map(); const ds = [];
  const now = () => performance.now();
  const scan = (d, out) => {
    const s = typeof d === 'string' ? d : Buffer.from(d.buffer ?? d, d.byteOffset ?? 0, d.byteLength ?? d.length).toString('latin1');
    if (s.length > 65536) return;
    const re = out ? /(?:^|\r\n)H?PUB ([^ \r\n]+)(?: ([^ \r\n]+))? \d+(?: \d+)?\r\n/g : /(?:^|\r\n)H?MSG ([^ \r\n]+) [^ \r\n]+(?: ([^ \r\n]+))? \d+(?: \d+)?\r\n/g;
    for (const m of s.matchAll(re)) {
      const subj = m[1]; let reply = m[2];
      // a PUB with one number after subject: no reply; regex captured the byte count? guard
      if (reply && /^\d+$/.test(reply)) reply = undefined;
      if (role === 'gateway') {
        if (out && subj.endsWith('.admit') && reply) pend.set(reply, now());
        else if (!out && pend.has(subj)) { ds.push(now() - pend.get(subj)); pend.delete(subj); }
      } else {
        if (!out && subj.endsWith('.admit') && reply) pend.set(reply, now());
        else if (out && pend.has(subj)) { ds.push(now() - pend.get(subj)); pend.delete(subj); }
      }
    }
  };
  const w = net.Socket.prototype.write;
  net.Socket.prototype.write = function (d, ...r) { try { scan(d, true); } catch {} return w.call(this, d, ...r); };
  const e = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (ev, d, ...r) { if (ev === 'data') try { scan(d, false); } catch {} return e.call(this, ev, d, ...r); };
  setInterval(() => {
    if (ds.length < 50) return;
    const x = ds.splice(0).sort((p, q) => p - q); const q = (p) => x[Math.floor(p * (x.length - 1))].toFixed(3);
    appendFileSync(process.env.NATSLAT, `${role} ${process.pid} n=${x.length} p10 ${q(.1)} p50 ${q(.5)} p90 ${q(.9)} p99 ${q(.99)}\n`);
  }, 3000).unref();
}
