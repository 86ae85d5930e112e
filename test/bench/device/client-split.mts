// A closed loop of N raw-socket clients (kept-alive, one request at a time each) against the bench's one-instance cluster
// (scripts/bench-cluster.ts) with W gateway workers, gateway.dataPlane PLANE: per request the client's send to its first
// byte and to its end, so that the time outside the gateway's own first-token marks shows. Run from the repo root:
//   W=8 N=16 S=8 WARM=8 PLANE=js [CREDITS=0] node --import tsx test/bench/device/client-split.mts
// CREDITS: the instance's engine.gatewayCredits (0: every request takes the admission round trip).
import net from 'node:net';
import { startBenchCluster, BENCH_MODEL } from '../../../scripts/bench-cluster.ts';
const W = Number(process.env.W ?? 1), N = Number(process.env.N ?? 4), S = Number(process.env.S ?? 10), WARM = Number(process.env.WARM ?? 8);
const c = await startBenchCluster({ tree: process.cwd(), name: 'lat', gateway: { workers: W, dataPlane: process.env.PLANE ?? 'native' }, ...(process.env.CREDITS ? { engine: { gatewayCredits: Number(process.env.CREDITS) } } : {}) });
const u = new URL(c.base);
const body = JSON.stringify({ model: BENCH_MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true });
const reqText = `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const rec: { first: number; end: number; t: number }[] = [];
let stop = false, measuring = false;
async function client() {
  const s = net.connect(Number(u.port), u.hostname); s.setNoDelay(true);
  await new Promise((r) => s.once('connect', r));
  for (;;) {
    if (stop) { s.destroy(); return; }
    const t0 = performance.now(); let first = 0; let buf = '';
    await new Promise<void>((res) => {
      const on = (d: Buffer) => { if (!first) first = performance.now(); buf += d.toString('latin1'); if (buf.endsWith('0\r\n\r\n')) { s.off('data', on); res(); } };
      s.on('data', on); s.write(reqText);
    });
    const t1 = performance.now();
    if (measuring) rec.push({ first: first - t0, end: t1 - t0, t: t0 });
  }
}
const loops = Array.from({ length: N }, () => client());
await new Promise((r) => setTimeout(r, WARM * 1000)); measuring = true;
const ta = performance.now();
await new Promise((r) => setTimeout(r, S * 1000)); measuring = false; stop = true;
const el = (performance.now() - ta) / 1000;
await Promise.allSettled(loops);
const q = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!.toFixed(3);
const f = rec.map((r) => r.first), e = rec.map((r) => r.end), tail = rec.map((r) => r.end - r.first);
console.log(`W=${W} N=${N}: ${(rec.length / el).toFixed(1)} req/s; first byte p50 ${q(f, .5)} p90 ${q(f, .9)} p99 ${q(f, .99)}; end p50 ${q(e, .5)} p90 ${q(e, .9)} p99 ${q(e, .99)}; first->end p50 ${q(tail, .5)} p90 ${q(tail, .9)} p99 ${q(tail, .99)} ms`);
await c.stop();
