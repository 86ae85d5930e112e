/**
 * NATS request-reply round trip on loopback through the Bus (msgpack + zod both ways, mailbox, typed
 * errors) against a raw nats.js client with JSON payloads, on one nats-server started by the test helper,
 * in the same run. Sequential requests (one in flight), p50/p99 latency in microseconds.
 */
import type { BenchSection } from './types.ts';
import { startNatsServer } from '../helpers/nats.ts';
import { Bus, silentLogger } from '../../src/runtime/index.ts';
import { Admission, InferenceRequest, subjects, type InferenceRequest as Req } from '../../protocols/index.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export async function bench(): Promise<BenchSection> {
  const nats = await startNatsServer();
  const log = silentLogger();
  const srv = await Bus.connect({ servers: nats.url, name: 'bench-srv', ...nats.creds('admin'), log });
  const cli = await Bus.connect({ servers: nats.url, name: 'bench-cli', ...nats.creds('admin'), log });
  try {
    const msg = SAMPLES.InferenceRequest as Req;
    const subj = subjects.instanceAdmit('bench');
    srv.serve(subj, InferenceRequest, Admission, async (r) => ({ v: 1 as const, id: r.id, ok: true, instance: 'bench' }));
    const rawSubj = subjects.instanceAdmit('benchraw');
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    srv.nc.subscribe(rawSubj, {
      callback: (_e, m) => {
        const r = JSON.parse(dec.decode(m.data)) as { id: string };
        m.respond(enc.encode(JSON.stringify({ v: 1, id: r.id, ok: true, instance: 'bench' })));
      },
    });
    await srv.nc.flush();
    const N = 3000;
    const runBus = async () => {
      const t: number[] = [];
      for (let i = 0; i < N; i++) {
        const t0 = process.hrtime.bigint();
        await cli.request(subj, InferenceRequest, msg, Admission, { timeoutMs: 2000 });
        t.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      return t;
    };
    const runRaw = async () => {
      const t: number[] = [];
      for (let i = 0; i < N; i++) {
        const t0 = process.hrtime.bigint();
        const m = await cli.nc.request(rawSubj, enc.encode(JSON.stringify(msg)), { timeout: 2000 });
        JSON.parse(dec.decode(m.data));
        t.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      return t;
    };
    // warm up both, then interleave two rounds each to share the machine's noise
    await runBus();
    await runRaw();
    const bus = [...(await runBus()), ...(await runBus())];
    const raw = [...(await runRaw()), ...(await runRaw())];
    const row = (name: string, t: number[]) => ({ path: name, requests: t.length, 'p50 µs': Math.round(pct(t, 50)), 'p99 µs': Math.round(pct(t, 99)) });
    const rb = row('Bus.request (msgpack+zod, InferenceRequest -> Admission)', bus);
    const rr = row('raw nc.request + JSON (baseline)', raw);
    return {
      title: 'NATS request-reply round trip on loopback',
      notes: [
        `nats-server 2.9 on 127.0.0.1 (started by test/helpers/nats.ts with nats.conf), client and responder in one process, one request in flight. ` +
          `p50 ratio Bus/raw = ${(rb['p50 µs'] / rr['p50 µs']).toFixed(2)}, p99 ratio = ${(rb['p99 µs'] / rr['p99 µs']).toFixed(2)}.`,
      ],
      rows: [rb, rr],
    };
  } finally {
    await cli.close();
    await srv.close();
    await nats.stop();
  }
}
