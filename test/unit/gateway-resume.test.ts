/**
 * Resumable SSE streams (actors/gateway/resume.ts, docs/PROTOCOL.md "Resumable streams"):
 * - event ids `<request id>:<index>` and the Last-Event-ID / opt-in headers as the gateway reads them;
 * - the journal's fold: a later writer generation replaces the events from its `from` on and an older one's late
 *   entries are dropped; a gap marks the stream not resumable; what a client whose last event is L is sent again;
 * - the writer: one entry per flush (an engine read's events), a leg entry at once, the end, and a stop past its cap;
 *   an entry not held in time opens an unresumable range (test/unit/journal-range.test.ts), closed once the journal
 *   holds all the client was sent: through the HTTP layer, ids come back and a resume from before the range is refused;
 * - through the HTTP layer of two gateway replicas sharing one journal: a stream opted in gets an `id:` line per
 *   event, its client is cut mid-stream, reconnects to the other replica with Last-Event-ID and gets the rest once
 *   (the whole token sequence, every id once, the backend asked to continue from the journal's text and leg); a
 *   stream not opted in is byte for byte the same as without a journal (no `id:`, nothing journaled); an unknown id
 *   gets a 404 with an OpenAI-shaped error body, a malformed one a 400.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { resumePlan } from '../../actors/gateway/sse-stream.ts';
import { GatewayServer, type GatewayBackend, type ResumeFrom, type StreamHooks, type StreamJournal } from '../../actors/gateway/server.ts';
import { DEFAULT_JOURNAL_TIMING, JournalWriter, eventId, foldJournal, journalBounds, parseLastEventId, replayAfter, resumableOf, type JournalAppend } from '../../actors/gateway/resume.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/** the journal's waits bounded by half the request's SLO (gateway.journal.sloShare 0.5; the default is 0: the caps alone). */
const SLO_BOUND = { ...DEFAULT_JOURNAL_TIMING, sloShare: 0.5 };

const head = (kind: 'completion' | 'chat' = 'completion'): ResumeEntry['head'] => ({
  req: { v: 1, id: 'r1', model: 'm', kind, prompt: 'p', inputTokens: 3, maxTokens: 10, arrivalMs: 0, giveUpAtMs: 1, streamSubject: 'dyn.v1.stream.r1' },
  created: 1, includeUsage: true, continuousUsage: false,
});
const ev = (...t: string[]) => t.map((text) => ({ text, tokens: 1 }));

describe('event ids and headers', () => {
  it('Last-Event-ID is <request id>:<index>; anything else is invalid, absence is undefined', () => {
    expect(eventId('aB-_9', 12)).toBe('aB-_9:12');
    expect(parseLastEventId('aB-_9:12')).toEqual({ id: 'aB-_9', index: 12 });
    expect(parseLastEventId(' aB:0 ')).toEqual({ id: 'aB', index: 0 });
    expect(parseLastEventId(undefined)).toBeUndefined();
    for (const bad of ['', 'ab', 'ab:', ':3', 'a.b:3', 'ab:-1', 'ab:1.5', 'ab:3:4', 'a b:3', `${'x'.repeat(129)}:1`, 'ab:1234567890', ['ab:1']]) expect(parseLastEventId(bad), String(bad)).toBe('invalid');
    expect(resumableOf(undefined)).toBe(false);
    expect(resumableOf('1')).toBe(true);
    expect(resumableOf('yes')).toBe('invalid');
  });
});

describe('the journal fold and the replay', () => {
  it('folds the entries of the writers in order: later generations replace from their `from`, older late entries are dropped', () => {
    const s = foldJournal([
      { v: 1, id: 'r1', gen: 0, head: head() },
      { v: 1, id: 'r1', gen: 0, leg: { id: 'r1', instance: 'i0', legs: 0, sentBefore: 0, energyJ: 0 } },
      { v: 1, id: 'r1', gen: 0, from: 0, events: ev(' a', ' b') },
      { v: 1, id: 'r1', gen: 0, from: 2, events: ev(' c') },
      // a resume read up to ' c' and continues after it (from 3); gen 0 still wrote one more it had sent to a dead client
      { v: 1, id: 'r1', gen: 0, from: 3, events: ev(' X') },
      { v: 1, id: 'r1', gen: 1, leg: { id: 'r1-m1', instance: 'i1', legs: 1, sentBefore: 3, energyJ: 2 } },
      { v: 1, id: 'r1', gen: 1, from: 3, events: ev(' d') },
      { v: 1, id: 'r1', gen: 0, from: 4, events: ev(' Y') },
    ])!;
    expect(s.gen).toBe(1);
    expect(s.events.map((e) => e.text).join('')).toBe(' a b c d');
    expect(s.leg).toMatchObject({ id: 'r1-m1', instance: 'i1', legs: 1, sentBefore: 3 });
    expect(s.stop).toBeUndefined();
  });

  it('no head: nothing to resume; an entry past the events held: entries missing from what was read, a retryable 503', () => {
    expect(foldJournal([{ v: 1, id: 'r1', gen: 0, from: 0, events: ev(' a') }])).toBeUndefined();
    const entries: ResumeEntry[] = [{ v: 1, id: 'r1', gen: 0, head: head() }, { v: 1, id: 'r1', gen: 0, from: 0, events: ev(' a') }, { v: 1, id: 'r1', gen: 0, from: 5, events: ev(' f') }];
    const s = foldJournal(entries)!;
    expect(s.gap).toBe(true);
    expect(s.stop).toBeUndefined();
    const gap = resumePlan(entries, { id: 'r1', index: 0 }, 'completion', undefined);
    expect('error' in gap && gap.error).toMatchObject({ status: 503, retryAfterS: 1, retryable: true });
    // a journal that ends before the client's last event: the same (the client was sent only what the journal held)
    const behind = resumePlan(entries.slice(0, 2), { id: 'r1', index: 3 }, 'completion', undefined);
    expect('error' in behind && behind.error).toMatchObject({ status: 503, retryAfterS: 1 });
    expect('error' in behind && [behind.error.code, behind.error.body().error.code]).toEqual(['journal_behind', 503]);
    // a stream that stopped being resumable: 410
    const stopped = resumePlan([...entries.slice(0, 2), { v: 1, id: 'r1', gen: 0, stop: 'an error' }], { id: 'r1', index: 0 }, 'completion', undefined);
    expect('error' in stopped && stopped.error.status).toBe(410);
  });

  it('replays the events after the client\'s last, with the text of all for the continuation; a chat stream\'s event 0 is its role', () => {
    const s = foldJournal([{ v: 1, id: 'r1', gen: 0, head: head('chat') }, { v: 1, id: 'r1', gen: 0, from: 1, events: ev(' a', ' b', ' c') }])!;
    const p = replayAfter(s, 1);
    if (!p.ok) throw new Error(p.reason);
    expect(p.events.map((e) => [e.index, e.text, e.upTo])).toEqual([[2, ' b', 2], [3, ' c', 3]]);
    expect(p.text).toBe(' a b c');
    expect(p.sent).toBe(3);
    expect(p.next).toBe(4);
    expect(p.end).toBeUndefined();
    // the client holds event 4, which the journal never got
    expect(replayAfter(s, 4).ok).toBe(false);
    expect(replayAfter(s, 3)).toMatchObject({ ok: true, events: [], next: 4 });
  });

  it('an ended stream replays its end event and usage event after the client\'s last', () => {
    const s = foldJournal([
      { v: 1, id: 'r1', gen: 0, head: head() },
      { v: 1, id: 'r1', gen: 0, from: 0, events: ev(' a') },
      { v: 1, id: 'r1', gen: 0, end: { at: 1, text: ' z', tokens: 1, finish: 'length', stopReason: null } },
    ])!;
    expect(replayAfter(s, 0)).toMatchObject({ ok: true, endEvents: [1, 2] });
    expect(replayAfter(s, 1)).toMatchObject({ ok: true, endEvents: [2] });
    expect(replayAfter(s, 2)).toMatchObject({ ok: true, endEvents: [] });
    expect(replayAfter(s, 3).ok).toBe(false);
  });
});

/** A journal that keeps what is appended (through the codec, as NATS would carry it), held at once. */
function memoryBus(): { bus: JournalAppend; entries: ResumeEntry[] } {
  const entries: ResumeEntry[] = [];
  const bus: JournalAppend = async (m) => void entries.push(ResumeEntry.decode(ResumeEntry.encode(m)));
  return { bus, entries };
}

/** until the writer's acks and retries of this turn ran. */
const settle = () => new Promise((r) => setImmediate(r));

describe('JournalWriter', () => {
  it('one entry per flush, the leg, the end; past its cap a stop and nothing more', async () => {
    const { bus, entries } = memoryBus();
    const w = new JournalWriter(bus, 'r1', 0, 8);
    expect(await w.head(head()!)).toBe(true);
    w.text(0, ' ab', 1);
    w.text(1, ' cd', 1);
    expect(entries).toHaveLength(1);
    w.flush();
    await settle();
    expect(entries[1]).toMatchObject({ gen: 0, from: 0, events: ev(' ab', ' cd') });
    w.leg({ id: 'r1-m1', legs: 1, sentBefore: 2, energyJ: 0 });
    await settle();
    expect(entries[2]!.leg).toMatchObject({ id: 'r1-m1' });
    w.text(2, ' efg', 1);
    await settle();
    expect(entries.at(-1)!.stop).toMatch(/cap/);
    const n = entries.length;
    w.text(3, 'x', 1);
    w.flush();
    w.end({ at: 4, text: '', tokens: 0, finish: 'stop', stopReason: null });
    await settle();
    expect(entries).toHaveLength(n);
  });
});

/** A journal whose appends the test answers: each call waits in `calls` until ack() or refuse(). */
function manualJournal(): { append: JournalAppend; calls: { e: ResumeEntry; ack(): void; refuse(): void }[]; held: ResumeEntry[] } {
  const calls: { e: ResumeEntry; ack(): void; refuse(): void }[] = [];
  const held: ResumeEntry[] = [];
  const append: JournalAppend = (e) => new Promise<void>((ok, no) => {
    const copy = ResumeEntry.decode(ResumeEntry.encode(e));
    calls.push({ e: copy, ack: () => (held.push(copy), ok()), refuse: () => no(new Error('no responders')) });
  });
  return { append, calls, held };
}

describe('JournalWriter with the journal\'s acknowledgements', () => {
  const timing = { headMs: 300, attemptMs: 100, lagMs: 0, giveUpMs: 300 };

  it('one entry in flight: entries made meanwhile wait behind it, text events join into one; the client is held until each is held', async () => {
    const j = manualJournal();
    const w = new JournalWriter(j.append, 'r1', 0, 1 << 20, timing);
    const headHeld = w.head(head()!);
    w.leg({ id: 'r1', legs: 0, sentBefore: 0, energyJ: 0 });
    w.text(0, ' a', 1);
    w.flush();
    w.text(1, ' b', 1);
    w.flush();
    expect(j.calls).toHaveLength(1);
    expect(w.held()).toBe(true);
    let released = 0;
    w.onRelease(() => released++);
    j.calls[0]!.ack();
    expect(await headHeld).toBe(true);
    await settle();
    expect(released).toBe(1);
    expect(j.calls.map((c) => Object.keys(c.e).filter((k) => !['v', 'id', 'gen'].includes(k)).join())).toEqual(['head', 'leg']);
    // while the leg waits, more text joins the queued entry: one append for both flushes and this one
    w.text(2, ' c', 1);
    w.flush();
    j.calls[1]!.ack();
    await settle();
    expect(j.calls).toHaveLength(3);
    expect(j.calls[2]!.e).toMatchObject({ from: 0, events: ev(' a', ' b', ' c') });
    expect(w.held()).toBe(true);
    j.calls[2]!.ack();
    await settle();
    expect(w.held()).toBe(false);
    expect(foldJournal(j.held)!.events.map((e) => e.text).join('')).toBe(' a b c');
  });

  it('an append refused or unanswered is sent again, before any later entry, until the journal holds it', async () => {
    const j = manualJournal();
    const w = new JournalWriter(j.append, 'r1', 0, 1 << 20, { ...timing, giveUpMs: 5000 });
    const headHeld = w.head(head()!);
    j.calls[0]!.ack();
    await headHeld;
    w.text(0, ' a', 1);
    w.flush();
    j.calls[1]!.refuse();
    w.text(1, ' b', 1);
    w.flush();
    await new Promise((r) => setTimeout(r, 150));
    // the same entry again (the journal had no leader), the next one still behind it
    expect(j.calls).toHaveLength(3);
    expect(j.calls[2]!.e).toMatchObject({ from: 0, events: ev(' a') });
    expect(w.held()).toBe(true);
    j.calls[2]!.ack();
    await settle();
    expect(j.calls[3]!.e).toMatchObject({ from: 1, events: ev(' b') });
    j.calls[3]!.ack();
    await settle();
    expect(w.held()).toBe(false);
    expect(foldJournal(j.held)!.events.map((e) => e.text).join('')).toBe(' a b');
  });

  it('a head the journal does not hold within headMs: head() is false, nothing more is written or waited for', async () => {
    const j = manualJournal();
    const w = new JournalWriter(j.append, 'r1', 0, 1 << 20, timing);
    const t0 = Date.now();
    const headHeld = w.head(head()!);
    const refuse = setInterval(() => j.calls.forEach((c) => c.refuse()), 20);
    expect(await headHeld).toBe(false);
    clearInterval(refuse);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w.lost).toBe(true);
    const n = j.calls.length;
    w.text(0, ' a', 1);
    w.flush();
    w.end({ at: 1, text: '', tokens: 0, finish: 'stop', stopReason: null });
    expect(j.calls).toHaveLength(n);
    expect(w.held()).toBe(false);
  });

  it('the bounds are shares of the request\'s SLO: the head waits half its TTFT SLO, an entry half its TBT SLO (then the caps)', async () => {
    // an append the journal never answers (a stream whose leader died: nobody answers until one is elected)
    const calls: ResumeEntry[] = [];
    let answer = false;
    const silent: JournalAppend = async (e) => {
      calls.push(e);
      if (!answer) await new Promise(() => {});
    };
    const slo = { ttftMs: 250, tbtMs: 100 };
    // by default the caps alone (a stream stays resumable through a journal leader's election); sloShare adds the SLO's share
    expect(journalBounds(DEFAULT_JOURNAL_TIMING, slo)).toEqual({ headWaitMs: 10_000, writeWaitMs: 10_000 });
    expect(journalBounds(SLO_BOUND, slo)).toEqual({ headWaitMs: 125, writeWaitMs: 50 });
    expect(journalBounds(SLO_BOUND)).toEqual({ headWaitMs: 10_000, writeWaitMs: 10_000 });
    expect(journalBounds({ ...DEFAULT_JOURNAL_TIMING, headMs: 100, sloShare: 1 }, slo)).toEqual({ headWaitMs: 100, writeWaitMs: 100 });
    const timeouts: string[] = [];
    const onTimeout = (wait: 'head' | 'write') => timeouts.push(wait);
    const w = new JournalWriter(silent, 'r1', 0, 1 << 20, SLO_BOUND, undefined, slo, onTimeout);
    let t0 = Date.now();
    expect(await w.head(head()!)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(120);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w.lost).toBe(true);
    expect(timeouts).toEqual(['head']);

    answer = true;
    const w2 = new JournalWriter(silent, 'r2', 0, 1 << 20, SLO_BOUND, undefined, slo, onTimeout);
    expect(await w2.head(head()!)).toBe(true);
    answer = false;
    w2.text(0, ' a', 1);
    w2.flush();
    expect(w2.held()).toBe(true);
    t0 = Date.now();
    await new Promise<void>((r) => w2.onRelease(r));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w2.unresumable).toMatch(/within 50 ms/);
    expect(timeouts).toEqual(['head', 'write']);
  });

  it('by default a stream waits for its journal past its SLO (a leader election) and stays resumable', async () => {
    let answerAt = Infinity;
    const t0 = Date.now();
    // the journal answers once 400 ms have passed (a short prompt's TTFT SLO is 250 ms, its TBT SLO 100 ms)
    const late: JournalAppend = async () => {
      while (Date.now() < answerAt) await new Promise((r) => setTimeout(r, 10));
    };
    answerAt = t0 + 400;
    const timeouts: string[] = [];
    const w = new JournalWriter(late, 'r1', 0, 1 << 20, DEFAULT_JOURNAL_TIMING, undefined, { ttftMs: 250, tbtMs: 100 }, (wait) => timeouts.push(wait));
    expect(await w.head(head()!)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390);
    answerAt = Date.now() + 300;
    w.text(0, ' a', 1);
    w.flush();
    await new Promise<void>((r) => w.onRelease(r));
    expect(w.lost).toBe(false);
    expect(timeouts).toEqual([]);
  });

  it('lagMs > 0: the client waits only for an entry that has waited that long', async () => {
    const j = manualJournal();
    const w = new JournalWriter(j.append, 'r1', 0, 1 << 20, { ...timing, lagMs: 50, giveUpMs: 5000 });
    void w.head(head()!);
    expect(w.held()).toBe(false);
    await new Promise((r) => setTimeout(r, 60));
    expect(w.held()).toBe(true);
    j.calls[0]!.ack();
    await settle();
    expect(w.held()).toBe(false);
  });
});

// ---- two replicas over one journal ----

const MAX = 12;
const word = (i: number) => ` w${i}`;

/** A backend whose request yields ` w<i>` for i from where it starts to `max`, one token per batch, every 15 ms. */
function fakeBackend(log: { resumed: ResumeFrom[]; legs: string[] }, max = MAX): GatewayBackend {
  async function* gen(req: InferenceRequest, from: number, signal: AbortLike): AsyncGenerator<TokenChunk[]> {
    for (let i = from; i < max; i++) {
      await new Promise((r) => setTimeout(r, 15));
      if (signal.aborted) return;
      const last = i === max - 1;
      yield [{ v: 1, id: req.id, seq: i, text: word(i), tokens: 1, ...(last ? { done: true, finishReason: 'length' as const, usage: { promptTokens: 3, completionTokens: max, energyJ: 5, energySource: 'modelled' as const } } : {}) }];
    }
  }
  const stream = (req: InferenceRequest, from: number, signal: AbortLike) => {
    const g = gen(req, from, signal);
    return { batches: () => g, [Symbol.asyncIterator]: () => { throw new Error('batches only'); } } as unknown as AsyncIterable<TokenChunk> & { batches(): AsyncIterable<readonly TokenChunk[]> };
  };
  return {
    async submit(req, signal, hooks?: StreamHooks) {
      hooks?.onLeg?.({ id: req.id, instance: 'i0', legs: 0, sentBefore: 0, energyJ: 0 });
      log.legs.push(req.id);
      return stream(req, 0, signal);
    },
    async resume(req, from, signal, hooks?: StreamHooks) {
      log.resumed.push(from);
      hooks?.onLeg?.({ id: `${req.id}-m1`, instance: 'i1', legs: 1, sentBefore: from.sent, energyJ: 0 });
      return stream(req, from.sent, signal);
    },
  };
}

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(0);
});

async function replica(backend: GatewayBackend, journal?: StreamJournal, sloOf?: () => { ttftMs: number; tbtMs: number }): Promise<string> {
  const s = new GatewayServer({ backend, port: 0, models: ['m'], maxModelLen: 4096, ...(journal ? { journal } : {}), ...(sloOf ? { sloOf } : {}) });
  servers.push(s);
  return `http://127.0.0.1:${await s.listen()}`;
}

/** The SSE events of `text` that are complete: their id (if any) and data. */
function events(text: string): { id?: string; data: string }[] {
  const out: { id?: string; data: string }[] = [];
  for (const block of text.split('\n\n').slice(0, -1)) {
    const id = /^id: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
    out.push({ ...(id !== undefined ? { id } : {}), data });
  }
  return out;
}

const textOf = (evs: { data: string }[]) => evs.filter((e) => e.data.startsWith('{')).map((e) => (JSON.parse(e.data) as { choices: { text?: string }[] }).choices[0]?.text ?? '').join('');
const body = JSON.stringify({ model: 'm', prompt: 'hello', max_tokens: MAX, stream: true, stream_options: { include_usage: true } });

describe('resume through the HTTP layer of another replica', () => {
  it('a stream cut mid-way continues on the other replica from Last-Event-ID: every token once, every id once', async () => {
    const { bus, entries } = memoryBus();
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(bus, id, gen, 1 << 20), read: async (id) => entries.filter((e) => e.id === id) };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const a = await replica(fakeBackend(log), journal);
    const b = await replica(fakeBackend(log), journal);

    // replica a: read until 5 events arrived, then the connection dies
    const ac = new AbortController();
    const r1 = await fetch(`${a}/v1/completions`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body });
    expect(r1.status).toBe(200);
    const reqId = r1.headers.get('x-request-id')!;
    let got = '';
    const dec = new TextDecoder();
    const reader = r1.body!.getReader();
    while (events(got).length < 5) got += dec.decode((await reader.read()).value, { stream: true });
    ac.abort();
    const first = events(got);
    expect(first.map((e) => e.id)).toEqual(first.map((_, i) => eventId(reqId, i)));
    await new Promise((r) => setTimeout(r, 50));

    // replica b: the rest, from the journal and a continuation
    const last = first.at(-1)!.id!;
    const r2 = await fetch(`${b}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': last, 'x-dynamollm-resumable': '1' }, body });
    expect(r2.status).toBe(200);
    expect(r2.headers.get('x-request-id')).toBe(reqId);
    const rest = events(await r2.text());
    expect(rest.at(-1)!.data).toBe('[DONE]');
    const all = [...first, ...rest.slice(0, -1)];
    expect(all.map((e) => e.id)).toEqual(all.map((_, i) => eventId(reqId, i)));
    // the whole token sequence once: the events replica a had journaled past the cut, then the continuation
    expect(textOf(all)).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));
    // the continuation started from the journal's text and leg (a's leg on i0)
    expect(log.resumed).toHaveLength(1);
    const from = log.resumed[0]!;
    expect(from.text).toBe(Array.from({ length: from.sent }, (_, i) => word(i)).join(''));
    expect(from.sent).toBeGreaterThanOrEqual(5);
    expect(from.leg).toMatchObject({ id: reqId, instance: 'i0', legs: 0 });
    const usage = JSON.parse(all.at(-1)!.data) as { usage: { completion_tokens: number; energy_joules: number } };
    expect(usage.usage.completion_tokens).toBe(MAX);
    // the journal now says b's leg generates it, and it ended
    const s = foldJournal(entries.filter((e) => e.id === reqId))!;
    expect(s.gen).toBe(1);
    expect(s.leg).toMatchObject({ id: `${reqId}-m1`, instance: 'i1' });
    expect(s.end).toBeDefined();

    // a resume after the end: the end again, then [DONE]
    const r3 = await fetch(`${b}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': eventId(reqId, all.length - 3) }, body });
    const tail = events(await r3.text());
    expect(tail.map((e) => e.id ?? e.data)).toEqual([eventId(reqId, all.length - 2), eventId(reqId, all.length - 1), '[DONE]']);
  }, 20_000);

  it('a journal that does not hold the head within headMs: the request still succeeds, served without resumption, and the header says so', async () => {
    let appends = 0;
    const refusing: JournalAppend = async () => {
      appends++;
      throw new Error('no responders');
    };
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(refusing, id, gen, 1 << 20, { headMs: 300, attemptMs: 100, lagMs: 0, giveUpMs: 300 }), read: async () => [] };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const a = await replica(fakeBackend(log), journal);
    const t0 = Date.now();
    const r = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body });
    expect(r.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(r.headers.get('x-dynamollm-resumable')).toBe('0');
    const text = await r.text();
    expect(text).not.toMatch(/^id:/m);
    expect(textOf(events(text))).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));
    expect(appends).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it('a journal whose leader is gone: the head waits half the TTFT SLO, then the stream is served at once without resumption', async () => {
    const silent: JournalAppend = () => new Promise(() => {});
    const journal: StreamJournal = { writer: (id, gen, slo) => new JournalWriter(silent, id, gen, 1 << 20, SLO_BOUND, undefined, slo), read: async () => [] };
    const a = await replica(fakeBackend({ resumed: [], legs: [] }), journal, () => ({ ttftMs: 250, tbtMs: 100 }));
    const t0 = Date.now();
    const r = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body });
    const firstByteMs = Date.now() - t0;
    expect(r.status).toBe(200);
    expect(firstByteMs).toBeGreaterThanOrEqual(120);
    expect(firstByteMs).toBeLessThan(1000);
    expect(r.headers.get('x-dynamollm-resumable')).toBe('0');
    const text = await r.text();
    expect(text).not.toMatch(/^id:/m);
    expect(textOf(events(text))).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));
  }, 20_000);

  it('a journal that stops answering mid-stream: the client waits half the TBT SLO, then gets the rest without event ids, its last id reset', async () => {
    const held: ResumeEntry[] = [];
    let answer = true;
    const app: JournalAppend = (e) => {
      if (!answer) return new Promise(() => {});
      held.push(ResumeEntry.decode(ResumeEntry.encode(e)));
      if (e.events && e.from! + e.events.length >= 4) answer = false;
      return Promise.resolve();
    };
    const journal: StreamJournal = { writer: (id, gen, slo) => new JournalWriter(app, id, gen, 1 << 20, SLO_BOUND, undefined, slo), read: async (id) => held.filter((e) => e.id === id) };
    const a = await replica(fakeBackend({ resumed: [], legs: [] }), journal, () => ({ ttftMs: 250, tbtMs: 100 }));
    const t0 = Date.now();
    const r = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body });
    expect(r.headers.get('x-dynamollm-resumable')).toBe('1');
    const text = await r.text();
    // 12 tokens 15 ms apart and one wait of 50 ms (not the journal's 10-s cap)
    expect(Date.now() - t0).toBeLessThan(2000);
    const evs = events(text);
    expect(textOf(evs)).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));
    expect(evs.at(-1)!.data).toBe('[DONE]');
    // ids only on the events the journal held, from 0 in order; then one comment and an empty id (the reset), then none
    const reqId = r.headers.get('x-request-id')!;
    const ids = evs.filter((e) => e.id !== undefined).map((e) => e.id);
    expect(ids).toEqual(ids.map((_, i) => eventId(reqId, i)));
    expect(ids.length).toBeGreaterThanOrEqual(4);
    expect(ids.length).toBeLessThan(MAX);
    const s = foldJournal(held)!;
    expect(ids.length).toBeLessThanOrEqual(s.base + s.events.length);
    expect(text.match(/^: not resumable: the journal did not hold an entry within 50 ms\nid:\n/gm)).toHaveLength(1);
    expect(text.match(/^id:$/gm)).toHaveLength(1);
  }, 20_000);

  it('a journal silent for a while mid-stream: ids come back once it holds all the client was sent; a resume from a later id gets the rest once, one from before 410', async () => {
    const n = 40;
    const held: ResumeEntry[] = [];
    // the entry reaching event 3 is held at once; the appends of the next 120 ms are answered at its end (a new leader)
    let silentUntil = 0;
    const app: JournalAppend = (e) => {
      const hold = () => void held.push(ResumeEntry.decode(ResumeEntry.encode(e)));
      const wait = silentUntil - Date.now();
      if (silentUntil === 0 && e.events && e.from! + e.events.length >= 4) silentUntil = Date.now() + 120;
      if (wait <= 0) return Promise.resolve(hold());
      return new Promise<void>((ok) => setTimeout(() => ok(hold()), wait));
    };
    const journal: StreamJournal = { writer: (id, gen, slo) => new JournalWriter(app, id, gen, 1 << 20, SLO_BOUND, undefined, slo), read: async (id) => held.filter((e) => e.id === id) };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const slo = () => ({ ttftMs: 250, tbtMs: 100 });
    const a = await replica(fakeBackend(log, n), journal, slo);
    const b = await replica(fakeBackend(log, n), journal, slo);
    const req = JSON.stringify({ model: 'm', prompt: 'hello', max_tokens: n, stream: true, stream_options: { include_usage: true } });
    const ac = new AbortController();
    const r1 = await fetch(`${a}/v1/completions`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body: req });
    expect(r1.headers.get('x-dynamollm-resumable')).toBe('1');
    const reqId = r1.headers.get('x-request-id')!;
    // read until 3 events with ids came after the reset, then the connection dies
    const reader = r1.body!.getReader();
    const dec = new TextDecoder();
    let got = '';
    const idsAfterReset = () => (got.includes('\nid:\n') ? events(got.slice(got.indexOf('\nid:\n'))).filter((e) => e.id !== undefined).length : 0);
    while (idsAfterReset() < 3) {
      const { value, done } = await reader.read();
      expect(done).toBe(false);
      got += dec.decode(value, { stream: true });
    }
    ac.abort();
    expect(got.match(/^: not resumable: the journal did not hold an entry within 50 ms\nid:\n/gm)).toHaveLength(1);
    const first = events(got);
    // every id is its event's index: ids before the reset, none in the range, ids again after the catch-up
    const withId = first.flatMap((e, i) => (e.id !== undefined ? [i] : []));
    for (const i of withId) expect(first[i]!.id).toBe(eventId(reqId, i));
    const reset = got.slice(0, got.indexOf('\nid:\n')).split('\n\n').length - 1;
    const until = withId.find((i) => i >= reset)!;
    expect(until).toBeGreaterThan(reset);
    expect(first.slice(reset, until).every((e) => e.id === undefined)).toBe(true);
    expect(first.slice(until).every((e) => e.id !== undefined)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const resume = (last: number) => fetch(`${b}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': eventId(reqId, last), 'x-dynamollm-resumable': '1' }, body: req });
    // from before the reset, or from inside the range: the client has events after it, 410
    for (const last of [reset - 1, until - 1]) {
      const r = await resume(last);
      expect(r.status).toBe(410);
      expect(r.headers.get('x-dynamollm-error-code')).toBe('stream_not_resumable');
      expect(((await r.json()) as { error: { code: number } }).error.code).toBe(410);
    }
    // from the last id the client has: every remaining token once, ids from the next index on
    const r2 = await resume(first.length - 1);
    expect(r2.status).toBe(200);
    const rest = events(await r2.text());
    expect(rest.at(-1)!.data).toBe('[DONE]');
    const all = [...first, ...rest.slice(0, -1)];
    expect(rest.slice(0, -1).map((e) => e.id)).toEqual(rest.slice(0, -1).map((_, i) => eventId(reqId, first.length + i)));
    expect(textOf(all)).toBe(Array.from({ length: n }, (_, i) => word(i)).join(''));
    expect(log.resumed).toHaveLength(1);
    expect(log.resumed[0]!.text).toBe(Array.from({ length: log.resumed[0]!.sent }, (_, i) => word(i)).join(''));
  }, 20_000);

  it('an event reaches the client only once the journal holds it (acks 30 ms late)', async () => {
    const held: ResumeEntry[] = [];
    const slow: JournalAppend = (e) => new Promise<void>((ok) => setTimeout(() => (held.push(ResumeEntry.decode(ResumeEntry.encode(e))), ok()), 30));
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(slow, id, gen, 1 << 20), read: async (id) => held.filter((e) => e.id === id) };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const a = await replica(fakeBackend(log), journal);
    const r = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' }, body });
    expect(r.headers.get('x-dynamollm-resumable')).toBe('1');
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let got = '';
    let checked = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      got += dec.decode(value, { stream: true });
      // every text event the client has is in the journal already
      const s = foldJournal(held)!;
      const have = events(got).filter((e) => e.id !== undefined && !/finish_reason":"length/.test(e.data) && !/"usage":\{/.test(e.data));
      for (const e of have) expect(Number(e.id!.split(':')[1])).toBeLessThan(s.base + s.events.length + (s.end ? 1 : 0));
      checked = have.length;
    }
    expect(checked).toBe(MAX - 1);
    expect(foldJournal(held)!.end).toBeDefined();
  }, 20_000);

  it('without opting in: no id lines and nothing journaled; unknown and malformed ids are refused with an OpenAI error body', async () => {
    const { bus, entries } = memoryBus();
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(bus, id, gen, 1 << 20), read: async (id) => entries.filter((e) => e.id === id) };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const a = await replica(fakeBackend(log), journal);
    const plain = await (await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).text();
    expect(plain).not.toMatch(/^id:/m);
    expect(entries).toHaveLength(0);
    expect(textOf(events(plain))).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));

    const r404 = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': 'nosuchstream:3' }, body });
    expect(r404.status).toBe(404);
    expect(r404.headers.get('x-dynamollm-error-code')).toBe('stream_not_found');
    expect(await r404.json()).toMatchObject({ error: { code: 404, type: 'NotFoundError' } });
    const r400 = await fetch(`${a}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': 'no id' }, body });
    expect(r400.status).toBe(400);
    expect(log.resumed).toHaveLength(0);
  }, 20_000);
});
