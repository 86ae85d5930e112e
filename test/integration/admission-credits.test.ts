/**
 * Admission credits (docs/DATAPATH.md "Admission credits"), on a real nats-server with the project's
 * permissions, real actor processes (cluster, pool and node managers, one instance manager) and an emulated
 * engine. The gateway is the real NatsBackend with the gateway's own routing (GatewayRouter), on a
 * gateway-role connection, asking for credits under its id.
 *
 * - The first request asks for admission (one round trip) and its reply lends the gateway credits; the next
 *   requests start on them: no admission message crosses NATS for them, the instance hears of each from its
 *   `credited` report and still records it (tokens, TTFT, TBT, energy equal to the client's usage). The instance
 *   is idle below its max clock then, so the first request's start waits for the clock its prefill needs. The
 *   admission and the credited reports carry the request without its prompt (InferenceRequest.promptForm).
 * - A client that goes away cancels a credited request: recorded cancelled, its slot freed; so does one whose
 *   credited stream the gateway's native data plane carries when the client leaves (test/helpers/native-http.ts).
 * - The instance revokes its loans when it leaves `ready` (a drain): the gateway, told by the status, asks
 *   for admission again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortAfter, completionRequest, emulatedClusterConfig, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { buildNativePlane, nativeHttpGateway } from '../helpers/native-http.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import type { Harness } from './control-harness.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { Ack, InferenceRequest as InferenceRequestCodec, InstanceCommand, InstanceStatus, LegMessage, LegReport, LegReportBatch, RequestRecord, controlSubjects, isLegBatch, subjects, type InferenceRequest, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

let cluster: GatewayCluster;
let h: Harness;
let backend: NatsBackend;
const records = new Map<string, Rec>();
const admitted = new Set<string>();
/** what the instances were sent of each request: its admission's, its credited report's (prompt, promptForm). */
const sentReqs = new Map<string, InferenceRequest[]>();
const legReports = new Map<string, string[]>();
const statuses: InstanceStatus[] = [];

const request = (id: string, maxTokens: number) => completionRequest(id, maxTokens, { prompt: 'Tell me about energy efficient inference.', inputTokens: 9 });

beforeAll(async () => {
  cluster = await startGatewayCluster({
    // ~30 ms per token: a 300-token answer runs long enough to cancel it mid-stream
    config: emulatedClusterConfig(1, { engine: { gatewayCredits: 4, gatewayCreditTtlMs: 20_000 } }),
    ready: 1, readyTimeoutMs: 60_000,
    gatewayId: 'gw-cred', credits: true,
    backend: () => ({ chunkTimeoutMs: 20_000 }),
    // the router routes once it has the cluster's table and a fresh ready status of the instance (a loaded machine may
    // deliver the status after the table): until then a request goes to the intake, which lends no credits
    routed: { until: (r) => (r.plan({ ...request(`cr-probe-${Date.now()}`, 1), probe: true })?.pools.length ?? 0) > 0, timeoutMs: 10_000, what: () => 'a route at the gateway' },
  });
  ({ h, backend } = cluster);
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.set(r.id, r), { capacity: 4096 });
  const sent = (r: InferenceRequest) => void sentReqs.set(r.id, [...(sentReqs.get(r.id) ?? []), r]);
  h.bus.subscribe(subjects.instanceAdmitAll(), InferenceRequestCodec, (r) => {
    admitted.add(r.id);
    sent(r);
  }, { capacity: 4096 });
  // one report, or a batch of those the gateway held for the instance (CreditLoan.batches)
  h.bus.subscribe(subjects.instanceLegAll(), LegMessage, (m) => {
    for (const r of isLegBatch(m) ? m.reports : [m]) {
      legReports.set(r.id, [...(legReports.get(r.id) ?? []), r.phase]);
      if (r.request) sent(r.request);
    }
  }, { capacity: 4096 });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push(st), { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

async function run(req: InferenceRequest): Promise<TokenChunk[]> {
  const out: TokenChunk[] = [];
  for await (const c of await backend.submit(req, new AbortController().signal)) out.push(c);
  return out;
}

describe('admission credits', () => {
  it('the first admission lends credits; the next requests start on them without an admission and are still accounted', async () => {
    // an idle instance lowers its clock at its first epoch (instanceS 5): the first admission then raises it for its
    // prefill before the request starts, and its reply still carries the grant and the loan
    await waitFor(() => statuses.find((s) => s.state === 'ready' && s.clockMhz < s.maxClockMhz), 20_000, 'an idle instance below its max clock');
    const credited0 = backend.counters.credited;
    const ids = [0, 1, 2].map((i) => `cr-${i}-${Date.now()}`);
    const results: TokenChunk[][] = [];
    for (const id of ids) results.push(await run(request(id, 20)));
    const seen = () => JSON.stringify({ admitted: ids.map((id) => admitted.has(id)), legReports: ids.map((id) => legReports.get(id)), counters: backend.counters });
    // the first asked (and was lent credits in its reply); the next two were credited: no admission message
    expect(admitted.has(ids[0]!), seen()).toBe(true);
    expect(admitted.has(ids[1]!), seen()).toBe(false);
    expect(admitted.has(ids[2]!), seen()).toBe(false);
    expect(backend.counters.credited - credited0, seen()).toBe(2);
    for (const [k, id] of ids.entries()) {
      const chunks = results[k]!;
      const last = chunks[chunks.length - 1]!;
      expect(last.error, JSON.stringify(last.error)).toBeUndefined();
      expect(last.usage!.completionTokens).toBe(20);
      const rec = await waitFor(() => records.get(id), 5000, `the record of ${id}`);
      expect(rec.outcome).toBe('ok');
      expect(rec.completionTokens).toBe(20);
      expect(rec.ttftMs).toBeGreaterThan(0);
      expect(rec.tbtMeanMs).toBeGreaterThan(5);
      expect(rec.energyJ).toBeGreaterThan(0);
      expect(last.usage!.energyJ).toBeCloseTo(rec.energyJ, 6);
    }
    expect(legReports.get(ids[1]!)?.[0], seen()).toBe('credited');
    // the admission and the credited reports carry the request without its prompt, which the gateway sends the
    // engine itself; its form says the instance's drain may move it (a text prompt), and the instance still records
    // the engine's count of the prompt
    for (const id of ids) {
      const got = sentReqs.get(id) ?? [];
      expect(got.length, id).toBe(1);
      expect(got[0]!.prompt, id).toBeUndefined();
      expect(got[0]!.messages, id).toBeUndefined();
      expect(got[0]!.promptForm, id).toBe('text');
      expect(got[0]!.inputTokens, id).toBe(9);
      expect(records.get(id)!.promptTokens, id).toBeGreaterThan(0);
    }
  }, 80_000);

  it('a credited report that carries the first token and the end (a short leg\'s reports joined) is the start and the end: recorded at once, nothing left running', async () => {
    const instance = (await waitFor(() => statuses.findLast((s) => s.state === 'ready'), 20_000, 'a ready instance')).id;
    const epoch = statuses.findLast((s) => s.id === instance)?.creditEpoch ?? 0;
    const id = `cr-joined-${Date.now()}`;
    const { prompt: _p, ...asked } = request(id, 4);
    const arrivalMs = asked.arrivalMs;
    const rep: LegReport = {
      v: 1, id, phase: 'credited', request: { ...asked, direct: true, promptForm: 'text' }, credit: { gateway: 'gw-cred', epoch },
      outcome: 'ok', firstTokenMs: arrivalMs + 3, tbtSumMs: 6, tbtMaxMs: 2, tbtN: 3, completionTokens: 4, promptTokens: 9, engineEnergyJ: 0.25,
    };
    h.bus.publish(subjects.instanceLeg(instance), LegReport, rep);
    const rec = await waitFor(() => records.get(id), 5000, 'the record of the joined report');
    expect(rec).toMatchObject({ outcome: 'ok', instance, completionTokens: 4, promptTokens: 9, energyJ: 0.25, energySource: 'modelled', ttftMs: 3, tbtMeanMs: 2, tbtMaxMs: 2, sloMet: true });
    // its seat is free again: a status names it neither running nor queued
    await waitFor(() => statuses.find((s) => s.id === instance && s.sentMs > rec.finishedMs && !s.runningIds.includes(id) && !s.queuedIds.includes(id)), 5000, 'a status without it');
  }, 30_000);

  it('a LegReportBatch (the reports a gateway held for the instance) is read report by report, in its order: each leg recorded, none left running', async () => {
    const instance = (await waitFor(() => statuses.findLast((s) => s.state === 'ready'), 20_000, 'a ready instance')).id;
    const epoch = statuses.findLast((s) => s.id === instance)?.creditEpoch ?? 0;
    const [a, b] = ['a', 'b'].map((k) => `cr-batch-${k}-${Date.now()}`) as [string, string];
    const credited = (id: string): LegReport => {
      const { prompt: _p, ...asked } = request(id, 4);
      return { v: 1, id, phase: 'credited', request: { ...asked, direct: true, promptForm: 'text' }, credit: { gateway: 'gw-cred', epoch } };
    };
    const end = (id: string, energyJ: number): LegReport => ({ v: 1, id, phase: 'end', outcome: 'ok', firstTokenMs: Date.now(), tbtSumMs: 6, tbtMaxMs: 2, tbtN: 3, completionTokens: 4, promptTokens: 9, engineEnergyJ: energyJ });
    // a's start joined with its end; b's start, then its end (its leg's later report, after the credited one went out)
    h.bus.publish(subjects.instanceLeg(instance), LegReportBatch, { v: 1, reports: [{ ...credited(a), ...end(a, 0.25), phase: 'credited' }, credited(b), end(b, 0.5)] });
    const ra = await waitFor(() => records.get(a), 5000, 'the record of a');
    const rb = await waitFor(() => records.get(b), 5000, 'the record of b');
    expect(ra).toMatchObject({ outcome: 'ok', instance, completionTokens: 4, promptTokens: 9, energyJ: 0.25, energySource: 'modelled' });
    expect(rb).toMatchObject({ outcome: 'ok', instance, completionTokens: 4, promptTokens: 9, energyJ: 0.5, energySource: 'modelled' });
    const after = Math.max(ra.finishedMs, rb.finishedMs);
    await waitFor(() => statuses.find((s) => s.id === instance && s.sentMs > after && !s.runningIds.some((id) => id === a || id === b)), 5000, 'a status without them');
  }, 30_000);

  it('a client that goes away cancels a credited request (recorded cancelled, slot freed)', async () => {
    await run(request(`cr-warm-${Date.now()}`, 2)); // a loan in hand (the previous case may have spent it)
    const credited0 = backend.counters.credited;
    const id = `cr-cancel-${Date.now()}`;
    // the client goes away at its 5th token
    const instance = await abortAfter(backend, request(id, 300), 5);
    expect(backend.counters.credited - credited0).toBe(1);
    expect(admitted.has(id)).toBe(false);
    const rec = await waitFor(() => records.get(id), 5000, 'the cancelled record');
    expect(rec.outcome).toBe('cancelled');
    let running = -1;
    for (let i = 0; i < 30 && running !== 0; i++) {
      running = statuses.findLast((s) => s.id === instance)?.running ?? -1;
      if (running !== 0) await sleep(200);
    }
    expect(running).toBe(0);
  }, 30_000);

  it('on the native data plane through the gateway: a credited stream carried natively, its client gone mid-span, is recorded cancelled', async () => {
    await run(request(`cr-warm-${Date.now()}`, 2)); // a loan in hand
    const plane = await buildNativePlane();
    const gw = await nativeHttpGateway(backend, plane);
    try {
      const credited0 = backend.counters.credited;
      const spans = plane.spans;
      let during = -1;
      const got = await gw.stream(300, (words) => {
        if (words >= 40 && during < 0) during = plane.active;
      }, 40);
      expect(got.aborted).toBe(true);
      expect(got.finishes).toEqual([]);
      expect(during).toBe(1);
      expect(plane.spans).toBeGreaterThan(spans);
      expect(backend.counters.credited - credited0).toBe(1);
      expect(admitted.has(got.id)).toBe(false);
      const rec = await waitFor(() => records.get(got.id), 5000, 'the cancelled record');
      expect(rec.outcome).toBe('cancelled');
      await waitFor(() => (plane.active === 0 ? true : undefined), 5000, 'the span taken back');
      console.log(`native data plane: ${plane.spans - spans} spans, ${plane.carried} events carried natively`);
      // the client's 40 words: the first was JavaScript's, the rest (up to what the client had read when it left) native
      expect(plane.carried).toBeGreaterThan(0);
      const instance = gw.serving.get(got.id);
      let running = -1;
      for (let i = 0; i < 30 && running !== 0; i++) {
        running = statuses.findLast((s) => s.id === instance)?.running ?? -1;
        if (running !== 0) await sleep(200);
      }
      expect(running).toBe(0);
    } finally {
      await gw.close();
    }
  }, 30_000);

  it('a drain revokes the loans: the gateway asks for admission again', async () => {
    const first = `cr-pre-${Date.now()}`;
    const chunks = await run(request(first, 2));
    const instance = chunks[0]!.instance!;
    const epoch = statuses.findLast((s) => s.id === instance)?.creditEpoch ?? 0;
    const cmd = async (op: 'drain' | 'resume') => h.bus.request(subjects.instanceControl(instance), InstanceCommand, { v: 1, op, reason: 'test' }, Ack, { timeoutMs: 5000 });
    await cmd('drain');
    await cmd('resume');
    // the status that says so reaches the gateway (statuses every 250 ms, and one at each change)
    await waitFor(() => statuses.find((s) => s.id === instance && (s.creditEpoch ?? 0) > epoch && s.state === 'ready'), 5000, 'a status with a new credit epoch');
    await sleep(300);
    const credited0 = backend.counters.credited;
    const id = `cr-post-${Date.now()}`;
    await run(request(id, 2));
    expect(backend.counters.credited - credited0).toBe(0);
    expect(admitted.has(id)).toBe(true);
    const rec = await waitFor(() => records.get(id), 5000, 'the record');
    expect(rec.outcome).toBe('ok');
  }, 30_000);
});
