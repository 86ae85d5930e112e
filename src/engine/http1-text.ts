/**
 * One whole HTTP/1.1 exchange with a small answer over the lean client's kept-alive connections (http1.ts): the
 * instance manager's calls to its engine (/metrics, /tokenize, health) and the emulated GPU's admin calls.
 */
import { LeanAbort } from './abort.ts';
import { Http1Error, http1Request, type Http1Pool, type Http1Request, type Http1Response } from './http1.ts';

/** The deadline of an `http1Text` exchange passed. */
export class Http1TimeoutError extends Http1Error {
  override name = 'TimeoutError';
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`, 'ETIMEDOUT');
  }
}

/**
 * One whole exchange with a small answer (an engine's /metrics, /tokenize, the emulator's GPU admin calls): the
 * request over a kept-alive connection of `pool`, the status and the body as text, all within `timeoutMs`
 * (Http1TimeoutError past it). The instance manager makes such calls every second per engine; `fetch`
 * (undici: a Request, a Response, web streams, an AbortSignal) costs several times as much CPU per call.
 */
export async function http1Text(pool: Http1Pool, req: Http1Request, timeoutMs: number): Promise<{ status: number; text: string }> {
  const ac = new LeanAbort();
  const timer = setTimeout(() => ac.abort(new Http1TimeoutError(timeoutMs)), timeoutMs);
  let res: Http1Response | undefined;
  try {
    res = await http1Request(pool, req, ac);
    const parts: Buffer[] = [];
    for (let b = res.take(); ; b = res.take()) {
      if (b) parts.push(b);
      else {
        const n = await res.next();
        if (n === null) break;
        parts.push(n);
      }
    }
    return { status: res.status, text: parts.length === 1 ? parts[0]!.toString('utf8') : Buffer.concat(parts).toString('utf8') };
  } finally {
    clearTimeout(timer);
    res?.close();
  }
}
