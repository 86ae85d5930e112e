/**
 * The gateway's hold limit (GatewayServer `holdLimitMs`, gateway.holdLimitMs) on a virtual clock: a request whose
 * answer has not begun `holdLimitMs` after it arrived gets a retryable 503 with Retry-After, and what was under way
 * for it is cancelled (the backend's signal aborted with a retryable `unavailable`), whatever it waited on: a
 * prompt count, an admission that never came back, an admitted stream whose first token never came. A request
 * whose first token came within the limit is not cut, streamed or not, however long it then runs. A resume
 * (Last-Event-ID) whose next leg no instance admits gets the same 503 at the limit. Real HTTP on loopback; the server's
 * timers on a ManualClock, advanced to the millisecond.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayServer, type GatewayBackend, type StreamJournal } from '../../actors/gateway/server.ts';
import { JournalWriter } from '../../actors/gateway/resume.ts';
import type { ResumeEntry } from '../../protocols/journal.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { Writable } from 'node:stream';
import type { InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';

const LIMIT_MS = 60_000;

/** A backend whose admission, token stream or tokenizer waits until the test says so (or the request is aborted). */
class HeldBackend implements GatewayBackend {
  mode: 'admission' | 'first-token' | 'tokenize' | 'started' = 'admission';
  readonly signals: AbortSignal[] = [];
  /** pushes the next chunk of the started stream; ends it with a done chunk. */
  more?: (c: Partial<TokenChunk> & { done?: boolean }) => void;
  private tokenizeWait?: Promise<void>;

  tokenize(_req: TokenizeRequest): Promise<TokenizeReply> {
    const answer: TokenizeReply = { v: 1, ok: true, count: 3, maxModelLen: 4096 };
    if (this.mode !== 'tokenize') return Promise.resolve(answer);
    // no instance's tokenizer answers (it stays held as long as the test runs)
    this.tokenizeWait ??= new Promise<void>(() => {});
    return this.tokenizeWait.then(() => answer);
  }

  /** a resume's next leg: admitted never (no instance takes it), until the request is aborted. */
  resume(_req: InferenceRequest, _from: unknown, signal: AbortSignal): Promise<AsyncIterable<TokenChunk>> {
    this.signals.push(signal);
    return new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
  }

  submit(req: InferenceRequest, signal: AbortSignal): Promise<AsyncIterable<TokenChunk>> {
    this.signals.push(signal);
    const aborted = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    aborted.catch(() => {});
    if (this.mode === 'admission') return aborted; // admitted never
    const mode = this.mode;
    const queue: TokenChunk[] = [];
    let wake: (() => void) | undefined;
    let seq = 0;
    this.more = (c) => {
      queue.push({ v: 1, id: req.id, seq: seq++, text: c.text ?? '', tokens: c.tokens ?? (c.text ? 1 : 0), ...(c.done ? { done: true, finishReason: 'stop' as const } : {}) });
      wake?.();
    };
    async function* gen(): AsyncGenerator<TokenChunk> {
      if (mode === 'started') queue.push({ v: 1, id: req.id, seq: seq++, text: ' first', tokens: 1 });
      for (;;) {
        while (queue.length) {
          const c = queue.shift()!;
          yield c;
          if (c.done) return;
        }
        await Promise.race([new Promise<void>((r) => (wake = r)), aborted]);
      }
    }
    return Promise.resolve(gen());
  }
}

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(0);
});

/** the gateway's log lines (JSON), as its log level info writes them. */
const logged: Record<string, unknown>[] = [];
const log = createLogger({ level: 'info', pretty: false, destination: new Writable({ write: (b: Buffer, _e, cb) => (logged.push(JSON.parse(b.toString()) as Record<string, unknown>), cb()) }) });

async function start(backend: HeldBackend, clock: ManualClock, journal?: StreamJournal): Promise<string> {
  const gw = new GatewayServer({ backend, clock, port: 0, host: '127.0.0.1', models: ['m1'], holdLimitMs: LIMIT_MS, log, ...(journal ? { journal } : {}) });
  servers.push(gw);
  return `http://127.0.0.1:${await gw.listen()}`;
}

/** Resolves once `f` holds (real time: the request crossing loopback), else throws after 5 s. */
async function until(f: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A completion request whose outcome (status and body, or the stream's text) is recorded when it comes. */
function send(base: string, stream: boolean, lastEventId?: string): { done: () => boolean; result: Promise<{ status: number; retryAfter: string | null; body: string }> } {
  let finished = false;
  const result = fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(lastEventId !== undefined ? { 'last-event-id': lastEventId } : {}) },
    body: JSON.stringify({ model: 'm1', prompt: 'hello there', max_tokens: 8, stream }),
  }).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.text() })).finally(() => (finished = true));
  return { done: () => finished, result };
}

/** Lets the loopback traffic and the server's handlers run (real time), with the virtual clock still. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('gateway hold limit (holdLimitMs from arrival)', () => {
  for (const mode of ['admission', 'first-token'] as const) {
    it(`a request held ${mode === 'admission' ? 'for an admission that never comes' : 'admitted, with no first token'}: a retryable 503 at the limit, the request cancelled`, async () => {
      const clock = new ManualClock();
      const backend = new HeldBackend();
      backend.mode = mode;
      const base = await start(backend, clock);
      const r = send(base, true);
      await until(() => backend.signals.length === 1, 'the submit');
      clock.advance(LIMIT_MS - 1);
      await settle();
      expect(r.done()).toBe(false);
      expect(backend.signals[0]!.aborted).toBe(false);
      clock.advance(1);
      const out = await r.result;
      expect(out.status).toBe(503);
      expect(out.retryAfter).toBe('1');
      expect(JSON.parse(out.body)).toMatchObject({ error: { code: 503, type: 'ServiceUnavailableError' } });
      expect(backend.signals[0]!.aborted).toBe(true);
      expect(backend.signals[0]!.reason).toBeInstanceOf(DynError);
      expect(backend.signals[0]!.reason).toMatchObject({ code: 'unavailable', retryable: true });
      // the log says which wait ended it (the client's words are fixed)
      expect(logged.filter((l) => l.msg === 'request refused').at(-1)).toMatchObject({ status: 503, code: 'unavailable', cause: expect.stringContaining('hold limit') });
    });
  }

  it('a prompt no tokenizer counts: the same 503 at the limit, nothing submitted', async () => {
    const clock = new ManualClock();
    const backend = new HeldBackend();
    backend.mode = 'tokenize';
    const base = await start(backend, clock);
    const r = send(base, false);
    await settle();
    clock.advance(LIMIT_MS - 1);
    await settle();
    expect(r.done()).toBe(false);
    clock.advance(1);
    const out = await r.result;
    expect(out.status).toBe(503);
    expect(out.retryAfter).toBe('1');
    expect(backend.signals).toHaveLength(0);
  });

  for (const stream of [true, false]) {
    it(`a request whose first token came within the limit is not cut (${stream ? 'streamed' : 'one JSON answer'}), however long it runs`, async () => {
      const clock = new ManualClock();
      const backend = new HeldBackend();
      backend.mode = 'started';
      const base = await start(backend, clock);
      const r = send(base, stream);
      await until(() => backend.signals.length === 1, 'the submit');
      await settle();
      clock.advance(3 * LIMIT_MS);
      await settle();
      expect(backend.signals[0]!.aborted).toBe(false);
      expect(r.done()).toBe(false);
      backend.more!({ text: ' last' });
      backend.more!({ done: true });
      const out = await r.result;
      expect(out.status).toBe(200);
      expect(out.body).toContain('first');
      expect(out.body).toContain('last');
      expect(backend.signals[0]!.aborted).toBe(false);
    });
  }

  it('a resume (Last-Event-ID) whose next leg no instance admits: the same 503 at the limit, nothing sent before it, the leg\'s wait cancelled', async () => {
    const clock = new ManualClock();
    const backend = new HeldBackend();
    // another replica's stream r1, its client holding event 0 of it
    const entries: ResumeEntry[] = [
      { v: 1, id: 'r1', gen: 0, head: { req: { v: 1, id: 'r1', model: 'm1', kind: 'completion', prompt: 'hello there', inputTokens: 3, maxTokens: 8, arrivalMs: 0, giveUpAtMs: 600_000, streamSubject: 'dyn.v1.stream.r1' }, created: 1, includeUsage: false, continuousUsage: false } },
      { v: 1, id: 'r1', gen: 0, from: 0, events: [{ text: ' a', tokens: 1 }, { text: ' b', tokens: 1 }] },
    ];
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(async () => {}, id, gen, 1 << 20), read: async (id) => entries.filter((e) => e.id === id) };
    const base = await start(backend, clock, journal);
    const r = send(base, true, 'r1:0');
    await until(() => backend.signals.length === 1, 'the resume');
    clock.advance(LIMIT_MS - 1);
    await settle();
    expect(r.done()).toBe(false);
    expect(backend.signals[0]!.aborted).toBe(false);
    clock.advance(1);
    const out = await r.result;
    expect(out.status).toBe(503);
    expect(out.retryAfter).toBe('1');
    expect(JSON.parse(out.body)).toMatchObject({ error: { code: 503, type: 'ServiceUnavailableError' } });
    expect(backend.signals[0]!.aborted).toBe(true);
    expect(backend.signals[0]!.reason).toMatchObject({ code: 'unavailable', retryable: true });
  });
});
