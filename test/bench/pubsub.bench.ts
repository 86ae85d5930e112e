/**
 * Public pub/sub API under load (issue 20), on a real cluster (nats-server with the project's permissions,
 * cluster and pool managers, a node agent, one TP2 Llama-3.1-8B instance on an emulated engine at 1x):
 * 1. the telemetry rate of every subject while the cluster serves a steady load (msgs/s and bytes/s, counted
 *    by an admin subscriber on `dyn.v1.>`);
 * 2. the managers' decision latency with and without a dead consumer: a raw NATS client subscribed to
 *    everything (`>`) that never reads its socket, plus a durable consumer of each stream that never acks.
 *    Latency = intake request -> Admission at the sender (cluster classification + pool dispatch + instance
 *    admission) and the managers' own processing time per request from the NATS Service API stats
 *    (cluster-intake and pool dispatch endpoints, receipt to reply).
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect } from '@nats-io/transport-node';
import { Svcm, type ServiceStats } from '@nats-io/services';
import { DynamoClient } from '../../src/client/index.ts';
import { Admission, CATALOG_FOR_BENCH, InferenceRequest, subjects } from './pubsub-catalog.ts';
import { oneTp2InstanceConfig, startControlPlane, type Harness } from '../integration/control-harness.ts';
import type { BenchSection } from './types.ts';

const RPS = 4;
const PHASE_S = 20;

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function load(h: Harness, seconds: number, first: number): Promise<number[]> {
  const lat: number[] = [];
  const pending: Promise<void>[] = [];
  const end = Date.now() + seconds * 1000;
  let i = first;
  let next = Date.now();
  while (Date.now() < end) {
    const now = Date.now();
    while (next <= now) {
      const id = `b${i++}-${Math.random().toString(36).slice(2, 7)}`;
      const t = Date.now();
      const req = {
        v: 1 as const, id, model: 'llama3.1-8b', kind: 'completion' as const, prompt: 'hello '.repeat(10), inputTokens: 100, maxTokens: 32,
        ignoreEos: true, arrivalMs: t, giveUpAtMs: t + 60_000, streamSubject: subjects.stream(id),
      };
      pending.push(h.bus.request(subjects.clusterIntake(), InferenceRequest, req, Admission, { timeoutMs: 10_000 }).then(
        (a) => {
          if (a.ok) lat.push(Date.now() - t);
        },
        () => undefined,
      ));
      next += 1000 / RPS;
    }
    await new Promise((r) => setTimeout(r, Math.max(1, next - Date.now())));
  }
  await Promise.all(pending);
  return lat;
}

async function serviceStats(h: Harness): Promise<Map<string, { n: number; ns: number }>> {
  const nc = await connect({ servers: h.nats.url, ...h.nats.creds('observer') });
  const out = new Map<string, { n: number; ns: number }>();
  const it = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).client({ strategy: 'stall', maxWait: 1500 }).stats();
  for await (const s of it as AsyncIterable<ServiceStats>) {
    for (const e of s.endpoints ?? []) if (e.subject === subjects.clusterIntake() || e.subject === subjects.poolDispatch('pool-all')) {
      const k = e.subject === subjects.clusterIntake() ? 'cluster intake' : 'pool dispatch';
      const x = out.get(k) ?? { n: 0, ns: 0 };
      out.set(k, { n: x.n + e.num_requests, ns: x.ns + e.processing_time });
    }
  }
  await nc.close();
  return out;
}

/** A NATS client that subscribes to everything and then never reads its socket (TCP backpressure to the server). */
function deadConsumer(port: number, creds: { user: string; pass: string }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('data', () => {
      s.write(`CONNECT {"verbose":false,"pedantic":false,"user":"${creds.user}","pass":"${creds.pass}","name":"dead-consumer"}\r\nSUB > 1\r\nPING\r\n`);
      s.once('data', () => {
        s.pause(); // never read again
        resolve(s);
      });
    });
  });
}

export async function bench(): Promise<BenchSection> {
  const h = await startControlPlane(oneTp2InstanceConfig(600));
  try {
    // 1. rates per subject
    const admin = await connect({ servers: h.nats.url, ...h.nats.creds('admin') });
    const counts = new Map<string, { n: number; bytes: number }>();
    const sub = admin.subscribe('dyn.v1.>', {
      callback: (_e, m) => {
        const entry = CATALOG_FOR_BENCH.find((c) => c.re.test(m.subject));
        const k = entry?.subject ?? m.subject;
        const x = counts.get(k) ?? { n: 0, bytes: 0 };
        counts.set(k, { n: x.n + 1, bytes: x.bytes + m.data.length });
      },
    });
    const t0 = Date.now();
    const _base = await load(h, PHASE_S, 0);
    const elapsed = (Date.now() - t0) / 1000;
    sub.unsubscribe();
    await admin.close();
    const statsA0 = await serviceStats(h);
    const base2 = await load(h, PHASE_S, 100_000);
    const statsA1 = await serviceStats(h);

    // 2. the same load with a dead core-NATS consumer and two stream consumers that never ack
    const dead = await deadConsumer(h.nats.port, h.nats.creds('admin'));
    const client = await DynamoClient.connect({ servers: h.nats.url, ...h.nats.creds('observer') });
    const stuckEvents = await client.eventHistory({ durable: 'bench-stuck-events', maxAckPending: 10 });
    const stuckRecords = await client.requestRecords({ durable: 'bench-stuck-records', maxAckPending: 10 });
    const neverAck = async (s: AsyncIterable<unknown>) => {
      // read, never ack
      for await (const _ of s) continue;
    };
    void neverAck(stuckEvents);
    void neverAck(stuckRecords);
    const statsB0 = await serviceStats(h);
    const stalled = await load(h, PHASE_S, 200_000);
    const statsB1 = await serviceStats(h);
    const deadAlive = !dead.destroyed && !dead.readableEnded;
    const deadBuffered = dead.readableLength;
    dead.destroy();
    await stuckEvents.stop();
    await stuckRecords.stop();
    await client.close();

    const avgMs = (a: Map<string, { n: number; ns: number }>, b: Map<string, { n: number; ns: number }>, k: string) => {
      const x = a.get(k)!, y = b.get(k)!;
      return y.n > x.n ? ((y.ns - x.ns) / (y.n - x.n) / 1e6).toFixed(3) : 'n/a';
    };
    // `_base`: the first phase warms the cluster up (first plan, clock epochs); its latencies are not compared
    const all = base2;
    const rows: Record<string, string | number>[] = [];
    for (const [k, x] of [...counts.entries()].sort((a, b) => b[1].n - a[1].n)) {
      rows.push({ subject: k, 'msgs/s': (x.n / elapsed).toFixed(2), 'bytes/s': Math.round(x.bytes / elapsed), 'bytes/msg': Math.round(x.bytes / x.n) });
    }
    return {
      title: 'Public pub/sub API: telemetry rates per subject; decision latency with a dead consumer',
      notes: [
        `Real cluster: nats-server (project permissions), cluster + pool manager, node agent, one TP2 Llama-3.1-8B instance (emulated engine, 1x), ${RPS} req/s (100-token prompts, 32 output tokens). Rates: everything on dyn.v1.> for ${elapsed.toFixed(1)} s, counted by an admin subscriber; this config's liveness.statusIntervalMs is 250 ms (the ctl.*stat subjects run at 1/s per publisher with the default 1 s); 5 actors send heartbeats.`,
        `Decision latency (intake -> Admission at the sender, ${PHASE_S} s per phase at ${RPS} req/s, after a ${PHASE_S} s warm-up): without a dead consumer p50 ${pct(all, 50)} ms, p99 ${pct(all, 99)} ms (n=${all.length}); with one p50 ${pct(stalled, 50)} ms, p99 ${pct(stalled, 99)} ms (n=${stalled.length}).`,
        `Managers' own processing time per request (NATS Service API stats, receipt to reply), without / with the dead consumer: cluster intake ${avgMs(statsA0, statsA1, 'cluster intake')} / ${avgMs(statsB0, statsB1, 'cluster intake')} ms, pool dispatch ${avgMs(statsA0, statsA1, 'pool dispatch')} / ${avgMs(statsB0, statsB1, 'pool dispatch')} ms.`,
        `Dead consumer: a raw NATS client subscribed to '>' (every subject, token streams included) that never reads its socket, plus durable consumers of DYN_V1_EVENTS and DYN_V1_REQUESTS that never ack (max_ack_pending 10); it left ${(deadBuffered / 1024).toFixed(0)} KiB unread in its own socket buffer; its connection ${deadAlive ? 'was still open at the end (the server buffers for it up to its max_pending, then cuts it off as a slow consumer)' : 'was closed by the server (slow consumer)'}. Publishers never wait for subscribers: core NATS publications are fire-and-forget and the streams append on the server.`,
      ],
      rows,
    };
  } finally {
    await h.stop();
  }
}
