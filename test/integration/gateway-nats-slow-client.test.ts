/**
 * A client that stops reading a stream on the NATS data path (`gateway.dataPath: nats`; docs/DATAPATH.md "A slow client
 * on the NATS data path"), on a real nats-server with a real instance manager and emulated engine (zero-delay steps:
 * tokens come as fast as the path carries them) and the gateway's HTTP layer over the NATS backend (`direct: false`).
 * While the client reads nothing: the gateway holds at most RELAY_HOLD_BYTES of relayed chunks for it (and its socket's
 * bound), its instance stops reading the engine for it (nothing more is published on its stream subject for longer than
 * one pause's lease), and another client's stream on the same instance and gateway completes whole. After
 * `clientStallMs` without a read the client is disconnected and its request cancelled end to end: the instance records
 * it `cancelled` with fewer tokens than asked for (its engine request aborted), and the gateway holds nothing for it.
 * A request from a gateway that grants no credit (no InferenceRequest.relayCredit, as an older gateway's during a rolling
 * upgrade) is streamed whole by the same instance, unpaced, and not ended at the grant lapse.
 */
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emulatedClusterConfig, MODEL, PROMPT, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { slowClient, sseEvents } from '../helpers/slow-client.ts';
import { sleep } from '../helpers/wait.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import { CLIENT_HOLD_BYTES } from '../../actors/gateway/client-flow.ts';
import { RELAY_GRANT_LAPSE_MS, RELAY_HOLD_BYTES, RELAY_WINDOW_BYTES, heldBytesOf } from '../../src/policy/relay-flow.ts';
import { systemClock } from '../../src/runtime/clock.ts';
import { Admission, InferenceRequest, RequestRecord, TokenChunk, subjects, type InferenceRequest as InferenceRequestT, type RequestRecord as RecordT, type TokenChunk as TokenChunkT } from '../../protocols/index.ts';

/** the stalled request's tokens: far more than the client's socket and the kernel's buffers take (~3 MB of events) */
const MAX_TOKENS = 100_000;
const STALL_MS = 15_000;

let cluster: GatewayCluster;
let gw: GatewayServer;
let port: number;
/** the gateway's sockets to its clients, in accept order */
const clients: Socket[] = [];
/** tokens published on each stream subject (by request id), and every request record */
const published = new Map<string, number>();
const records: RecordT[] = [];

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(1, { engine: { args: ['--zero-delay'] } }),
    ready: 1, readyTimeoutMs: 90_000, gatewayId: 'gw-slow-relay',
    backend: () => ({ direct: false, admitTimeoutMs: 10_000, chunkTimeoutMs: 30_000 }),
  });
  const bus = cluster.h.bus;
  bus.subscribe(subjects.streamAll(), TokenChunk, (c) => void published.set(c.id, (published.get(c.id) ?? 0) + c.tokens), { capacity: 1 << 16 });
  bus.subscribe(subjects.telRequest('pool-all'), RequestRecord, (r) => void records.push(r), { capacity: 4096 });
  gw = new GatewayServer({ backend: cluster.backend, port: 0, host: '127.0.0.1', models: [MODEL], clock: systemClock, clientStallMs: STALL_MS, limits: { maxTokensLimit: 120_000 } });
  (gw as unknown as { server: Server }).server.on('connection', (s: Socket) => clients.push(s));
  port = await gw.listen();
}, 180_000);

afterAll(async () => {
  await gw?.close(100);
  await cluster?.stop();
}, 60_000);

const body = (maxTokens: number) => JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: maxTokens, ignore_eos: true, stream: true });

describe('a client that stops reading a relayed stream', () => {
  it('holds the gateway to its bound, pauses the instance, lets other streams flow, then is cut and cancelled end to end', async () => {
    const c = slowClient(port, body(MAX_TOKENS));
    let id: string | undefined;
    let most = 0, mostSocket = 0;
    const sample = () => {
      most = Math.max(most, cluster.backend.relayHeldBytes());
      if (clients[0]) mostSocket = Math.max(mostSocket, (clients[0] as Socket & { _httpMessage?: ServerResponse })._httpMessage?.writableLength ?? 0);
      id ??= [...published.keys()][0];
    };
    // until the instance pauses the stream: the gateway's hold reached its watermark and the relayed tokens stopped coming
    const t0 = Date.now();
    let last = -1;
    for (let still = 0; still < 5 && Date.now() - t0 < 30_000; await sleep(100)) {
      sample();
      const n = id ? published.get(id)! : 0;
      still = n > 0 && n === last ? still + 1 : 0;
      last = n;
    }
    expect(id).toBeDefined();
    const paused = published.get(id!)!;
    expect(paused).toBeLessThan(MAX_TOKENS);
    expect(cluster.backend.counters.relayWaits).toBeGreaterThanOrEqual(1);
    const other = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(300) });
    const text = await other.text();
    const evs = sseEvents(text.replace(/\r\n/g, '\n'));
    expect(evs.some((e) => e.error)).toBe(false);
    expect(evs.map((e) => e.choices[0]?.text ?? '').join('').trim().split(/\s+/)).toHaveLength(300);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    // longer than an instance waits for a grant unheard: the gateway repeats its grant, the instance publishes nothing
    // more for the stalled stream and does not end it
    for (const until = Date.now() + RELAY_GRANT_LAPSE_MS + 500; Date.now() < until; await sleep(100)) sample();
    expect(published.get(id!)! - paused).toBe(0);
    expect(records.find((r) => r.id === id)).toBeUndefined();
    // what the gateway held for the stalled client: under the relay bound, and its socket's under the client bound
    expect(most).toBeGreaterThanOrEqual(RELAY_WINDOW_BYTES / 2);
    expect(most).toBeLessThanOrEqual(RELAY_HOLD_BYTES);
    expect(mostSocket).toBeLessThan(CLIENT_HOLD_BYTES + 256 * 1024);
    // reading nothing for clientStallMs: disconnected, its request cancelled at the instance (engine request aborted, recorded)
    for (const until = Date.now() + STALL_MS + 10_000; !clients[0]!.destroyed && Date.now() < until; await sleep(100)) sample();
    expect(clients[0]!.destroyed).toBe(true);
    let rec: RecordT | undefined;
    for (const until = Date.now() + 10_000; !(rec = records.find((r) => r.id === id)) && Date.now() < until;) await sleep(100);
    expect(rec?.outcome).toBe('cancelled');
    expect(rec!.completionTokens).toBeLessThan(MAX_TOKENS);
    expect(cluster.backend.relayHeldBytes()).toBe(0);
    expect(cluster.backend.counters.relayOverflows).toBe(0);
    c.socket.destroy();
  }, 120_000);
});

describe('a request from a gateway that grants no credit (a rolling upgrade: no InferenceRequest.relayCredit)', () => {
  it('is streamed whole and unpaced, past a window and past the grant lapse, with no grant', async () => {
    const id = 'old-gw-1', n = 5000;
    const chunks: TokenChunkT[] = [];
    let end: (() => void) | undefined;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const bus = cluster.h.bus;
    const sub = bus.subscribe(subjects.stream(id), TokenChunk, (c) => {
      chunks.push(c);
      if (c.done || c.error) end!();
    }, { capacity: 2 * n });
    const now = Date.now();
    const req: InferenceRequestT = {
      v: 1, id, model: MODEL, kind: 'completion', prompt: PROMPT, inputTokens: 8, maxTokens: n, ignoreEos: true,
      arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream(id),
    };
    const a = await bus.request(subjects.clusterIntake(), InferenceRequest, req, Admission, { timeoutMs: 15_000 });
    expect(a.ok).toBe(true);
    await Promise.race([ended, sleep(RELAY_GRANT_LAPSE_MS + 10_000)]);
    sub.unsubscribe();
    const last = chunks.at(-1);
    expect(last?.error).toBeUndefined();
    expect(last?.done).toBe(true);
    expect(chunks.reduce((k, c) => k + c.tokens, 0)).toBe(n);
    expect(chunks.reduce((k, c) => k + heldBytesOf(c), 0)).toBeGreaterThan(2 * RELAY_WINDOW_BYTES);
    expect(chunks.some((c) => c.relayCredit !== undefined)).toBe(false);
  }, 60_000);
});
