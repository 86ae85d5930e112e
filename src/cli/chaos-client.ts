/**
 * The load generator of `dynamollm chaos` (commands/chaos.ts): one streaming completion at a time through the
 * gateway replicas, as a client behind a load balancer sees them. Requests go to the replicas in turn; a
 * connection refused or reset before any byte of the response (the replica is dead or restarting) is sent
 * again to the next replica, as the OpenAI SDKs retry connection errors (the request never reached a live
 * gateway, so it cannot run twice). A stream that breaks after its response began is not retried: it is a
 * failure, reported as `broken` with the replica that served it, so the report can say which of them a
 * gateway's death cut (none is hidden).
 */

/** `error`: the class (http status, or the code of a stream's error event); `code`: an HTTP error body's own code, or the start of a stream error's message. */
export interface Outcome {
  ok: boolean;
  hung: boolean;
  error?: string;
  code?: string;
  message?: string;
  /** the replica (index into the URLs) that answered, or was tried last. */
  replica: number;
  /** connection errors before any response byte, each sent again to the next replica. */
  retries: number;
  /** the stream broke after its response began (its connection reset or closed before [DONE]), at this time, ms. */
  brokenAtMs?: number;
  /** each connection error before a response: the replica tried, the error's cause and when it came (ms after the request was sent). */
  attempts?: { replica: number; cause: string; atMs: number }[];
  /** the response's status line came this long after the request was sent, ms (absent: none came). */
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
  /** connection errors before a response retried at most (on the next replica each time). Default 2 x the replicas. */
  maxRetries?: number;
}

let turn = 0;

/** One streaming completion: ok when the stream ends with [DONE] and no error event. */
export async function oneRequest(o: ClientOptions): Promise<Outcome> {
  const startMs = Date.now();
  return { ...(await request(o, startMs)), startMs, endMs: Date.now() };
}

async function request(o: ClientOptions, startMs: number): Promise<Outcome> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), o.deadlineMs);
  const maxRetries = o.maxRetries ?? 2 * o.urls.length;
  let replica = turn++ % o.urls.length;
  let retries = 0;
  const attempts: NonNullable<Outcome['attempts']> = [];
  try {
    for (;;) {
      let r: Response;
      let headersAt = 0;
      try {
        r = await fetch(`${o.urls[replica]}/v1/completions`, {
          method: 'POST', signal: ac.signal,
          headers: { 'content-type': 'application/json', ...(o.key ? { authorization: `Bearer ${o.key}` } : {}) },
          body: JSON.stringify({ model: o.model, prompt: 'Tell me about energy-efficient inference. '.repeat(4), max_tokens: o.maxTokens, stream: true, ignore_eos: true }),
        });
        headersAt = Date.now();
      } catch (err) {
        if (ac.signal.aborted) return { ok: false, hung: true, replica, retries, ...(attempts.length ? { attempts } : {}) };
        attempts.push({ replica, cause: causeOf(err), atMs: Date.now() - startMs });
        // no response: the replica is gone (refused, reset): the next one, after a short pause
        if (retries >= maxRetries) return { ok: false, hung: false, error: `connection: ${causeOf(err)}`, replica, retries, attempts };
        retries++;
        replica = (replica + 1) % o.urls.length;
        await new Promise((res) => setTimeout(res, Math.min(1000, 100 * retries)));
        continue;
      }
      const out = await read(r, replica, retries, ac.signal);
      return { ...out, headersMs: headersAt - startMs, ...(attempts.length ? { attempts } : {}) };
    }
  } finally {
    clearTimeout(t);
  }
}

async function read(r: Response, replica: number, retries: number, signal: AbortSignal): Promise<Outcome> {
  if (!r.ok || !r.body) {
    const body = await r.text().catch(() => '');
    const code = /"code"\s*:\s*"([^"]+)"/.exec(body)?.[1];
    const message = /"message"\s*:\s*"([^"]{0,80})/.exec(body)?.[1];
    return { ok: false, hung: false, error: `http ${r.status}`, ...(code ? { code } : {}), ...(message ? { message } : {}), replica, retries };
  }
  let text = '';
  const dec = new TextDecoder();
  try {
    for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) text += dec.decode(part, { stream: true });
  } catch (err) {
    if (signal.aborted) return { ok: false, hung: true, replica, retries };
    return { ok: false, hung: false, error: 'stream broken', code: causeOf(err), replica, retries, brokenAtMs: Date.now() };
  }
  if (/"error"\s*:/.test(text)) {
    const message = /"message"\s*:\s*"([^"]{0,80})/.exec(text)?.[1];
    return { ok: false, hung: false, error: /"code"\s*:\s*"([^"]+)"/.exec(text)?.[1] ?? 'stream error', ...(message ? { code: message } : {}), replica, retries };
  }
  if (text.includes('[DONE]')) return { ok: true, hung: false, replica, retries };
  // the connection closed cleanly before [DONE]: as broken as a reset
  return { ok: false, hung: false, error: 'stream broken', code: 'ended without [DONE]', replica, retries, brokenAtMs: Date.now() };
}

/** The socket error under fetch's "fetch failed" (ECONNREFUSED, ECONNRESET, ...), or the message. */
function causeOf(err: unknown): string {
  const c = (err as { cause?: { code?: string; message?: string } }).cause;
  return c?.code ?? c?.message ?? (err as Error).message;
}

/**
 * The broken streams a gateway death explains: one served by replica `gw-<i>` that broke within `windowMs`
 * after a kill of that replica (its connections reset when its process died).
 */
export function brokenByGatewayDeath(outs: readonly Outcome[], kills: readonly { kind: string; id: string; atMs: number }[], windowMs = 2000): number {
  let n = 0;
  for (const o of outs) {
    if (o.brokenAtMs === undefined) continue;
    if (kills.some((k) => k.kind === 'gateway' && k.id === `gw-${o.replica}` && o.brokenAtMs! >= k.atMs && o.brokenAtMs! - k.atMs <= windowMs)) n++;
  }
  return n;
}
