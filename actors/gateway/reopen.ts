/**
 * The admission of a stream's next leg (a migration, a resume's first leg): the client has tokens already and can no
 * longer get a 429 or 503, so what another attempt can fix is tried again until the request's give-up time.
 */
import type { Clock } from '../../src/runtime/clock.ts';
import { DynError, RemoteError } from '../../protocols/errors.ts';
import { subjects } from '../../protocols/subjects.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import { deadlineError, pastDeadline } from './legs.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/**
 * Nothing at or past `req`'s give-up time (pastDeadline): that is the request's timeout (not retryable). Else
 * `open(next)` until it admits the leg, while what failed is retryable (no ready instance while the dead ones restart,
 * a manager failing over) and the next attempt starts at least `attemptMs` before `req`'s give-up time; the pause
 * between attempts doubles from 250 ms to 2 s, or is what the refusal asked for. After a refusal nothing holds the
 * leg id; after anything else it may be held (and was cancelled), so the next attempt asks under a new id.
 */
export async function reopenLeg<L>(
  open: (leg: InferenceRequest) => Promise<L>, clock: Clock, attemptMs: number, req: InferenceRequest, next: InferenceRequest, signal: AbortLike,
): Promise<L> {
  if (pastDeadline(req, clock.now())) throw deadlineError();
  const until = req.giveUpAtMs - attemptMs;
  let wait = 250;
  let leg = next;
  for (let k = 1; ; k++) {
    try {
      return await open(leg);
    } catch (err) {
      const e = err as DynError;
      const pause = Math.min(2000, Math.max(wait, (e.retryAfterS ?? 0) * 1000));
      if (signal.aborted || !(e instanceof DynError) || !e.retryable || clock.now() + pause >= until) throw err;
      if (!(e instanceof RemoteError)) {
        const suffix = `-r${k}`;
        const id = next.id.slice(0, 128 - suffix.length) + suffix;
        leg = { ...next, id, streamSubject: subjects.stream(id) };
      }
      await new Promise<void>((resolve) => {
        const done = () => (clock.clearTimeout(t), signal.removeEventListener('abort', done), resolve());
        const t = clock.setTimeout(done, pause);
        signal.addEventListener('abort', done, { once: true });
      });
      wait = Math.min(2000, wait * 2);
    }
  }
}
