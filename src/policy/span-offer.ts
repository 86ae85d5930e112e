/**
 * Whether a stream is offered to the gateway's native data plane after a batch (actors/gateway/data-plane.ts, the
 * engine client's streamCompletionPush). A span costs the gateway fixed work whatever it carries: the hand-off (two
 * `dup`s, the engine's fd out of Node's epoll set, `dp_add` through koffi, a `setImmediate`, the stall watch's timer)
 * and the end (the end pipe's wake, `dp_info` and `dp_copy`, the fds closed, the engine's reads started again), about
 * what a few events of the JavaScript path cost. A stream that can make only a few more tokens (a short request whose
 * first event came alone) would pay it for at most those few events, the last of which (the finish) the native thread
 * hands back anyway: it stays on JavaScript.
 */

/** tokens the engine call may still make (its max_tokens less the tokens read) below which no span is offered. */
export const NATIVE_SPAN_MIN_LEFT = 4;

/** Whether an engine call of `maxTokens` that has read `tokensRead` tokens may still be worth a native span. */
export function spanWorthOffering(maxTokens: number, tokensRead: number, minLeft = NATIVE_SPAN_MIN_LEFT): boolean {
  return maxTokens - tokensRead >= minLeft;
}
