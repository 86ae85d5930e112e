/**
 * A resumable stream whose client named its own id (X-Request-Id): the events and the x-request-id header carry the
 * client's id on the replica that took the request and on the one that resumes it (the journal's head keeps it), while
 * the SSE `id:` lines, the journal and the legs keep the gateway's own id (docs/PROTOCOL.md "Resumable streams").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayServer, type GatewayBackend, type ResumeFrom, type StreamHooks, type StreamJournal } from '../../actors/gateway/server.ts';
import { JournalWriter, eventId, foldJournal, type JournalAppend } from '../../actors/gateway/resume.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

const MAX = 12;
const word = (i: number) => ` w${i}`;

/** ` w<i>` from where the leg starts to MAX, one token per batch every 15 ms; legs and resumes logged. */
function backend(log: { resumed: ResumeFrom[]; legs: string[] }): GatewayBackend {
  async function* gen(req: InferenceRequest, from: number, signal: AbortLike): AsyncGenerator<TokenChunk[]> {
    for (let i = from; i < MAX; i++) {
      await new Promise((r) => setTimeout(r, 15));
      if (signal.aborted) return;
      const last = i === MAX - 1;
      yield [{ v: 1, id: req.id, seq: i, text: word(i), tokens: 1, ...(last ? { done: true, finishReason: 'length' as const, usage: { promptTokens: 3, completionTokens: MAX, energyJ: 5, energySource: 'modelled' as const } } : {}) }];
    }
  }
  const stream = (req: InferenceRequest, from: number, signal: AbortLike) => {
    const g = gen(req, from, signal);
    return { batches: () => g, [Symbol.asyncIterator]: () => { throw new Error('batches only'); } } as unknown as AsyncIterable<TokenChunk>;
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
async function replica(b: GatewayBackend, journal: StreamJournal): Promise<string> {
  const s = new GatewayServer({ backend: b, port: 0, models: ['m'], maxModelLen: 4096, journal });
  servers.push(s);
  return `http://127.0.0.1:${await s.listen()}`;
}
/** the complete SSE events of `text`: their id line (if any) and data */
const events = (text: string) => text.split('\n\n').slice(0, -1).map((b) => ({ id: /^id: (.*)$/m.exec(b)?.[1], data: /^data: (.*)$/m.exec(b)?.[1] ?? '' }));

describe('a resumable stream with the client\'s id', () => {
  it("names every event and the header with the client's id on both replicas; the SSE ids, journal and legs keep the gateway's", async () => {
    const entries: ResumeEntry[] = [];
    // each entry as the journal would hold it: encoded and decoded against its schema
    const append: JournalAppend = async (e) => void entries.push(ResumeEntry.decode(ResumeEntry.encode(e)));
    const journal: StreamJournal = { writer: (id, gen) => new JournalWriter(append, id, gen, 1 << 20), read: async (id) => entries.filter((e) => e.id === id) };
    const log = { resumed: [] as ResumeFrom[], legs: [] as string[] };
    const a = await replica(backend(log), journal);
    const b = await replica(backend(log), journal);
    const body = JSON.stringify({ model: 'm', prompt: 'hello', max_tokens: MAX, stream: true, stream_options: { include_usage: true } });
    const ac = new AbortController();
    const r1 = await fetch(`${a}/v1/completions`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-dynamollm-resumable': '1', 'x-request-id': 'client-7' }, body });
    expect(r1.headers.get('x-request-id')).toBe('client-7');
    expect(r1.headers.get('x-dynamollm-resumable')).toBe('1');
    let got = '';
    const dec = new TextDecoder();
    const reader = r1.body!.getReader();
    while (events(got).length < 5) got += dec.decode((await reader.read()).value, { stream: true });
    ac.abort();
    const first = events(got);
    const internal = log.legs.at(-1)!;
    expect(internal).not.toBe('client-7');
    expect(first.map((e) => e.id)).toEqual(first.map((_, i) => eventId(internal, i)));
    await new Promise((r) => setTimeout(r, 50));
    // the reconnect's own X-Request-Id does not rename the stream: its journal's head does
    const r2 = await fetch(`${b}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'last-event-id': first.at(-1)!.id!, 'x-dynamollm-resumable': '1', 'x-request-id': 'another' }, body });
    expect(r2.status).toBe(200);
    expect(r2.headers.get('x-request-id')).toBe('client-7');
    const rest = events(await r2.text());
    expect(rest.at(-1)!.data).toBe('[DONE]');
    const all = [...first, ...rest.slice(0, -1)];
    expect(all.map((e) => (JSON.parse(e.data) as { choices: { text?: string }[] }).choices[0]?.text ?? '').join('')).toBe(Array.from({ length: MAX }, (_, i) => word(i)).join(''));
    for (const e of all) expect((JSON.parse(e.data) as { id: string }).id).toBe('cmpl-client-7');
    expect(log.resumed).toHaveLength(1);
    expect(foldJournal(entries.filter((e) => e.id === internal))!.head.responseId).toBe('client-7');
  }, 20_000);
});
