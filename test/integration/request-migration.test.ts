/**
 * The direct data path and request migration (issues 19 and 13, docs/DATAPATH.md), on a real nats-server
 * with the project's permissions, real actor processes (cluster, pool and node managers, two instance
 * managers) and emulated engines. The gateway is the real NatsBackend on a gateway-role connection.
 *
 * - A direct request streams from the engine the instance granted; the instance still accounts it: its
 *   RequestRecord has the tokens, TTFT, TBT and energy, and the client's usage has the same energy.
 * - A client that goes away cancels it: the instance records it cancelled and frees its slot.
 * - A client answered at its last chunk (the HTTP layer stops reading there) is not cancelled: every request's
 *   record is `ok`, and no Cancel is sent for it.
 * - SIGKILL of the serving engine, then of the serving instance manager, mid-stream (300-token answers): the request continues as
 *   a new leg wherever the pool sends it (the peer, or the victim's id once it is back). The client sees one
 *   stream (seq contiguous, every token once, exactly max_tokens), and the leg that finished was asked for
 *   exactly the prompt plus the text the client had received: its prompt token count equals the engine
 *   tokenizer's count of that text. Usage sums the legs' energy: the dead leg's as its instance reports it
 *   after an engine kill; after an instance kill (nobody reports it), the gateway's estimate from that instance's
 *   telemetry, labelled in usage.energyEstimatedJ. The continuation legs' records name their request
 *   (RequestRecord.request); after an instance kill the gateway records the dead leg with its estimate
 *   (RequestRecord.energyEstimatedJ), so the records of the request sum to the client's usage energy.
 * - With migrationLimit 0 the same kill ends the stream with an explicit retryable error.
 * - An engine killed mid tool call (chat, tool_choice required): the stream ends with an explicit retryable error and
 *   is not continued (a text-only continuation would make the model write the call again); the call's name came once.
 * - With a 16-byte cap on the text kept for migration, per stream (migrationMaxBytes) or across the gateway's streams
 *   (migrationMaxTotalBytes), a stream past it keeps streaming, and when its instance manager dies it is not migrated:
 *   it ends with an explicit retryable error, and the text it kept leaves the gateway's total.
 * - n choices through the gateway's HTTP layer: each choice is its own request, so the choice whose engine
 *   dies migrates on its own and every choice still ends complete, each with its own finish_reason.
 * - One choice through the gateway's HTTP layer on the native data plane (test/helpers/native-http.ts): the engine
 *   SIGKILLed while the native thread carries the stream, the stream continues on another leg, every token once.
 *
 * The gateway routes requests itself (GatewayRouter, the request plane of docs/DATAPATH.md), as the gateway
 * actor does by default: one request-reply to the chosen instance; the first case checks that neither the
 * cluster intake nor a pool's dispatch subject carried the request and that the pool leader's status counts
 * it, and every migration case runs over that plane (a leg on the peer is routed by the gateway too).
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortAfter, completionRequest as request, emulatedClusterConfig, expectOneStream, MODEL, PROMPT, servingPids as pidsServing, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { buildNativePlane, nativeHttpGateway } from '../helpers/native-http.ts';
import type { Harness } from './control-harness.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import OpenAI from 'openai';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import type { GatewayRouter } from '../../actors/gateway/router.ts';
import { Admission, Cancel, InferenceRequest as InferenceRequestCodec, InstanceTelemetry, LegReport, PoolStatus, RequestRecord, controlSubjects, subjects, TokenChunk as TokenChunkCodec, type InferenceRequest, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

let cluster: GatewayCluster;
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
let router: GatewayRouter;
/** requests seen on the cluster intake and on the pools' dispatch subjects (by id). */
const viaIntake = new Set<string>();
const viaDispatch = new Set<string>();
const poolStatuses: { atMs: number; st: PoolStatus }[] = [];
const records = new Map<string, Rec>();
/** messages on each request's stream subject, and the leg reports each request's instance got (by id). */
const onStream = new Map<string, TokenChunk[]>();
const legReports = new Map<string, string[]>();
/** each instance's power readings (InstanceTelemetry.powerW). */
const powerSeen = new Map<string, number[]>();

/** timeouts.directStartMs of this suite: how long an untaken grant holds its seat */
const DIRECT_START_MS = 3000;

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(2, { timeouts: { directStartMs: DIRECT_START_MS } }),
    ready: 2, readyTimeoutMs: 60_000,
    gatewayId: 'gw-mig',
    backend: () => ({ chunkTimeoutMs: 20_000 }),
  });
  ({ h, gw, backend, router } = cluster);
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.set(r.id, r), { capacity: 4096 });
  h.bus.subscribe(subjects.clusterIntake(), InferenceRequestCodec, (r) => void viaIntake.add(r.id), { capacity: 4096 });
  h.bus.subscribe(subjects.poolDispatch('pool-all'), InferenceRequestCodec, (r) => void viaDispatch.add(r.id), { capacity: 4096 });
  h.bus.subscribe(subjects.streamAll(), TokenChunkCodec, (c) => void onStream.set(c.id, [...(onStream.get(c.id) ?? []), c]), { capacity: 65536 });
  h.bus.subscribe(subjects.instanceLegAll(), LegReport, (r) => void legReports.set(r.id, [...(legReports.get(r.id) ?? []), r.phase]), { capacity: 4096 });
  h.bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => void powerSeen.set(t.id, [...(powerSeen.get(t.id) ?? []), t.powerW].slice(-600)), { capacity: 4096 });
  h.bus.subscribe(controlSubjects.poolStatusAll(), PoolStatus, (st) => void poolStatuses.push({ atMs: Date.now(), st }), { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

/** Streams `req`; `onChunk` may act mid-stream (a kill). Returns every chunk the client saw. */
async function run(req: InferenceRequest, onChunk?: (c: TokenChunk, tokensSoFar: number) => void, b: NatsBackend = backend): Promise<TokenChunk[]> {
  const ac = new AbortController();
  const out: TokenChunk[] = [];
  let n = 0;
  for await (const c of await b.submit(req, ac.signal)) {
    out.push(c);
    n += c.tokens;
    onChunk?.(c, n);
  }
  return out;
}

function checkOneStream(chunks: TokenChunk[], maxTokens: number): string {
  if (process.env.DYN_DEBUG) console.log(JSON.stringify(chunks.map((c) => [c.seq, c.tokens, c.text, c.instance])));
  return expectOneStream(chunks, maxTokens);
}

/**
 * The processes serving on `instance` now: its instance manager and its engine (the manager's child). Looked up
 * when the kill is due, from a stream the engine is serving: a lookup made before (from the cluster's status,
 * which lags) may find an engine that a previous kill left restarting, or none yet.
 */
function servingPids(instance: string): { im: number; engine: number } {
  const { im, engine } = pidsServing(h, instance);
  if (!(im > 0 && engine > 0)) throw new Error(`no serving processes of ${instance} (instance manager ${im}, engine ${engine})`);
  return { im, engine };
}

describe('request plane: the gateway routes, the instance admits (one round trip)', () => {
  it('neither intake nor a pool dispatch carries the request; the pool leader counts it from the instance status', async () => {
    const id = `rp-${Date.now()}`;
    // the router routes once it has the table and a fresh ready status of an instance (a loaded machine may deliver
    // them late): until then a request goes to the intake, which is not what this case is about
    await waitFor(() => (router.plan({ ...request(`rp-probe-${Date.now()}`, 1), probe: true })?.pools.length ? true : undefined), 10_000, 'a route at the gateway');
    const routed = backend.counters.routed;
    let during: PoolStatus | undefined;
    let instance: string | undefined;
    const chunks = await run(request(id, 150), (c, n) => {
      instance ??= c.instance;
      // mid-stream: the pool leader's own status (from its instances' statuses) shows the request running
      if (n >= 60 && !during) during = poolStatuses.findLast((p) => p.st.instances.some((i) => i.id === instance && i.running > 0))?.st;
    });
    checkOneStream(chunks, 150);
    // what the request went through, in every message below: a failure on a loaded machine says which step differed
    const seen = () => JSON.stringify({ routed: backend.counters.routed - routed, viaIntake: viaIntake.has(id), viaDispatch: viaDispatch.has(id), during: during !== undefined, onStream: onStream.get(id)?.map((c) => (c.grant ? 'grant' : c.hold ? 'hold' : c.seq)), legReports: legReports.get(id), counters: backend.counters });
    expect(backend.counters.routed, seen()).toBe(routed + 1);
    const rec = await waitFor(() => records.get(id), 5000, 'the request record');
    expect(rec.outcome, seen()).toBe('ok');
    expect(rec.pool, seen()).toBe('pool-all');
    expect(rec.instance, seen()).toBe(instance);
    expect(viaIntake.has(id), seen()).toBe(false);
    expect(viaDispatch.has(id), seen()).toBe(false);
    expect(during, `the pool leader's status counting the routed request: ${seen()}`).toBeDefined();
    // it started with its admission: the grant came in the admission reply, nothing on its stream subject; the
    // instance heard of it twice (the first token, then the end), never a separate 'started'
    expect(onStream.get(id), seen()).toBeUndefined();
    expect(legReports.get(id), seen()).toEqual(['first_token', 'end']);
  }, 60_000);
});

describe('direct data path', () => {
  it('streams from the granted engine; the instance records tokens, TTFT, TBT and energy, as the client usage says', async () => {
    const id = `dp-ok-${Date.now()}`;
    const chunks = await run(request(id, 40));
    checkOneStream(chunks, 40);
    expect(chunks[0]!.ttftMs).toBeGreaterThan(0);
    const rec = await waitFor(() => records.get(id), 5000, 'the request record');
    expect(rec.outcome).toBe('ok');
    expect(rec.completionTokens).toBe(40);
    expect(rec.instance).toBe(chunks[0]!.instance);
    expect(rec.ttftMs).toBeGreaterThan(0);
    expect(rec.tbtMeanMs).toBeGreaterThan(5); // ~30 ms per token at a quarter of real time
    expect(rec.energyJ).toBeGreaterThan(0);
    const usage = chunks[chunks.length - 1]!.usage!;
    expect(usage.energyJ).toBeCloseTo(rec.energyJ, 6);
    expect(usage.energySource).toBe('modelled');
  }, 30_000);

  it('a client that goes away cancels the request at its instance (recorded cancelled, slot freed)', async () => {
    const id = `dp-cancel-${Date.now()}`;
    // the client goes away at its 5th token
    const instance = await abortAfter(backend, request(id, 300), 5);
    const rec = await waitFor(() => records.get(id), 5000, 'the cancelled record');
    expect(rec.outcome).toBe('cancelled');
    expect(rec.instance).toBe(instance);
    // its slot is free again: the instance reports nothing running
    let running = -1;
    for (let i = 0; i < 30 && running !== 0; i++) {
      const s = await h.status();
      running = s?.pools[0]!.instances.find((x) => x.id === instance)?.running ?? -1;
      if (running !== 0) await sleep(200);
    }
    expect(running).toBe(0);
  }, 30_000);

  it('a request the HTTP layer stops reading at its last chunk is recorded ok, and no Cancel is sent for it', async () => {
    // the HTTP layer leaves the token stream at its done chunk (a JSON answer, or [DONE]): the request ended
    // there, and a Cancel sent then would overtake the end report the gateway holds to the end of the turn
    // (the instance would record the request cancelled, which the dashboard does not count)
    const ids: string[] = [];
    const tee: GatewayBackend = {
      submit: (req, signal) => (ids.push(req.id), backend.submit(req, signal)),
      tokenize: (r) => backend.tokenize(r),
    };
    const cancels = new Set<string>();
    const sub = h.bus.subscribe(subjects.cancelAll(), Cancel, (c) => void cancels.add(c.id), { capacity: 4096 });
    const server = new GatewayServer({ backend: tee, port: 0, models: [MODEL] });
    const port = await server.listen();
    try {
      const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 30_000 });
      const streamed = async () => {
        let text = '';
        for await (const ch of await client.completions.create({ model: MODEL, prompt: 'stream', max_tokens: 20, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming)) text += ch.choices[0]?.text ?? '';
        return text;
      };
      // as the dashboard test of test/e2e/cluster.test.ts: six answers at once in one JSON each, and a stream
      const out = await Promise.all([...Array.from({ length: 6 }, (_, i) => client.completions.create({ model: MODEL, prompt: `load ${i}`, max_tokens: 30, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming).then((r) => r.choices[0]!.text)), streamed()]);
      expect(out.every((t) => t.length > 0)).toBe(true);
      expect(ids).toHaveLength(7);
      const recs = await waitFor(() => (ids.every((id) => records.has(id)) ? ids.map((id) => records.get(id)!) : undefined), 5000, 'the records of the 7 requests');
      expect(recs.map((r) => r.outcome)).toEqual(ids.map(() => 'ok'));
      // (ids are in the order the gateway took the requests in, which need not be the order they were sent in)
      expect(recs.map((r) => r.completionTokens).sort((a, b) => a - b)).toEqual([20, 30, 30, 30, 30, 30, 30]);
      // a Cancel would have left with the answer, before the records came: none for these requests
      await sleep(300);
      expect(ids.filter((id) => cancels.has(id))).toEqual([]);
    } finally {
      sub.unsubscribe();
      await server.close(100);
    }
  }, 30_000);

  it('a grant no gateway takes (it gave up or died before the admission came back) frees its seat within directStartMs', async () => {
    const id = `dp-orphan-${Date.now()}`;
    const chunks: TokenChunk[] = [];
    // the gateway's side, minus the gateway: the admission asked for, the grant received, nothing streamed
    const sub = gw.subscribe(subjects.stream(id), TokenChunkCodec, (c) => void chunks.push(c), { capacity: 64 });
    const t0 = Date.now();
    // asking for the grant in the reply through intake changes nothing: the pool leader's admission never carries it
    const adm = await gw.request(subjects.clusterIntake(), InferenceRequestCodec, { ...request(id, 300), direct: true, replyGrant: true }, Admission, { timeoutMs: 10_000 });
    expect(adm.ok).toBe(true);
    expect(adm.grant).toBeUndefined();
    const grant = await waitFor(() => chunks.find((c) => c.grant), 5000, 'the grant');
    const end = await waitFor(() => chunks.find((c) => c.error), DIRECT_START_MS + 5000, 'the instance ending the untaken grant');
    const took = Date.now() - t0;
    sub.unsubscribe();
    expect(end.error).toMatchObject({ code: 'timeout', retryable: true });
    expect(took).toBeGreaterThanOrEqual(DIRECT_START_MS - 500);
    expect(took).toBeLessThan(DIRECT_START_MS + 5000);
    const rec = await waitFor(() => records.get(id), 5000, 'the record');
    expect(rec.outcome).toBe('failed');
    // the seat is free again
    let running = -1;
    for (let i = 0; i < 30 && running !== 0; i++) {
      const s = await h.status();
      running = s?.pools[0]!.instances.find((x) => x.id === grant.instance)?.running ?? -1;
      if (running !== 0) await sleep(200);
    }
    expect(running).toBe(0);
  }, 30_000);
});

describe('request migration (SIGKILL mid-stream)', () => {
  async function migrateAfterKill(kill: 'engine' | 'instance'): Promise<void> {
    const id = `mig-${kill}-${Date.now()}`;
    const max = 300;
    let victim: string | undefined;
    let atKill = -1;
    const before = backend.counters.migrated;
    let textAtKill = '';
    let killedPid = 0;
    let aliveAfterKill: boolean | string = 'not checked';
    let killedAt = 0;
    let firstAt = 0;
    const estimatedBefore = backend.counters.energyEstimated;
    const seenText: string[] = [];
    const chunks = await run(request(id, max), (c, n) => {
      seenText.push(c.text);
      victim ??= c.instance;
      firstAt ||= Date.now();
      if (atKill < 0 && n >= 30 && victim) {
        atKill = n;
        textAtKill = seenText.join('');
        const p = servingPids(victim);
        killedPid = kill === 'engine' ? p.engine : p.im;
        killedAt = Date.now();
        process.kill(killedPid, 'SIGKILL');
        setTimeout(() => {
          try {
            aliveAfterKill = execFileSync('ps', ['-o', 'stat=,args=', '-p', String(killedPid)]).toString().trim().slice(0, 80);
          } catch {
            aliveAfterKill = false;
          }
        }, 200);
      }
    });
    const endedAt = Date.now();
    // the stream's text, kept for its migrations, left the gateway's total when it ended
    expect(backend.migrationText.totalBytes).toBe(0);
    const victimMaxW = Math.max(0, ...(victim ? (powerSeen.get(victim) ?? []) : []));
    const text = checkOneStream(chunks, max);
    expect(atKill).toBeGreaterThan(0);
    expect(text.startsWith(textAtKill)).toBe(true);
    // which instance each run of chunks came from: what a failure below shows
    const runs: string[] = [];
    for (const c of chunks) if (runs.at(-1)?.startsWith(`${c.instance}:`) !== true) runs.push(`${c.instance}:${c.seq}`);
    const diag = `chunks by instance ${runs.join(' ')}; killed ${kill} pid ${killedPid} of ${victim} (alive 200 ms later: ${aliveAfterKill}) at chunk ${atKill}; the stream ended ${endedAt - killedAt} ms after the kill`;
    // the leg that broke went on as new legs: one, or more when a new leg reached the victim before it saw its engine
    // die (that leg fails at once and is sent again); never past the migration limit (3)
    const legs = backend.counters.migrated - before;
    expect(legs, diag).toBeGreaterThanOrEqual(1);
    expect(legs, diag).toBeLessThanOrEqual(3);
    // exactly one leg finished, the last: it was asked for the prompt plus exactly the text the client had before
    // it, and the tokens left. It ran wherever the pool sent it: on the peer, or on the victim's id once that is
    // back (its engine restarted, or, after an instance kill, a new process the node agent started under that id)
    // the continuation legs' records name the client's request they continue (RequestRecord.request)
    const legRecords = () => [...records.values()].filter((r) => r.request === id);
    const last = await waitFor(() => legRecords().find((r) => r.outcome === 'ok'), 5000, 'the last leg record');
    expect(legRecords().filter((r) => r.outcome === 'ok').map((r) => r.id)).toEqual([last.id]);
    if (kill === 'instance' && last.instance === victim) expect(h.pidsOf(`--id ${victim} `)).not.toContain(killedPid);
    const fromFirst = max - last.completionTokens;
    expect(fromFirst).toBeGreaterThanOrEqual(atKill);
    let k = 0;
    const before1 = chunks.filter((c) => (k += c.tokens) <= fromFirst && c.tokens > 0);
    // the tokens before the last leg all came from the first (a leg in between that failed at once made none)
    expect(before1.every((c) => c.instance === victim), diag).toBe(true);
    const first = before1.map((c) => c.text).join('');
    expect(text.startsWith(first)).toBe(true);
    // the last leg's promptTokens is the engine's own count of the prompt it was given (usage.prompt_tokens)
    const counted = await backend.tokenize({ v: 1, model: MODEL, prompt: PROMPT + first });
    expect(last.promptTokens).toBe(counted.count);
    const usage = chunks[chunks.length - 1]!.usage!;
    if (kill === 'engine') {
      // the first leg's instance survived its engine: it recorded the failed leg, and usage sums the legs (a leg in
      // between that its instance ended before it started adds no energy)
      const leg1 = await waitFor(() => records.get(id), 5000, 'the first leg record');
      expect(leg1.outcome).toBe('failed');
      const all = leg1.energyJ + legRecords().reduce((a, r) => a + r.energyJ, 0);
      expect(usage.energyJ).toBeGreaterThanOrEqual(leg1.energyJ + last.energyJ - 1e-6);
      expect(usage.energyJ).toBeLessThanOrEqual(all + 1e-6);
    } else {
      // the first leg's instance died with it and never reported its energy: the gateway charged it its share of that
      // instance's telemetry while it ran (the instance's own rule), labelled as estimated; the other legs' energy is
      // their records' (a leg in between that its instance ended before it started adds its record's, if any)
      const estimated = usage.energyEstimatedJ ?? 0;
      const ranMs = killedAt - firstAt;
      console.log(`instance kill: usage ${usage.energyJ.toFixed(3)} J (${usage.energySource}), of it estimated ${estimated.toFixed(3)} J for the first leg (${ranMs} ms of tokens), last leg's record ${last.energyJ.toFixed(3)} J`);
      expect(estimated, diag).toBeGreaterThan(0);
      expect(backend.counters.energyEstimated, diag).toBeGreaterThan(estimatedBefore);
      // no more than the whole instance at its highest telemetry power over the leg's life and one reading interval
      expect(estimated, diag).toBeLessThanOrEqual((victimMaxW * (ranMs + 3000)) / 1000);
      const recorded = legRecords().reduce((a, r) => a + r.energyJ, 0);
      expect(usage.energyJ, diag).toBeGreaterThanOrEqual(last.energyJ + estimated - 1e-6);
      expect(usage.energyJ, diag).toBeLessThanOrEqual(recorded + estimated + 1e-6);
      // what a billing consumer reads: the gateway recorded the dead leg (no instance did), its energy labelled as the
      // estimate, on the victim; the records of the request (its id, or naming it) sum to the client's usage, and their
      // estimated parts to the usage's
      const leg1 = await waitFor(() => records.get(id), 5000, "the gateway's record of the dead leg");
      expect(leg1, diag).toMatchObject({ instance: victim, outcome: 'failed', energyEstimatedJ: leg1.energyJ });
      expect(leg1.energyJ, diag).toBeCloseTo(estimated, 9);
      const all = [...records.values()].filter((r) => r.id === id || r.request === id);
      const sum = all.reduce((a, r) => a + r.energyJ, 0);
      console.log(`instance kill: records ${all.map((r) => `${r.id}@${r.instance}:${r.outcome}:${r.energyJ.toFixed(3)}${r.energyEstimatedJ !== undefined ? ' (estimated)' : ''}`).join(', ')}; sum ${sum.toFixed(3)} J`);
      expect(sum, diag).toBeCloseTo(usage.energyJ, 6);
      expect(all.reduce((a, r) => a + (r.energyEstimatedJ ?? 0), 0), diag).toBeCloseTo(estimated, 9);
    }
  }

  it('the engine dies: the request continues on another leg, one uninterrupted stream, usage summed', async () => {
    const t0 = Date.now();
    await migrateAfterKill('engine');
    const t1 = Date.now();
    // the victim restarts its engine; wait for both instances before the next kill
    await h.waitReady(2, 60_000);
    console.log(`engine kill: stream ${t1 - t0} ms, both instances ready ${Date.now() - t1} ms later`);
  }, 90_000);

  it('the instance manager dies (its engine with it): the request continues on another leg', async () => {
    await migrateAfterKill('instance');
  }, 90_000);

  it('with migrationLimit 0 an engine death ends the stream with an explicit retryable error', async () => {
    await h.waitReady(1, 60_000);
    const b0 = new NatsBackend(gw, { chunkTimeoutMs: 20_000, migrationLimit: 0 });
    const id = `mig-none-${Date.now()}`;
    let killed = false;
    const chunks = await run(request(id, 300), (c, n) => {
      if (!killed && n >= 20 && c.instance) {
        killed = true;
        process.kill(servingPids(c.instance).engine, 'SIGKILL');
      }
    }, b0);
    b0.close();
    const last = chunks[chunks.length - 1]!;
    expect(last.done).toBe(true);
    expect(last.error?.code).toBe('engine_crashed');
    expect(last.error?.retryable).toBe(true);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
  }, 90_000);

  it('the engine dies mid tool call: an explicit retryable error, not continued (the model would write the call again)', async () => {
    await h.waitReady(2, 60_000);
    const id = `mig-tool-${Date.now()}`;
    const before = backend.counters.migrated;
    // long arguments: 40 string properties of up to four words each (the emulator fills the tool's schema)
    const properties = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`field_${i}`, { type: 'string' }]));
    const now = Date.now();
    const req: InferenceRequest = {
      v: 1, id, model: MODEL, kind: 'chat', messages: [{ role: 'user', content: 'Fill in the form.' }], inputTokens: 12, maxTokens: 600, arrivalMs: now,
      giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), params: { tools: [{ type: 'function', function: { name: 'fill_form', parameters: { type: 'object', properties } } }], tool_choice: 'required' },
    };
    let calls = 0;
    let killed = false;
    const chunks = await run(req, (c) => {
      if (c.toolCalls) calls++;
      if (!killed && calls >= 20 && c.instance) {
        killed = true;
        process.kill(servingPids(c.instance).engine, 'SIGKILL');
      }
    });
    expect(killed).toBe(true);
    // the call's name once: no second tool call joined to the first
    const names = chunks.flatMap((c) => c.toolCalls ?? []).map((t) => (t.function as { name?: string } | undefined)?.name).filter((n) => n !== undefined);
    expect(names).toEqual(['fill_form']);
    expect(chunks.at(-1), JSON.stringify(chunks.at(-1))).toMatchObject({ done: true, finishReason: 'error', error: { code: 'engine_crashed', retryable: true } });
    expect(backend.counters.migrated).toBe(before);
    // every tool-call delta counted
    expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBeGreaterThanOrEqual(calls);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
    await sleep(500);
    expect([...onStream.keys()].filter((k) => k.startsWith(`${id}-`))).toEqual([]);
  }, 90_000);

  /** A backend with `caps` (16 bytes): the instance manager serving a stream dies at its 20th token, past the cap. */
  async function notMigratedPastCap(caps: { migrationMaxBytes?: number; migrationMaxTotalBytes?: number }): Promise<void> {
    await h.waitReady(2, 60_000);
    const b = new NatsBackend(gw, { chunkTimeoutMs: 20_000, router, ...caps });
    const id = `mig-cap-${Date.now()}`;
    let killed = false;
    let keptAtKill = -1;
    const chunks = await run(request(id, 300), (c, n) => {
      if (!killed && n >= 20 && c.instance) {
        killed = true;
        keptAtKill = b.migrationText.totalBytes;
        process.kill(servingPids(c.instance).im, 'SIGKILL');
      }
    }, b);
    b.close();
    const last = chunks[chunks.length - 1]!;
    expect(killed).toBe(true);
    // the stream went on past the cap: it just stopped keeping its text
    expect(keptAtKill).toBe(0);
    expect(b.migrationText.dropped).toBe(1);
    expect(last.done).toBe(true);
    expect(last.error?.retryable, JSON.stringify(last.error)).toBe(true);
    expect(['engine_crashed', 'unavailable'], JSON.stringify(last.error)).toContain(last.error?.code);
    expect(b.counters.migrated).toBe(0);
    expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBeLessThan(300);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
    // no continuation leg was asked for
    await sleep(500);
    expect([...onStream.keys()].filter((k) => k.startsWith(`${id}-`))).toEqual([]);
    expect([...records.keys()].filter((k) => k.startsWith(`${id}-`))).toEqual([]);
    expect(b.migrationText.totalBytes).toBe(0);
  }

  it('past a 16-byte per-request cap, an instance death ends the stream with an explicit retryable error, not migrated', async () => {
    await notMigratedPastCap({ migrationMaxBytes: 16 });
  }, 90_000);

  it('past a 16-byte cap across the gateway\'s streams, an instance death ends the stream with an explicit retryable error, not migrated', async () => {
    await notMigratedPastCap({ migrationMaxTotalBytes: 16 });
  }, 90_000);

  it('n choices through the gateway: the engine of one choice dies, that choice migrates, every choice completes with its own finish', async () => {
    await h.waitReady(2, 60_000);
    // (the engine the previous test killed may still be restarting: the gateway's token count asks the other one)
    // the real HTTP layer over the NatsBackend; the tee learns which instance serves each choice
    const serving = new Map<string, string>();
    const tee: GatewayBackend = {
      submit: async (req, signal) => {
        const s = await backend.submit(req, signal);
        return (async function* () {
          for await (const c of s) {
            if (c.instance && !serving.has(req.id)) serving.set(req.id, c.instance);
            yield c;
          }
        })();
      },
      tokenize: (r) => backend.tokenize(r),
    };
    const server = new GatewayServer({ backend: tee, port: 0, models: [MODEL] });
    const port = await server.listen();
    try {
      const before = backend.counters.migrated;
      const max = 150;
      const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 60_000 });
      const s = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: max, n: 2, seed: 9, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming);
      const texts = ['', ''];
      const finishes: (string | null)[][] = [[], []];
      let killed = false;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const ch of s) {
        if (ch.usage) usage = ch.usage;
        const c = ch.choices[0];
        if (!c) continue;
        texts[c.index] += c.text;
        if (c.finish_reason) finishes[c.index]!.push(c.finish_reason);
        const victim = [...serving].find(([id]) => id.endsWith('_0'))?.[1];
        if (!killed && c.index === 0 && texts[0]!.trim().split(/\s+/).length >= 30 && victim) {
          killed = true;
          process.kill(servingPids(victim).engine, 'SIGKILL');
        }
      }
      expect(killed).toBe(true);
      expect(backend.counters.migrated).toBeGreaterThanOrEqual(before + 1);
      // every token of each choice once (the emulator's tokens are one word each), one finish each, usage summed
      for (const i of [0, 1]) {
        expect(texts[i]!.trim().split(/\s+/).length, `choice ${i}`).toBe(max);
        expect(finishes[i], `choice ${i}`).toEqual(['length']);
      }
      expect(usage?.completion_tokens).toBe(2 * max);
    } finally {
      await server.close(100);
    }
  }, 90_000);

  it('on the native data plane through the gateway: the engine dies mid-span, the stream continues on another leg, every token once', async () => {
    await h.waitReady(2, 60_000);
    const plane = await buildNativePlane();
    const gw = await nativeHttpGateway(backend, plane);
    try {
      const before = backend.counters.migrated;
      const spans = plane.spans;
      const max = 150;
      let during = -1;
      let killed = '';
      const got = await gw.stream(max, (words, id) => {
        const victim = gw.serving.get(id);
        if (killed || words < 30 || !victim) return;
        // the kill lands while the native thread carries the stream
        during = plane.active;
        killed = victim;
        process.kill(servingPids(victim).engine, 'SIGKILL');
      });
      expect(got.error).toBeUndefined();
      expect(killed).not.toBe('');
      expect(during).toBe(1);
      expect(plane.spans).toBeGreaterThan(spans);
      console.log(`native data plane: ${plane.spans - spans} spans, ${plane.carried} events carried natively`);
      expect(plane.active).toBe(0);
      expect(backend.counters.migrated).toBeGreaterThanOrEqual(before + 1);
      // every token once (one word each), one finish, the usage of the whole stream
      expect(got.text.trim().split(/\s+/).length).toBe(max);
      expect(got.finishes).toEqual(['length']);
      expect(got.usage?.completion_tokens).toBe(max);
      const leg1 = await waitFor(() => records.get(got.id), 5000, 'the first leg record');
      expect(leg1).toMatchObject({ instance: killed, outcome: 'failed' });
    } finally {
      await gw.close();
    }
  }, 90_000);
});
