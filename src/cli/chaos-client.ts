/**
 * The load generator of `dynamollm chaos` (commands/chaos.ts): one streaming completion at a time through the
 * gateway replicas, as a client behind a load balancer sees them. Requests go to the replicas in turn; a
 * connection refused or reset before any byte of the response (the replica is dead or restarting) is sent
 * again to the next replica, as the OpenAI SDKs retry connection errors (the request never reached a live
 * gateway, so it cannot run twice).
 *
 * Every stream opts in to resumption (header x-dynamollm-resumable: 1, docs/PROTOCOL.md "Resumable streams"):
 * a stream that breaks after its response began (its replica died) is resumed on the next replica with
 * `Last-Event-ID`, the id of the last whole event it got, as EventSource reconnects; counted in `resumed`. A resume
 * refused for good (404, 410) while the client has no text yet is the request sent again from the start, counted in
 * `resent`: the user lost nothing. A stream that ends with a retryable error event without an `id:` line (a draining
 * replica's cut: docs/PROTOCOL.md "A draining replica") while the client has an event id is resumed the same way,
 * counted in `resumed` and in `resumedOnError`: its journal was kept, so nothing is lost or repeated. The resumes
 * (after a break, a retryable error event or a 503/429 answer to a resume) are at most `maxRetries`, all of them within
 * the request's `deadlineMs`. A stream that breaks without an id to resume from, or whose resumes are spent, is a failure, reported as `broken`
 * with the replica that served it; an error event with an id (its stream ended: not resumable), not retryable, or
 * after the resumes are spent is a failure, `event`. The whole text is then checked: the emulated engine makes one word per token and
 * the requests ask for exactly max_tokens (ignore_eos), so a lost token shows as fewer words and a duplicated one
 * as more; the event ids must run 0, 1, 2, ... without a gap or a repeat. Either is a failure (`tokens`).
 */

/**
 * Where a request failed: `connection` no response on any try; `status` an HTTP error status; `event` an error event
 * in its stream; `broken` its response began and its connection reset or closed before the end; `tokens` a stream
 * ended with [DONE] but with a token lost or duplicated (or its event ids out of order); `answer` a non-streamed
 * answer that is not whole (chaos-sdk-client.ts).
 */
export type FailureClass = 'connection' | 'status' | 'event' | 'broken' | 'tokens' | 'answer';

/** `error`: the class (http status, or the code of a stream's error event); `code`: an HTTP error body's own code, or the start of a stream error's message. */
export interface Outcome {
  ok: boolean;
  /** the request's kind in the mix (chaos-mix.ts); absent: `resumable`. */
  kind?: string;
  /** where it failed (absent when ok or hung). */
  failure?: FailureClass;
  /** broken, or a resumable error event: the stream had an event id to resume from, but its resumes were spent. */
  resumesSpent?: boolean;
  /** event: the error event said `retryable: true`. */
  retryable?: boolean;
  hung: boolean;
  error?: string;
  code?: string;
  message?: string;
  /** the replica (index into the URLs) that answered, or was tried last. */
  replica: number;
  /** connection errors before any response byte, each sent again to the next replica. */
  retries: number;
  /** resumes of a stream on the next replica (Last-Event-ID): after a break, a retryable error event without an id, or a 503/429 answer to a resume. */
  resumed: number;
  /** of `resumed`, those after a retryable error event without an id (a draining replica's cut). */
  resumedOnError?: number;
  /** sent again from the start: a resume refused (404, 410) before the client had any text (nothing lost or repeated). */
  resent: number;
  /** the stream broke after its response began and could not be resumed (its connection reset or closed before [DONE]), at this time, ms. */
  brokenAtMs?: number;
  /** words of the text the client got (one per token), and whether the event ids ran without gap or repeat; absent when no stream was read. */
  words?: number;
  idsInOrder?: boolean;
  /** each connection error before a response: the replica tried, the error's cause and when it came (ms after the request was sent). */
  attempts?: { replica: number; cause: string; atMs: number }[];
  /** the (first) response's status line came this long after the request was sent, ms (absent: none came). */
  headersMs?: number;
  /** when the request was sent and when its outcome was known (wall ms): failures are matched to the kills around them. */
  startMs?: number;
  endMs?: number;
}

export interface ClientOptions {
  urls: readonly string[];
  model: string;
  key?: string;
  maxTokens: number;
  /** the whole request's deadline (past it: hung), ms. */
  deadlineMs: number;
  /** connection errors before a response retried at most (on the next replica each time), and resumes at most. Default 2 x the replicas. */
  maxRetries?: number;
}

let turn = 0;

/** The replica a new request goes to first: the replicas in turn, every kind of request together. */
export const firstReplica = (replicas: number): number => turn++ % replicas;

/** One streaming completion: ok when the stream ends with [DONE], no error event, max_tokens words and its ids in order. */
export async function oneRequest(o: ClientOptions): Promise<Outcome> {
  const startMs = Date.now();
  return { ...(await request(o, startMs)), startMs, endMs: Date.now() };
}

/** What the client has of its stream across resumes. */
export interface Got {
  text: string;
  /** the last whole event's id (what a resume sends as Last-Event-ID). */
  lastId?: string;
  /** the index the next event id must have. */
  next: number;
  idsInOrder: boolean;
}

const EVENT_ID = /^(.+):(\d+)$/;

async function request(o: ClientOptions, startMs: number): Promise<Outcome> {
  const attempts: NonNullable<Outcome['attempts']> = [];
  let headersMs: number | undefined;
  const seen = (x: Outcome): Outcome => ({ ...x, ...(attempts.length ? { attempts } : {}), ...(headersMs !== undefined ? { headersMs } : {}) });
  return seen(await attempt(o, attempts, (ms) => (headersMs ??= ms), startMs));
}

async function attempt(o: ClientOptions, attempts: NonNullable<Outcome['attempts']>, headersAt: (ms: number) => void, startMs: number): Promise<Outcome> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), o.deadlineMs);
  const maxRetries = o.maxRetries ?? 2 * o.urls.length;
  let replica = firstReplica(o.urls.length);
  let retries = 0;
  let resumed = 0;
  let resumedOnError = 0;
  let resent = 0;
  const got: Got = { text: '', next: 0, idsInOrder: true };
  const body = JSON.stringify({ model: o.model, prompt: 'Tell me about energy-efficient inference. '.repeat(4), max_tokens: o.maxTokens, stream: true, ignore_eos: true });
  const next = () => (replica = (replica + 1) % o.urls.length);
  const pause = (n: number) => new Promise((res) => setTimeout(res, Math.min(1000, 100 * n)));
  try {
    const x = await loop();
    return resumedOnError > 0 ? { ...x, resumedOnError } : x;
  } finally {
    clearTimeout(t);
  }

  async function loop(): Promise<Outcome> {
    for (;;) {
      let r: Response;
      try {
        r = await fetch(`${o.urls[replica]}/v1/completions`, {
          method: 'POST', signal: ac.signal,
          headers: {
            'content-type': 'application/json', 'x-dynamollm-resumable': '1',
            ...(got.lastId !== undefined ? { 'last-event-id': got.lastId } : {}), ...(o.key ? { authorization: `Bearer ${o.key}` } : {}),
          },
          body,
        });
        headersAt(Date.now() - startMs);
      } catch (err) {
        if (ac.signal.aborted) return { ok: false, hung: true, replica, retries, resumed, resent };
        attempts.push({ replica, cause: causeOf(err), atMs: Date.now() - startMs });
        // no response: the replica is gone (refused, reset): the next one, after a short pause
        if (retries >= maxRetries) return { ok: false, hung: false, failure: 'connection', error: `connection: ${causeOf(err)}`, replica, retries, resumed, resent };
        retries++;
        next();
        await pause(retries);
        continue;
      }
      if (!r.ok || !r.body) {
        const text = await r.text().catch(() => '');
        const code = errorCause(r, text);
        const message = /"message"\s*:\s*"([^"]{0,80})/.exec(text)?.[1];
        // a resume the cluster could not take yet (no instance, the journal not answering): again, on the next replica
        if (got.lastId !== undefined && (r.status === 503 || r.status === 429) && resumed < maxRetries) {
          resumed++;
          next();
          await pause(resumed);
          continue;
        }
        // a resume refused for good before any text arrived: the request again from the start (the user lost nothing)
        if (got.lastId !== undefined && (r.status === 404 || r.status === 410) && words(got.text) === 0 && resent < maxRetries) {
          resent++;
          Object.assign(got, { text: '', next: 0, idsInOrder: true });
          delete got.lastId;
          next();
          continue;
        }
        return { ok: false, hung: false, failure: 'status', error: `http ${r.status}`, ...(code ? { code } : {}), ...(message ? { message } : {}), replica, retries, resumed, resent };
      }
      const end = await read(r, got, ac.signal);
      if (end.kind === 'hung') return { ok: false, hung: true, replica, retries, resumed, resent };
      const checked = { words: words(got.text), idsInOrder: got.idsInOrder };
      if (end.kind === 'error') {
        // a retryable error event without an id (a draining replica's cut): the stream stays resumable from the last event
        const resumable = end.retryable && !end.withId && got.lastId !== undefined;
        if (resumable && resumed < maxRetries) {
          resumed++;
          resumedOnError++;
          next();
          continue;
        }
        return {
          ok: false, hung: false, failure: 'event', error: end.error, ...(end.code ? { code: end.code } : {}), ...(end.retryable ? { retryable: true } : {}),
          ...(resumable ? { resumesSpent: true } : {}), replica, retries, resumed, resent, ...checked,
        };
      }
      if (end.kind === 'done') {
        if (checked.words !== o.maxTokens || !checked.idsInOrder) {
          return { ok: false, hung: false, failure: 'tokens', error: 'tokens', code: `${checked.words} words for ${o.maxTokens} tokens${checked.idsInOrder ? '' : ', event ids out of order'}`, replica, retries, resumed, resent, ...checked };
        }
        return { ok: true, hung: false, replica, retries, resumed, resent, ...checked };
      }
      if (end.kind !== 'broken') continue;
      // broken: resumed on the next replica from the last whole event, while there is one and resumes are left
      if (got.lastId !== undefined && resumed < maxRetries) {
        resumed++;
        next();
        continue;
      }
      return { ok: false, hung: false, failure: 'broken', error: 'stream broken', code: end.code, replica, retries, resumed, resent, brokenAtMs: Date.now(), ...(got.lastId !== undefined ? { resumesSpent: true } : {}), ...checked };
    }
  }
}

/** An error answer's cause: the gateway's x-dynamollm-error-code header, else a string `code` of its body. */
export function errorCause(r: Response, text: string): string | undefined {
  return r.headers.get('x-dynamollm-error-code') ?? /"code"\s*:\s*"([^"]+)"/.exec(text)?.[1];
}

/** Words of a text: the emulated engine makes one per token. */
export const words = (text: string): number => text.split(/\s+/).filter((w) => w.length > 0).length;

/** A stream's error event: its code (or 'stream error'), the start of its message, whether it said `retryable: true` and had an `id:` line. */
export interface StreamError { error: string; code?: string; retryable: boolean; withId: boolean }

/** The error event of `data` (an event's data), or undefined when it is none (no `error` member). */
export function streamError(data: string, withId: boolean): StreamError | undefined {
  if (!/"error"\s*:/.test(data)) return undefined;
  let e: { code?: unknown; message?: unknown; retryable?: unknown } | undefined;
  try {
    e = (JSON.parse(data) as { error?: typeof e }).error;
  } catch {
    // not JSON: its code and message as far as they read
  }
  // vLLM's error body: `code` the HTTP status the error would have had
  const code = typeof e?.code === 'string' || typeof e?.code === 'number' ? String(e.code) : /"code"\s*:\s*"?([^",}]+)/.exec(data)?.[1];
  const message = typeof e?.message === 'string' ? e.message.slice(0, 80) : /"message"\s*:\s*"([^"]{0,80})/.exec(data)?.[1];
  return { error: code ?? 'stream error', ...(message ? { code: message } : {}), retryable: e?.retryable === true, withId };
}

/**
 * Reads one response's SSE events into `got` (whole events only: a resume repeats a cut one): the text of a
 * completion's choices[0].text or a chat chunk's choices[0].delta.content; the event ids where the stream has them.
 * Stops at the first error event (what follows it is `[DONE]`).
 */
export async function read(r: Response, got: Got, signal: AbortSignal): Promise<{ kind: 'done' | 'hung' } | { kind: 'broken'; code: string } | ({ kind: 'error' } & StreamError)> {
  let buf = '';
  const dec = new TextDecoder();
  const take = (block: string): 'done' | StreamError | undefined => {
    let data = '';
    let withId = false;
    for (const line of block.split('\n')) {
      // an empty id (SSE: the last event id reset): the stream stopped being resumable, nothing to resume from
      if (line === 'id:' || line === 'id: ') delete got.lastId;
      else if (line.startsWith('id: ')) {
        withId = true;
        const m = EVENT_ID.exec(line.slice(4));
        if (!m || Number(m[2]) !== got.next) got.idsInOrder = false;
        got.next = m ? Number(m[2]) + 1 : got.next + 1;
        got.lastId = line.slice(4);
      } else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (data === '[DONE]') return 'done';
    const error = streamError(data, withId);
    if (error) return error;
    try {
      const c = JSON.parse(data) as { choices?: { text?: string; delta?: { content?: string | null } }[] };
      got.text += c.choices?.[0]?.text ?? c.choices?.[0]?.delta?.content ?? '';
    } catch {
      // not JSON: nothing to add
    }
    return undefined;
  };
  try {
    for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(part, { stream: true });
      let at: number;
      while ((at = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        const x = take(block);
        if (x === 'done') return { kind: 'done' };
        if (x) return { kind: 'error', ...x };
      }
    }
  } catch (err) {
    if (signal.aborted) return { kind: 'hung' };
    return { kind: 'broken', code: causeOf(err) };
  }
  // the connection closed cleanly before [DONE]: as broken as a reset
  return { kind: 'broken', code: 'ended without [DONE]' };
}

/** The socket error under fetch's "fetch failed" (ECONNREFUSED, ECONNRESET, ...), or the message. */
export function causeOf(err: unknown): string {
  const c = (err as { cause?: { code?: string; message?: string } }).cause;
  return c?.code ?? c?.message ?? (err as Error).message;
}

/** A kill as the failure's cause is matched against it: a gateway replica's standby (`standby`) served no connection. */
export interface KillSeen { kind: string; id: string; atMs: number; standby?: boolean }

/**
 * Whether a gateway death explains a broken request: it was served by replica `gw-<i>`, which was killed (its
 * serving process, not a standby) within `windowMs` before the break (its connections reset when its process died).
 */
export function brokenByItsGateway(o: Outcome, kills: readonly KillSeen[], windowMs = 2000): boolean {
  const at = o.brokenAtMs;
  return at !== undefined && kills.some((k) => k.kind === 'gateway' && !k.standby && k.id === `gw-${o.replica}` && at >= k.atMs && at - k.atMs <= windowMs);
}

/** The broken requests a gateway death explains (brokenByItsGateway). */
export function brokenByGatewayDeath(outs: readonly Outcome[], kills: readonly KillSeen[], windowMs = 2000): number {
  return outs.filter((o) => brokenByItsGateway(o, kills, windowMs)).length;
}
