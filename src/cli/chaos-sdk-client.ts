/**
 * The requests of `dynamollm chaos --mix` (chaos-mix.ts) that an ordinary OpenAI client sends: streamed and
 * non-streamed /v1/completions and /v1/chat/completions, without the resumable opt-in. They are sent as the openai
 * SDKs send them (openai-node's and openai-python's retry loop): a connection refused or reset before any response,
 * or a retryable status (408, 409, 429, 5xx; an `x-should-retry` header overrules), is sent again after the SDK's
 * backoff, at most `maxRetries` times (the SDKs' max_retries, 2 by default). The backoff is the SDKs': a
 * `retry-after-ms` or `retry-after` of 0-60 s where the answer has one, else min(0.5 s x 2^n, 8 s) less up to 25 %
 * jitter before the n-th retry (n from 0). Each try goes to the next replica (a client behind a load balancer).
 * Nothing is retried once a 2xx response began: a stream or an answer whose connection breaks after it fails,
 * `broken`, as it fails an SDK user.
 *
 * What is checked, the engine emulated (one word per token) and every request asking for exactly max_tokens
 * (ignore_eos):
 * - a stream (completion or chat): it ends with [DONE], no error event, its text (choices[0].text, or a chat
 *   chunk's choices[0].delta.content) has max_tokens words: a lost token shows as fewer, a duplicated one as more
 *   (`tokens`), as chaos-client.ts checks a resumable stream (its event ids too, where a stream has them);
 * - an answer: status 200, choices[0].text (completion) or choices[0].message.content (chat) of max_tokens words,
 *   and usage.completion_tokens == max_tokens (`answer`).
 */
import { causeOf, errorCause, firstReplica, read, words, type ClientOptions, type Got, type Outcome } from './chaos-client.ts';

/** The kinds of request sent as an SDK sends them: streamed completion, streamed chat, answer of each. */
export const SDK_KINDS = ['stream', 'chat', 'nonstream', 'chat-nonstream'] as const;
export type SdkKind = (typeof SDK_KINDS)[number];

export interface SdkOptions extends Omit<ClientOptions, 'maxRetries'> {
  kind: SdkKind;
  /** retries of one request at most (openai SDKs' max_retries). Default 2. */
  maxRetries?: number;
  /** the jitter's draw, [0, 1) (default Math.random). */
  random?: () => number;
}

const PROMPT = 'Tell me about energy-efficient inference. '.repeat(4);

/** openai SDKs' backoff: initial 0.5 s, at most 8 s, up to 25 % less (jitter). */
const INITIAL_RETRY_S = 0.5;
const MAX_RETRY_S = 8;

/**
 * The pause before retry `n` (0: the first), ms: the answer's `retry-after-ms` or `retry-after` (seconds or an HTTP
 * date) when it says 0-60 s, else the SDKs' exponential backoff with jitter `draw` in [0, 1).
 */
export function sdkBackoffMs(n: number, draw: number, headers?: Headers): number {
  const ms = Number(headers?.get('retry-after-ms') ?? NaN);
  if (Number.isFinite(ms) && ms >= 0 && ms < 60_000) return ms;
  const after = headers?.get('retry-after');
  if (after) {
    const s = Number(after);
    const fromHeader = Number.isFinite(s) ? s * 1000 : Date.parse(after) - Date.now();
    if (Number.isFinite(fromHeader) && fromHeader >= 0 && fromHeader < 60_000) return fromHeader;
  }
  return Math.min(INITIAL_RETRY_S * 2 ** n, MAX_RETRY_S) * (1 - 0.25 * draw) * 1000;
}

/** Whether an SDK retries a response of this status (its `x-should-retry` header overrules). */
export function sdkRetries(status: number, shouldRetry?: string | null): boolean {
  if (shouldRetry === 'true') return true;
  if (shouldRetry === 'false') return false;
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** The path and body of one request of `kind`. */
export function sdkBody(kind: SdkKind, model: string, maxTokens: number): { path: string; body: string } {
  const chat = kind === 'chat' || kind === 'chat-nonstream';
  const stream = kind === 'stream' || kind === 'chat';
  const input = chat ? { messages: [{ role: 'user', content: PROMPT }] } : { prompt: PROMPT };
  return { path: chat ? '/v1/chat/completions' : '/v1/completions', body: JSON.stringify({ model, ...input, max_tokens: maxTokens, stream, ignore_eos: true }) };
}

/**
 * The check of a non-streamed answer: undefined when whole (choices[0]'s text or message content of max_tokens
 * words, usage.completion_tokens == max_tokens), else what is wrong.
 */
export function checkAnswer(kind: SdkKind, text: string, maxTokens: number): { words: number; wrong?: string } {
  let body: { choices?: { text?: string | null; message?: { content?: string | null } }[]; usage?: { completion_tokens?: number } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    return { words: 0, wrong: 'not JSON' };
  }
  const choice = body.choices?.[0];
  const got = (kind === 'chat-nonstream' ? choice?.message?.content : choice?.text) ?? '';
  const n = words(got);
  const usage = body.usage?.completion_tokens;
  if (n === maxTokens && usage === maxTokens) return { words: n };
  return { words: n, wrong: `${n} words, usage.completion_tokens ${usage ?? 'absent'}, for ${maxTokens} tokens` };
}

/** One request of an SDK kind: ok when whole (see the file's head). */
export async function sdkRequest(o: SdkOptions): Promise<Outcome> {
  const startMs = Date.now();
  return { ...(await attempt(o, startMs)), kind: o.kind, startMs, endMs: Date.now() };
}

async function attempt(o: SdkOptions, startMs: number): Promise<Outcome> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), o.deadlineMs);
  const maxRetries = o.maxRetries ?? 2;
  const random = o.random ?? Math.random;
  let replica = firstReplica(o.urls.length);
  let retries = 0;
  const attempts: NonNullable<Outcome['attempts']> = [];
  let headersMs: number | undefined;
  const { path, body } = sdkBody(o.kind, o.model, o.maxTokens);
  const end = (x: Omit<Outcome, 'replica' | 'retries' | 'resumed' | 'resent'>): Outcome =>
    ({ ...x, replica, retries, resumed: 0, resent: 0, ...(attempts.length ? { attempts } : {}), ...(headersMs !== undefined ? { headersMs } : {}) });
  // another try after the SDK's pause, on the next replica; false once the retries are spent
  const again = async (cause: string, headers?: Headers): Promise<boolean> => {
    attempts.push({ replica, cause, atMs: Date.now() - startMs });
    if (retries >= maxRetries) return false;
    const ms = sdkBackoffMs(retries, random(), headers);
    retries++;
    replica = (replica + 1) % o.urls.length;
    await new Promise((res) => setTimeout(res, ms));
    return !ac.signal.aborted;
  };
  try {
    for (;;) {
      let r: Response;
      try {
        r = await fetch(`${o.urls[replica]}${path}`, {
          method: 'POST', signal: ac.signal,
          headers: { 'content-type': 'application/json', ...(o.key ? { authorization: `Bearer ${o.key}` } : {}) },
          body,
        });
        headersMs ??= Date.now() - startMs;
      } catch (err) {
        if (ac.signal.aborted) return end({ ok: false, hung: true });
        if (await again(causeOf(err))) continue;
        if (ac.signal.aborted) return end({ ok: false, hung: true });
        return end({ ok: false, hung: false, failure: 'connection', error: `connection: ${causeOf(err)}` });
      }
      if (r.status !== 200 || !r.body) {
        const text = await r.text().catch(() => '');
        if (sdkRetries(r.status, r.headers.get('x-should-retry')) && (await again(`http ${r.status}`, r.headers))) continue;
        if (ac.signal.aborted) return end({ ok: false, hung: true });
        const code = errorCause(r, text);
        const message = /"message"\s*:\s*"([^"]{0,80})/.exec(text)?.[1];
        return end({ ok: false, hung: false, failure: 'status', error: `http ${r.status}`, ...(code ? { code } : {}), ...(message ? { message } : {}) });
      }
      // the response began: nothing is retried from here on
      if (o.kind === 'nonstream' || o.kind === 'chat-nonstream') {
        let text: string;
        try {
          text = await r.text();
        } catch (err) {
          if (ac.signal.aborted) return end({ ok: false, hung: true });
          return end({ ok: false, hung: false, failure: 'broken', error: 'answer broken', code: causeOf(err), brokenAtMs: Date.now() });
        }
        const checked = checkAnswer(o.kind, text, o.maxTokens);
        if (checked.wrong) return end({ ok: false, hung: false, failure: 'answer', error: 'answer', code: checked.wrong, words: checked.words });
        return end({ ok: true, hung: false, words: checked.words });
      }
      const got: Got = { text: '', next: 0, idsInOrder: true };
      const x = await read(r, got, ac.signal);
      if (x.kind === 'hung') return end({ ok: false, hung: true });
      const checked = { words: words(got.text), idsInOrder: got.idsInOrder };
      // an SDK raises the stream's error event, retryable or not: it has no event id to resume from (no opt-in)
      if (x.kind === 'error') return end({ ok: false, hung: false, failure: 'event', error: x.error, ...(x.code ? { code: x.code } : {}), ...(x.retryable ? { retryable: true } : {}), ...checked });
      if (x.kind === 'broken') return end({ ok: false, hung: false, failure: 'broken', error: 'stream broken', code: x.code, brokenAtMs: Date.now(), ...checked });
      if (checked.words !== o.maxTokens || !checked.idsInOrder) {
        return end({ ok: false, hung: false, failure: 'tokens', error: 'tokens', code: `${checked.words} words for ${o.maxTokens} tokens${checked.idsInOrder ? '' : ', event ids out of order'}`, ...checked });
      }
      return end({ ok: true, hung: false, ...checked });
    }
  } finally {
    clearTimeout(t);
  }
}
