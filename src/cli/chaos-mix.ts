/**
 * The request mix of `dynamollm chaos --mix` and what the report says of it. A mix names the kinds of request the
 * load sends and the share of each, drawn at random per request (a seeded draw of its own: the kill schedule is
 * the same whatever the mix):
 * - `resumable`: a streamed /v1/completions that opts in to resumable streams (chaos-client.ts), the default mix;
 * - `stream`, `chat`: a streamed /v1/completions, a streamed /v1/chat/completions, as an OpenAI SDK sends them
 *   (no resumable opt-in; chaos-sdk-client.ts);
 * - `nonstream`, `chat-nonstream`: the same, not streamed.
 *
 * Every failure gets its cause, and whether any server could have avoided it: a request whose response had begun
 * and whose TCP connection then broke because the gateway process holding it died (a kill of that replica just
 * before) cannot be saved by the server side unless the client resumes it; every other failure (no replica
 * answering within the client's retries, a refusal, an error event, a stream or an answer not whole, a hang,
 * a break while the gateway lived, resumes spent) is the system's.
 */
import { num, UsageError } from './args.ts';
import { rng } from '../sim/trace.ts';
import { brokenByItsGateway, oneRequest, type ClientOptions, type KillSeen, type Outcome } from './chaos-client.ts';
import { SDK_KINDS, sdkRequest, type SdkKind } from './chaos-sdk-client.ts';

export const REQUEST_KINDS = ['resumable', ...SDK_KINDS] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/** The share of each kind sent (0..1, summing to 1; a kind not sent is absent). */
export type Mix = Partial<Record<RequestKind, number>>;

/** The default mix: every request a resumable streamed completion. */
export const DEFAULT_MIX = 'resumable=1';

/** `kind=weight,...` as shares (the weights divided by their sum). Throws UsageError for an unknown kind, a repeated one, a weight not a number >= 0, or weights summing to 0. */
export function parseMix(text: string): Mix {
  const weights: Mix = {};
  for (const part of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([a-z-]+)\s*=\s*(\S+)$/.exec(part);
    if (!m) throw new UsageError(`--mix: '${part}' is not kind=weight (kinds: ${REQUEST_KINDS.join(', ')})`);
    const kind = m[1] as RequestKind;
    if (!REQUEST_KINDS.includes(kind)) throw new UsageError(`--mix: unknown kind '${m[1]}' (one of ${REQUEST_KINDS.join(', ')})`);
    if (kind in weights) throw new UsageError(`--mix: kind '${kind}' given twice`);
    const w = Number(m[2]);
    if (!Number.isFinite(w) || w < 0) throw new UsageError(`--mix: the weight of '${kind}' must be a number >= 0, got ${m[2]}`);
    weights[kind] = w;
  }
  const sum = Object.values(weights).reduce((a, w) => a + w, 0);
  if (!(sum > 0)) throw new UsageError(`--mix: the weights must sum above 0, got '${text}'`);
  const mix: Mix = {};
  for (const k of REQUEST_KINDS) if ((weights[k] ?? 0) > 0) mix[k] = weights[k]! / sum;
  return mix;
}

/**
 * --mix and --sdk-retries read, and the draw of the kinds: seeded by the run's seed apart from the kill schedule's
 * (the same schedule whatever the mix).
 */
export function mixOptions(mixText: string, retriesText: string, seed: number): { mix: Mix; draw: () => number; sdkRetries: number } {
  const sdkRetries = num(retriesText, 'sdk-retries');
  if (!Number.isInteger(sdkRetries) || sdkRetries < 0) throw new UsageError(`--sdk-retries must be an integer >= 0, got ${retriesText}`);
  return { mix: parseMix(mixText), draw: rng(seed ^ 0x6d6978), sdkRetries };
}

/** The kind a draw in [0, 1) picks: the mix's kinds in REQUEST_KINDS order, each over its share. */
export function pickKind(mix: Mix, draw: number): RequestKind {
  let at = 0;
  let last: RequestKind = 'resumable';
  for (const k of REQUEST_KINDS) {
    const share = mix[k];
    if (share === undefined) continue;
    last = k;
    at += share;
    if (draw < at) return k;
  }
  return last;
}

/** One request of `kind`; `sdkRetries`: the SDK kinds' max_retries. */
export function mixRequest(kind: RequestKind, o: ClientOptions, sdkRetries: number): Promise<Outcome> {
  if (kind === 'resumable') return oneRequest(o).then((x) => ({ ...x, kind }));
  const { maxRetries: _resumableRetries, ...rest } = o;
  return sdkRequest({ ...rest, kind: kind as SdkKind, maxRetries: sdkRetries });
}

/** A failure's cause in words, and whether any server could have avoided it (false: a TCP connection to a process that died). */
export function failureCause(o: Outcome, kills: readonly KillSeen[]): { cause: string; unavoidable: boolean } {
  const kind = o.kind ?? 'resumable';
  const system = (cause: string) => ({ cause, unavoidable: false });
  if (o.hung) return system('hung: no end within the deadline');
  switch (o.failure) {
    case 'connection':
      return system(`no response from the replicas tried, the client's retries spent (${o.error})`);
    case 'status':
      return system(`refused: ${o.error}${o.code ? ` ${o.code}` : ''}${kind === 'resumable' ? '' : ', the client\'s retries spent or not retryable'}`);
    case 'event':
      if (o.resumesSpent) return system(`the stream ended with a retryable error event without an id (${o.error}), its resumes spent`);
      if (!o.retryable) return system(`the stream ended with an error event: ${o.error}`);
      // retryable, but not resumable: the event had an id (its stream ended there), or the stream had none (not opted in)
      return system(`the stream ended with a retryable error event, not resumable (${kind === 'resumable' ? 'the event had an id: the stream ended' : 'no event id: not opted in'}): ${o.error}`);
    case 'tokens':
      return system('the stream ended with [DONE], a token lost or duplicated');
    case 'answer':
      return system('the answer is not whole (words or usage.completion_tokens short of max_tokens, or more)');
    case 'broken': {
      const what = kind === 'nonstream' || kind === 'chat-nonstream' ? 'answer' : 'stream';
      if (o.resumesSpent) return system('stream broke after its response began, its resumes spent');
      const why = kind === 'resumable' ? 'no event id yet to resume from' : 'not resumable';
      if (brokenByItsGateway(o, kills)) return { cause: `${what} broke after its response began, ${why}: its gateway died`, unavoidable: true };
      return system(`${what} broke after its response began, ${why}: its gateway lived (closed or reset by the system)`);
    }
    default:
      return system(o.error ?? 'failed');
  }
}

/**
 * Sent, ok, failed, hung, broken (of the failed), client retries and resumes of one kind of request: `resumed` every
 * resume, `resumedOnError` those after a retryable error event without an id (a draining replica's cut), `okAfterResume`
 * the requests ok (in `ok`, not failed) that needed one or more.
 */
export interface KindFigures { sent: number; ok: number; failed: number; hung: number; broken: number; unavoidable: number; clientRetries: number; resumed: number; resumedOnError: number; okAfterResume: number }

/**
 * The resumes of a run's streams (Last-Event-ID on the next replica): every resume (`resumes`), those after a retryable
 * error event without an id (`onErrorEvent`: a draining replica's cut), the requests that needed one or more
 * (`requests`), and of them those ok (`okAfterResume`: counted in the run's ok, not in its failed).
 */
export function resumeFigures(results: readonly Outcome[]): { resumes: number; onErrorEvent: number; requests: number; okAfterResume: number } {
  return {
    resumes: results.reduce((n, o) => n + o.resumed, 0),
    onErrorEvent: results.reduce((n, o) => n + (o.resumedOnError ?? 0), 0),
    requests: results.filter((o) => o.resumed > 0).length,
    okAfterResume: results.filter((o) => o.ok && o.resumed > 0).length,
  };
}

/** The report's figures per kind of request (only the kinds sent), and the failures counted by cause. */
export function mixReport(results: readonly Outcome[], kills: readonly KillSeen[]): {
  byKind: Partial<Record<RequestKind, KindFigures>>;
  failureCauses: Record<string, { n: number; unavoidable: boolean }>;
  failedUnavoidable: number;
  failedBySystem: number;
} {
  const byKind: Partial<Record<RequestKind, KindFigures>> = {};
  const failureCauses: Record<string, { n: number; unavoidable: boolean }> = {};
  let failedUnavoidable = 0;
  for (const o of results) {
    const kind = (o.kind ?? 'resumable') as RequestKind;
    const f = (byKind[kind] ??= { sent: 0, ok: 0, failed: 0, hung: 0, broken: 0, unavoidable: 0, clientRetries: 0, resumed: 0, resumedOnError: 0, okAfterResume: 0 });
    f.sent++;
    f.clientRetries += o.retries;
    f.resumed += o.resumed;
    f.resumedOnError += o.resumedOnError ?? 0;
    if (o.ok) {
      f.ok++;
      if (o.resumed > 0) f.okAfterResume++;
      continue;
    }
    if (o.hung) f.hung++;
    else f.failed++;
    if (o.brokenAtMs !== undefined) f.broken++;
    const c = failureCause(o, kills);
    (failureCauses[c.cause] ??= { n: 0, unavoidable: c.unavoidable }).n++;
    if (c.unavoidable) {
      f.unavoidable++;
      failedUnavoidable++;
    }
  }
  const failedBySystem = results.filter((o) => !o.ok).length - failedUnavoidable;
  return { byKind, failureCauses, failedUnavoidable, failedBySystem };
}
