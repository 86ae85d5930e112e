/**
 * The request mix of `dynamollm chaos --mix` (src/cli/chaos-mix.ts) and its SDK-like client (src/cli/chaos-sdk-client.ts)
 * against real HTTP servers on loopback. The mix parses to shares and picks kinds by them; the SDK kinds send no
 * resumable opt-in, retry a refused connection or a retryable status (408/409/429/5xx) before a response at most
 * max_retries times with the SDKs' backoff and never once a response began; each kind's answer is checked (a stream:
 * [DONE] and max_tokens words; an answer: 200, max_tokens words and usage.completion_tokens); a failure gets its
 * cause, and a break after the response began whose gateway was killed just before is the one no server can avoid.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIX, failureCause, mixReport, parseMix, pickKind, resumeFigures } from '../../src/cli/chaos-mix.ts';
import { sdkBackoffMs, sdkRequest, sdkRetries, type SdkKind } from '../../src/cli/chaos-sdk-client.ts';
import { freePort } from '../helpers/net.ts';

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

const N = 4;
const text = (n: number) => Array.from({ length: n }, (_, i) => ` w${i}`);

type Mode = 'ok' | 'short' | 'usageShort' | 'dup' | 'break' | '503' | '400' | 'error' | 'drain';

/** A gateway stand-in answering every request in `mode` ('503': with retry-after-ms 5), recording each request's path, headers and body. */
async function gateway(mode: Mode): Promise<{ url: string; seen: { path: string; headers: IncomingMessage['headers']; body: Record<string, unknown> }[] }> {
  const seen: { path: string; headers: IncomingMessage['headers']; body: Record<string, unknown> }[] = [];
  const s = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      seen.push({ path: req.url ?? '', headers: req.headers, body });
      const chat = req.url === '/v1/chat/completions';
      if (mode === '503') {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after-ms': '5' });
        return res.end('{"error":{"message":"no instance","code":"no_capacity"}}');
      }
      if (mode === '400') {
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end('{"error":{"message":"bad","code":"invalid"}}');
      }
      const words = text(mode === 'short' ? N - 1 : N);
      if (!body.stream) {
        const content = words.join('');
        const usage = { prompt_tokens: 9, completion_tokens: mode === 'usageShort' ? N - 1 : words.length, total_tokens: 9 + words.length };
        res.writeHead(200, { 'content-type': 'application/json' });
        if (mode === 'break') {
          res.write('{"id":"cmpl-1","choices":[');
          return setTimeout(() => req.socket.destroy(), 20);
        }
        return res.end(JSON.stringify({ id: 'x', choices: [chat ? { index: 0, message: { role: 'assistant', content } } : { index: 0, text: content }], usage }));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const ev = (w: string) => `data: ${JSON.stringify({ choices: [chat ? { index: 0, delta: { content: w } } : { index: 0, text: w }] })}\n\n`;
      let out = chat ? `data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] })}\n\n` : '';
      if (mode === 'break') {
        res.write(out + ev(words[0]!) + ev(words[1]!));
        return setTimeout(() => req.socket.destroy(), 20);
      }
      // a draining gateway's cut of a stream not opted in to resumption: a retryable error event (no ids), [DONE]
      if (mode === 'drain') return res.end(out + ev(words[0]!) + 'data: {"error":{"message":"gateway shutting down","type":"service_unavailable","param":null,"code":"unavailable","retryable":true}}\n\ndata: [DONE]\n\n');
      if (mode === 'error') return res.end(out + ev(words[0]!) + 'data: {"error":{"message":"engine died","code":"timeout"}}\n\n');
      for (const w of words) out += ev(w);
      if (mode === 'dup') out += ev(words[1]!);
      res.end(out + 'data: [DONE]\n\n');
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen };
}

const opts = { model: 'm', maxTokens: N, deadlineMs: 10_000, random: () => 0 };
const KINDS: SdkKind[] = ['stream', 'chat', 'nonstream', 'chat-nonstream'];

describe('chaos --mix: parsing and the draw', () => {
  it('parses weights into shares; refuses an unknown or repeated kind, a negative weight, weights summing to 0', () => {
    expect(parseMix(DEFAULT_MIX)).toEqual({ resumable: 1 });
    expect(parseMix('resumable=0.5,stream=0.2,chat=0.15,nonstream=0.15')).toEqual({ resumable: 0.5, stream: 0.2, chat: 0.15, nonstream: 0.15 });
    expect(parseMix('chat-nonstream=3, stream=1,nonstream=0')).toEqual({ stream: 0.25, 'chat-nonstream': 0.75 });
    for (const bad of ['resumable=1,sse=1', 'stream=1,stream=2', 'stream=-1,chat=1', 'stream=0', 'stream', 'chat=x']) expect(() => parseMix(bad), bad).toThrow(/--mix/);
  });

  it('draws each kind over its share', () => {
    const mix = parseMix('resumable=0.5,stream=0.2,chat=0.15,nonstream=0.15');
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const k = pickKind(mix, i / 1000);
      counts[k] = (counts[k] ?? 0) + 1;
    }
    expect(counts).toEqual({ resumable: 500, stream: 200, chat: 150, nonstream: 150 });
    expect(pickKind({ resumable: 1 }, 0.999)).toBe('resumable');
  });

  it('the SDKs\' backoff and retryable statuses', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => sdkBackoffMs(n, 0))).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
    expect(sdkBackoffMs(0, 1)).toBe(375);
    expect(sdkBackoffMs(3, 0, new Headers({ 'retry-after-ms': '40' }))).toBe(40);
    expect(sdkBackoffMs(0, 0, new Headers({ 'retry-after': '2' }))).toBe(2000);
    // a retry-after of a minute or more is not followed
    expect(sdkBackoffMs(0, 0, new Headers({ 'retry-after': '120' }))).toBe(500);
    expect([408, 409, 429, 500, 503].every((s) => sdkRetries(s))).toBe(true);
    expect([400, 401, 404, 422].some((s) => sdkRetries(s))).toBe(false);
    expect(sdkRetries(400, 'true')).toBe(true);
    expect(sdkRetries(503, 'false')).toBe(false);
  });
});

describe('chaos --mix: the SDK kinds', () => {
  it('each kind whole is ok: the path, stream flag, ignore_eos, no resumable opt-in', async () => {
    const g = await gateway('ok');
    for (const kind of KINDS) {
      const o = await sdkRequest({ ...opts, kind, urls: [g.url] });
      expect(o, kind).toMatchObject({ ok: true, hung: false, kind, retries: 0, words: N });
    }
    expect(g.seen.map((x) => x.path)).toEqual(['/v1/completions', '/v1/chat/completions', '/v1/completions', '/v1/chat/completions']);
    expect(g.seen.map((x) => x.body.stream)).toEqual([true, true, false, false]);
    expect(g.seen.every((x) => x.body.ignore_eos === true && x.body.max_tokens === N && x.headers['x-dynamollm-resumable'] === undefined)).toBe(true);
    expect(g.seen[1]!.body.messages).toEqual([{ role: 'user', content: expect.any(String) }]);
  });

  it('an answer or a stream with a token short or repeated fails, and so does an answer whose usage is short', async () => {
    const short = await gateway('short');
    for (const kind of KINDS) {
      const o = await sdkRequest({ ...opts, kind, urls: [short.url] });
      expect(o, kind).toMatchObject({ ok: false, hung: false, words: N - 1, failure: kind.endsWith('nonstream') ? 'answer' : 'tokens' });
    }
    const usage = await gateway('usageShort');
    expect(await sdkRequest({ ...opts, kind: 'nonstream', urls: [usage.url] })).toMatchObject({ ok: false, failure: 'answer', words: N, code: `${N} words, usage.completion_tokens ${N - 1}, for ${N} tokens` });
    const dup = await gateway('dup');
    expect(await sdkRequest({ ...opts, kind: 'chat', urls: [dup.url] })).toMatchObject({ ok: false, failure: 'tokens', words: N + 1 });
    const err = await gateway('error');
    const o = await sdkRequest({ ...opts, kind: 'chat', urls: [err.url] });
    expect(o).toMatchObject({ ok: false, failure: 'event', error: 'timeout' });
    expect(failureCause(o, [])).toEqual({ cause: 'the stream ended with an error event: timeout', unavoidable: false });
    // a draining replica's retryable error event: an SDK raises it (no event id to resume from), sent once
    const draining = await gateway('drain');
    const cut = await sdkRequest({ ...opts, kind: 'stream', urls: [draining.url] });
    expect(cut).toMatchObject({ ok: false, failure: 'event', error: 'unavailable', retryable: true, resumed: 0, words: 1 });
    expect(draining.seen.length).toBe(1);
    expect(failureCause(cut, [])).toEqual({ cause: 'the stream ended with a retryable error event, not resumable (no event id: not opted in): unavailable', unavoidable: false });
  });

  it('a refused connection and a retryable status are retried on the next replica, max_retries times; a 400 is not', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const busy = await gateway('503');
    const live = await gateway('ok');
    // from whichever replica the turn starts on, the live one is reached within 2 retries
    for (let i = 0; i < 3; i++) {
      const o = await sdkRequest({ ...opts, kind: 'nonstream', urls: [dead, busy.url, live.url] });
      expect(o).toMatchObject({ ok: true, replica: 2 });
      expect(o.retries).toBeLessThanOrEqual(2);
    }
    const spent = await sdkRequest({ ...opts, kind: 'stream', urls: [busy.url], maxRetries: 2 });
    expect(spent).toMatchObject({ ok: false, hung: false, failure: 'status', error: 'http 503', code: 'no_capacity', retries: 2 });
    expect(spent.attempts?.map((a) => a.cause)).toEqual(['http 503', 'http 503', 'http 503']);
    const none = await sdkRequest({ ...opts, kind: 'chat', urls: [dead], maxRetries: 1 });
    expect(none).toMatchObject({ ok: false, failure: 'connection', error: 'connection: ECONNREFUSED', retries: 1 });
    const bad = await gateway('400');
    expect(await sdkRequest({ ...opts, kind: 'chat-nonstream', urls: [bad.url] })).toMatchObject({ ok: false, failure: 'status', error: 'http 400', retries: 0 });
    expect(bad.seen.length).toBe(1);
  });

  it('a break after the response began is not retried; its cause says whether the gateway holding it died', async () => {
    for (const kind of ['stream', 'nonstream'] as const) {
      const broken = await gateway('break');
      const live = await gateway('ok');
      let o = await sdkRequest({ ...opts, kind, urls: [broken.url, live.url] });
      if (o.replica !== 0) o = await sdkRequest({ ...opts, kind, urls: [broken.url, live.url] });
      expect(o, kind).toMatchObject({ ok: false, hung: false, failure: 'broken', replica: 0, retries: 0 });
      expect(broken.seen.length).toBe(1);
      const what = kind === 'stream' ? 'stream' : 'answer';
      const at = o.brokenAtMs!;
      expect(failureCause(o, [{ kind: 'gateway', id: 'gw-0', atMs: at - 100 }])).toEqual({ cause: `${what} broke after its response began, not resumable: its gateway died`, unavoidable: true });
      // another replica's kill, a standby's, or one long before: the system's
      for (const k of [{ kind: 'gateway', id: 'gw-1', atMs: at - 100 }, { kind: 'gateway', id: 'gw-0', atMs: at - 100, standby: true }, { kind: 'gateway', id: 'gw-0', atMs: at - 10_000 }]) {
        expect(failureCause(o, [k]).unavoidable, JSON.stringify(k)).toBe(false);
      }
    }
  });

  it('the report per kind and per cause', async () => {
    const live = await gateway('ok');
    const short = await gateway('short');
    const broken = await gateway('break');
    const outs = [
      await sdkRequest({ ...opts, kind: 'nonstream', urls: [live.url] }),
      await sdkRequest({ ...opts, kind: 'nonstream', urls: [short.url] }),
      await sdkRequest({ ...opts, kind: 'chat', urls: [broken.url] }),
      { ok: false, hung: true, replica: 0, retries: 0, resumed: 0, resent: 0 },
      // resumable streams: one resumed after a break and after a draining replica's error event, ok; one whose
      // resumes ran out on such events; one ended by a retryable error event with an id (not resumable)
      { ok: true, hung: false, replica: 1, retries: 0, resumed: 2, resumedOnError: 1, resent: 0 },
      { ok: false, hung: false, failure: 'event' as const, error: 'unavailable', retryable: true, resumesSpent: true, replica: 0, retries: 0, resumed: 4, resumedOnError: 4, resent: 0 },
      { ok: false, hung: false, failure: 'event' as const, error: 'unavailable', retryable: true, replica: 0, retries: 0, resumed: 0, resent: 0 },
    ];
    const kills = [{ kind: 'gateway', id: 'gw-0', atMs: outs[2]!.brokenAtMs! - 50 }];
    const r = mixReport(outs, kills);
    expect(r.byKind).toEqual({
      nonstream: { sent: 2, ok: 1, failed: 1, hung: 0, broken: 0, unavoidable: 0, clientRetries: 0, resumed: 0, resumedOnError: 0, okAfterResume: 0 },
      chat: { sent: 1, ok: 0, failed: 1, hung: 0, broken: 1, unavoidable: 1, clientRetries: 0, resumed: 0, resumedOnError: 0, okAfterResume: 0 },
      resumable: { sent: 4, ok: 1, failed: 2, hung: 1, broken: 0, unavoidable: 0, clientRetries: 0, resumed: 6, resumedOnError: 5, okAfterResume: 1 },
    });
    expect(r.failureCauses).toEqual({
      'the answer is not whole (words or usage.completion_tokens short of max_tokens, or more)': { n: 1, unavoidable: false },
      'stream broke after its response began, not resumable: its gateway died': { n: 1, unavoidable: true },
      'hung: no end within the deadline': { n: 1, unavoidable: false },
      'the stream ended with a retryable error event without an id (unavailable), its resumes spent': { n: 1, unavoidable: false },
      'the stream ended with a retryable error event, not resumable (the event had an id: the stream ended): unavailable': { n: 1, unavoidable: false },
    });
    expect([r.failedUnavoidable, r.failedBySystem]).toEqual([1, 4]);
    expect(resumeFigures(outs)).toEqual({ resumes: 6, onErrorEvent: 5, requests: 2, okAfterResume: 1 });
  });
});
