/**
 * The end of a gateway's drain (GatewayServer.close past its grace; docs/DATAPATH.md "Gateway drain" step 2): every
 * request still under way ends with a retryable error its client can read, before the connections close.
 * - a stream that had its first token: an error event (code `unavailable`, `retryable: true`), `data: [DONE]` and the
 *   chunked body's terminal chunk;
 * - a non-streamed request: a 503 with Retry-After;
 * - a resumable stream: its error event has no id and its journal is not stopped, so its client resumes it on another
 *   replica from its last event: the rest once, the ids in order;
 * - the wait for those answers is bounded (drain.ts InFlight.cut): a response that never finishes holds the shutdown
 *   DRAIN_ANSWER_MS, no longer.
 * Real HTTP on loopback; the backends yield one token, then wait until the request is cancelled (the NATS backend's
 * stream fails with the cancel's reason).
 */
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayServer, type GatewayBackend, type ResumeFrom, type StreamHooks, type StreamJournal } from '../../actors/gateway/server.ts';
import { DRAIN_ANSWER_MS, InFlight } from '../../actors/gateway/drain.ts';
import { JournalWriter, eventId } from '../../actors/gateway/resume.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { DynError } from '../../protocols/errors.ts';
import { LeanAbort, type AbortLike } from '../../src/runtime/abort.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { dechunk } from '../helpers/slow-client.ts';

const chunk = (req: InferenceRequest, seq: number, text: string, done = false): TokenChunk => ({
  v: 1, id: req.id, seq, text, tokens: 1, ...(done ? { done: true, finishReason: 'length' as const, usage: { promptTokens: 3, completionTokens: 2, energyJ: 1, energySource: 'modelled' as const } } : {}),
});

/** submit: ` first`, then nothing until the request is cancelled (then the cancel's reason); resume: ` second` and the end. */
function backend(): GatewayBackend & { signals: AbortLike[] } {
  const signals: AbortLike[] = [];
  async function* held(req: InferenceRequest, signal: AbortLike): AsyncGenerator<TokenChunk> {
    yield chunk(req, 0, ' first');
    await new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
  }
  return {
    signals,
    async submit(req, signal, hooks?: StreamHooks) {
      signals.push(signal);
      hooks?.onLeg?.({ id: req.id, instance: 'i0', legs: 0, sentBefore: 0, energyJ: 0 });
      return held(req, signal);
    },
    async resume(req, from: ResumeFrom, _signal, hooks?: StreamHooks) {
      hooks?.onLeg?.({ id: `${req.id}-m1`, instance: 'i1', legs: 1, sentBefore: from.sent, energyJ: 0 });
      return (async function* () {
        yield chunk(req, 1, ' second', true);
      })();
    },
  };
}

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(0);
});

async function replica(b: GatewayBackend, journal?: StreamJournal): Promise<GatewayServer> {
  const gw = new GatewayServer({ backend: b, port: 0, host: '127.0.0.1', models: ['m1'], ...(journal ? { journal } : {}) });
  servers.push(gw);
  await gw.listen();
  return gw;
}

/** One request on its own connection, its response's bytes as they come (the framing kept: the end is checked). */
function raw(port: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  const s = connect(port, '127.0.0.1');
  let bytes = Buffer.alloc(0);
  s.on('data', (d: Buffer) => (bytes = Buffer.concat([bytes, d])));
  s.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => s.on('close', () => resolve()));
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${extra}\r\n${text}`);
  const head = () => bytes.subarray(0, Math.max(0, bytes.indexOf('\r\n\r\n'))).toString();
  const framed = () => bytes.subarray(bytes.indexOf('\r\n\r\n') + 4);
  return { ended, head, framed, text: () => bytes.toString() };
}

/** Resolves once `f` holds, else throws after 5 s. */
async function until(f: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The events of an SSE body: their id line (if any) and data. */
function events(body: string): { id?: string; data: string }[] {
  return body.split('\n\n').slice(0, -1).map((block) => {
    const id = /^id: (.*)$/m.exec(block)?.[1];
    return { ...(id !== undefined ? { id } : {}), data: /^data: (.*)$/m.exec(block)?.[1] ?? '' };
  });
}

const streamed = { model: 'm1', prompt: 'hello there', max_tokens: 8, stream: true };

describe('a drain past its grace: the requests under way end with a retryable error', () => {
  it('a stream gets an error event, [DONE] and its terminal chunk; a non-streamed request a 503 with Retry-After', async () => {
    const b = backend();
    const gw = await replica(b);
    const s = raw(gw.port, streamed);
    await until(() => dechunk(s.framed()).includes(' first'), 'the first token');
    const plain = fetch(`http://127.0.0.1:${gw.port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...streamed, stream: false }) })
      .then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.text() }));
    await until(() => b.signals.length === 2, 'both requests under way');

    await gw.close(200);
    await s.ended;
    expect(s.head()).toMatch(/^HTTP\/1\.1 200/);
    // the chunked body ends whole: its terminal chunk after the last event
    expect(s.text().endsWith('\r\n0\r\n\r\n')).toBe(true);
    const evs = events(dechunk(s.framed()));
    expect(evs.at(-1)!.data).toBe('[DONE]');
    const error = JSON.parse(evs.at(-2)!.data) as { error: Record<string, unknown> };
    expect(error.error).toMatchObject({ code: 503, type: 'ServiceUnavailableError', retryable: true });
    expect((JSON.parse(evs[0]!.data) as { choices: { text: string }[] }).choices[0]!.text).toBe(' first');

    const out = await plain;
    expect(out.status).toBe(503);
    expect(out.retryAfter).toBe('1');
    expect(JSON.parse(out.body)).toMatchObject({ error: { code: 503, type: 'ServiceUnavailableError' } });
    // both requests were cancelled downstream with the drain's retryable reason
    for (const sig of b.signals) expect(sig.reason).toMatchObject({ code: 'unavailable', retryable: true });
  });

  it('a resumable stream stays resumable: its error event has no id, its journal goes on, and another replica continues it from the client\'s last event', async () => {
    const entries: ResumeEntry[] = [];
    const journal: StreamJournal = {
      writer: (id, gen) => new JournalWriter(async (m) => void entries.push(ResumeEntry.decode(ResumeEntry.encode(m))), id, gen, 1 << 20),
      read: async (id) => entries.filter((e) => e.id === id),
    };
    const a = await replica(backend(), journal);
    const b = await replica(backend(), journal);
    const s = raw(a.port, streamed, { 'x-dynamollm-resumable': '1' });
    await until(() => dechunk(s.framed()).includes(' first'), 'the first token');
    const rid = /x-request-id: (\S+)/i.exec(s.head())![1]!;

    await a.close(200);
    await s.ended;
    expect(s.text().endsWith('\r\n0\r\n\r\n')).toBe(true);
    const evs = events(dechunk(s.framed()));
    expect(evs.map((e) => e.id)).toEqual([eventId(rid, 0), undefined, undefined]);
    const error = JSON.parse(evs[1]!.data) as { error: { code: string; retryable: boolean; message: string } };
    expect(error.error).toMatchObject({ code: 503, retryable: true });
    expect(error.error.message).toContain('Last-Event-ID');
    expect(evs[2]!.data).toBe('[DONE]');
    expect(entries.filter((e) => e.id === rid && e.stop !== undefined)).toEqual([]);

    // the client resumes on the other replica from its last event: the rest once, the ids going on
    const r = await fetch(`http://127.0.0.1:${b.port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': eventId(rid, 0) }, body: JSON.stringify(streamed) });
    expect(r.status).toBe(200);
    const rest = events(await r.text());
    expect(rest.map((e) => e.id ?? e.data)).toEqual([eventId(rid, 1), '[DONE]']);
    expect((JSON.parse(rest[0]!.data) as { choices: { text: string; finish_reason: string }[] }).choices[0]).toMatchObject({ text: ' second', finish_reason: 'length' });
  });
});

describe('InFlight.cut: the wait for the answers is bounded', () => {
  /** a response stand-in: `finish()` sends it whole. */
  const response = () => Object.assign(new EventEmitter(), { writableFinished: false, destroyed: false, finish(this: EventEmitter & { writableFinished: boolean }) {
    this.writableFinished = true;
    this.emit('finish');
  } });

  it('resolves once every response is sent, or DRAIN_ANSWER_MS after the cut for one that never is; the drain\'s reason answers, no other', async () => {
    const clock = new ManualClock();
    const inflight = new InFlight();
    const [ac1, ac2] = [new LeanAbort(), new LeanAbort()];
    const [r1, r2] = [response(), response()];
    inflight.add(ac1, r1 as unknown as ServerResponse);
    inflight.add(ac2, r2 as unknown as ServerResponse);
    let done = false;
    const cut = inflight.cut(clock).then(() => (done = true));
    expect(ac1.aborted && ac2.aborted).toBe(true);
    expect(inflight.answerOf(ac1.reason)).toMatchObject({ status: 503, retryAfterS: 1, retryable: true });
    expect(inflight.answerOf(new DynError('cancelled', 'client disconnected', { retryable: false }))).toBeUndefined();
    r1.finish();
    clock.advance(DRAIN_ANSWER_MS - 1);
    await Promise.resolve();
    expect(done).toBe(false);
    clock.advance(1);
    await cut;

    // every response sent: at once, without the clock
    const again = new InFlight();
    const r3 = response();
    again.add(new LeanAbort(), r3 as unknown as ServerResponse);
    const quick = again.cut(clock);
    r3.finish();
    await quick;
  });
});
