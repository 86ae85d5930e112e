/**
 * A request's give-up time (InferenceRequest.giveUpAtMs: the gateway's requestTimeoutS after its arrival), read the
 * same way by the gateway (a direct leg: actors/gateway/legs.ts legFailure; a relayed leg's chunk: relay-order.ts
 * relayedOut) and by the instance manager that streams a relayed leg itself (actors/instance-manager/engine-stream.ts):
 * a leg that ends with a retryable error at or past it is the request's timeout, DEADLINE_ERROR (not retryable: another
 * attempt of the same request would take as long again), and its leg and record outcome is 'timed_out', not 'failed'.
 * docs/DATAPATH.md "Request migration".
 */
import { DynError, type WireError } from '../../protocols/errors.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

/**
 * Whether request `req` has reached its give-up time at `now`: it may not move to another leg (the gateway's canMigrate,
 * reopenLeg), and a leg that ends with a retryable error ends the stream with DEADLINE_ERROR instead (deadlineEnd).
 */
export const pastDeadline = (req: Pick<InferenceRequest, 'giveUpAtMs'>, now: number): boolean => now >= req.giveUpAtMs;

/** A request's end at its give-up time: another attempt of the same request would take as long again, so not retryable. */
export const DEADLINE_ERROR: Readonly<WireError> = Object.freeze({ code: 'timeout', message: 'the request did not finish within its time limit (the gateway\'s requestTimeoutS)', retryable: false });
export const deadlineError = (): DynError => new DynError(DEADLINE_ERROR.code, DEADLINE_ERROR.message, { retryable: false });

/**
 * How a leg that ends with error `w` at `now` ends: a retryable end at or past `req`'s give-up time, or one of an engine
 * call whose own deadline (the give-up time) fired (`engineTimedOut`), is the request's timeout (DEADLINE_ERROR,
 * outcome 'timed_out'); any other end is `w` itself, outcome 'failed'.
 */
export function deadlineEnd(w: WireError, engineTimedOut: boolean, req: Pick<InferenceRequest, 'giveUpAtMs'>, now: number): { w: WireError; outcome: 'failed' | 'timed_out' } {
  return w.retryable && (engineTimedOut || pastDeadline(req, now)) ? { w: { ...DEADLINE_ERROR }, outcome: 'timed_out' } : { w, outcome: 'failed' };
}
