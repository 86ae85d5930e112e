/**
 * Flow control of a relayed stream (the NATS data path, `gateway.dataPath: nats`; docs/DATAPATH.md "A slow client on
 * the NATS data path"): a credit window. The instance may publish a relayed leg's chunks up to RELAY_WINDOW_BYTES (their
 * heldBytesOf, summed) past what the gateway has handed to its client; the gateway grants more (LegReport `credit`: the
 * total the instance may have published) each time its client took half a window, so a fast client's stream sees
 * one grant per half window and no wait. A client that reads nothing stops the grants: the instance stops reading that
 * request's engine, and what the gateway holds for the leg, with what is on its way through NATS, stays under a window
 * and one chunk, however slowly the gateway's process reads its connection. A hold past RELAY_HOLD_BYTES (an
 * instance that did not wait) ends the leg with a retryable `mailbox_full`. While the instance may be waiting (the
 * leg silent for RELAY_GRANT_REPEAT_MS after a window's worth arrived) the gateway repeats its grant: a grant lost on
 * the way is sent again, and the instance knows its gateway still holds the leg; an instance that hears no grant for
 * RELAY_GRANT_LAPSE_MS while it waits ends the request (its gateway is gone).
 * Used by the gateway (actors/gateway/relay-flow.ts) and the instance manager (actors/instance-manager/relay-pause.ts).
 */
import type { TokenChunk } from '../../protocols/messages.ts';

/** Bytes (heldBytesOf) an instance may publish on a relayed leg past what the gateway handed to its client. */
export const RELAY_WINDOW_BYTES = 128 * 1024;
/** The most a relayed leg may hold at the gateway: a window and a chunk as large; past it the leg ends (retryable mailbox_full). */
export const RELAY_HOLD_BYTES = 2 * RELAY_WINDOW_BYTES;
/** A silent leg's grant is sent again after this long, ms (while a window's worth has arrived: its instance may be waiting). */
export const RELAY_GRANT_REPEAT_MS = 1000;
/** An instance waiting for a grant that hears none for this long ends the request: its gateway is gone, ms. */
export const RELAY_GRANT_LAPSE_MS = 5000;
/**
 * Chunks an instance publishes for one relayed stream before it lets its other I/O in (one event-loop turn): an engine
 * read may hold thousands of events, and a grant is read between turns.
 */
export const RELAY_TURN_CHUNKS = 64;
/** What a held chunk costs besides its text: the decoded object, its fields and its place in the queue, bytes. */
export const CHUNK_OVERHEAD_BYTES = 160;

/** The memory a decoded chunk takes at the gateway (an estimate: UTF-16 text, its extras' JSON, the object); both sides count it. */
export function heldBytesOf(c: TokenChunk): number {
  let n = CHUNK_OVERHEAD_BYTES + 2 * c.text.length;
  if (c.logprobs !== undefined || c.toolCalls !== undefined || c.reasoning !== undefined) {
    n += 2 * (JSON.stringify(c.logprobs ?? null).length + JSON.stringify(c.toolCalls ?? null).length + (c.reasoning?.length ?? 0));
  }
  return n;
}

/** The gateway's next grant once its client has taken `taken` bytes of the leg and `granted` were granted: undefined while half a window is left. */
export function relayGrant(taken: number, granted: number): number | undefined {
  const next = taken + RELAY_WINDOW_BYTES;
  return next - granted >= RELAY_WINDOW_BYTES / 2 ? next : undefined;
}

/** The leg holds more than its bound at the gateway: its instance did not wait for its grant. */
export const relayOverflow = (heldBytes: number): boolean => heldBytes > RELAY_HOLD_BYTES;
