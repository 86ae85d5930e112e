// NODE_OPTIONS="--import ./test/bench/device/nats-latency.mjs" NATSLAT=<file>: each gateway process times, on its NATS
// socket, its admission requests (`.admit`) and its credit top-ups (a `.leg` report asked as a request), from the PUB
// written to the reply read; the instance manager each one it answers, from the MSG read to the reply written. Every
// 3 s each process appends its percentiles per kind to NATSLAT: what lies outside both is nats-server and the kernel
// between them. The protocol is parsed whole (test/bench/nats-wire.mjs): a line split over two reads is counted.
import { appendFileSync } from 'node:fs';
import { tapNats } from '../nats-wire.mjs';

const a = process.argv.indexOf('actor');
const role = a >= 0 ? process.argv[a + 1] : undefined;
if (role === 'gateway' || role === 'instance') {
  const pend = new Map();
  const samples = { admit: [], topup: [] };
  const kindOf = (subject) => (subject.endsWith('.admit') ? 'admit' : subject.endsWith('.leg') ? 'topup' : undefined);
  // the gateway asks (written) and is answered (read); the instance is asked (read) and answers (written)
  const asks = role === 'gateway';
  tapNats({
    onOp: ({ out, op, subject, reply }) => {
      if (subject === undefined) return;
      if (out === asks && reply !== undefined && (op === 'PUB' || op === 'HPUB' || op === 'MSG' || op === 'HMSG')) {
        const kind = kindOf(subject);
        if (kind) pend.set(reply, { kind, t: performance.now() });
      } else if (out !== asks) {
        const p = pend.get(subject);
        if (p) {
          pend.delete(subject);
          samples[p.kind].push(performance.now() - p.t);
        }
      }
      return undefined;
    },
  });
  setInterval(() => {
    for (const [kind, ds] of Object.entries(samples)) {
      if (ds.length < 50) continue;
      const x = ds.splice(0).sort((p, q) => p - q);
      const q = (p) => x[Math.floor(p * (x.length - 1))].toFixed(3);
      appendFileSync(process.env.NATSLAT, `${role} ${process.pid} ${kind} n=${x.length} p10 ${q(0.1)} p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)}\n`);
    }
    // a request never answered (its deadline passed) is not a sample
    const old = performance.now() - 60_000;
    for (const [k, p] of pend) if (p.t < old) pend.delete(k);
  }, 3000).unref();
}
