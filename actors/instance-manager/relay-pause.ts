/**
 * The instance's side of a relayed stream's credit window (src/policy/relay-flow.ts; docs/DATAPATH.md "A slow client on
 * the NATS data path"): the request's engine stream (engine-stream.ts) counts the bytes of the chunks it publishes
 * (heldBytesOf) and, once they reach the gateway's grant (RELAY_WINDOW_BYTES until the gateway's first LegReport
 * `credit`), stops reading its engine until a larger grant comes, the request is aborted (a Cancel, a stop), or no grant
 * came for RELAY_GRANT_LAPSE_MS (the gateway repeats its grant every RELAY_GRANT_REPEAT_MS while the leg is silent):
 * then its gateway is gone and the request ends (retryable `unavailable`). The engine's bytes wait in the engine
 * connection (its reads stop at their bound: TCP slows the engine's writes); the engine's idle watch counts the wait as
 * the reader's time, not the engine's silence. Only a leg whose gateway grants (InferenceRequest.relayCredit) is paced:
 * a gateway that sends no grants gets its chunks unpaced, and no wait ends its leg.
 */
import { DynError, type LegReply as LegReplyT, type LegReport as LegReportT } from '../../protocols/index.ts';
import { RELAY_GRANT_LAPSE_MS, RELAY_WINDOW_BYTES } from '../../src/policy/relay-flow.ts';
import type { LegHost, Running } from './running.ts';

/** A `credit` report on a request this instance relays (not direct): its grant, and when the gateway last spoke. */
export function relayCredit(h: LegHost, rep: LegReportT): LegReplyT {
  const r = h.running.get(rep.id);
  if (!r || r.req.direct) return { v: 1, ok: false, error: { code: 'not_found', message: `instance ${h.id} relays no request ${rep.id}`, retryable: false } };
  r.creditBytes = Math.max(r.creditBytes ?? RELAY_WINDOW_BYTES, rep.creditBytes ?? 0);
  r.creditHeardMs = h.clock.now();
  r.wake?.();
  return { v: 1, ok: true };
}

/** Request `r`'s gateway grants credit (it asked for the window): the instance paces it and marks its first chunk. */
export const relayPaced = (r: Running): boolean => r.req.relayCredit === true;

/** Request `r`, having published `sent` bytes, is past its grant: a paced leg waits for a larger one (whileNoCredit). */
export const pastCredit = (r: Running, sent: number): boolean => relayPaced(r) && sent >= (r.creditBytes ?? RELAY_WINDOW_BYTES);

/**
 * Waits while request `r` (paced: relayPaced) has published `sent` bytes, its grant or more: until a larger grant, or its abort. No grant
 * for RELAY_GRANT_LAPSE_MS aborts it (retryable `unavailable`: its gateway is gone).
 */
export async function whileNoCredit(h: LegHost, r: Running, sent: number): Promise<void> {
  const signal = r.ac.signal;
  const since = h.clock.now();
  while (pastCredit(r, sent) && !signal.aborted) {
    const left = Math.max(since, r.creditHeardMs ?? 0) + RELAY_GRANT_LAPSE_MS - h.clock.now();
    if (left <= 0) {
      r.ac.abort(new DynError('unavailable', `no credit from the gateway for ${RELAY_GRANT_LAPSE_MS} ms: it stopped taking the stream`, { retryable: true, retryAfterS: 1 }));
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        h.clock.clearTimeout(t);
        signal.removeEventListener('abort', done);
        r.wake = undefined;
        resolve();
      };
      const t = h.clock.setTimeout(done, left);
      signal.addEventListener('abort', done, { once: true });
      r.wake = done;
    });
  }
}
