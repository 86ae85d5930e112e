/**
 * Suspect before dead: an instance whose statuses stopped for longer than `suspectAfterMs` takes no new request,
 * while its death verdict waits for `deadAfterMs` (policy router outOfDispatch 'lapsed' at the gateway, the pool
 * leader's sweep). A killed process is seen at once (its connection's end, no responders), but a host cut off by a
 * partition sends nothing at all: only the silence tells, and a dispatcher that waited the whole death window would
 * keep sending it requests that wait for nothing.
 *
 * A suspicion is cheap to get wrong, so it acts on new dispatch only:
 *   - a suspected instance keeps its requests (none is re-dispatched or ended: that is the death's, after
 *     deadAfterMs), and its next status takes it back into dispatch at once;
 *   - when every candidate of a dispatch is suspected (the dispatcher's own event loop stalled, or every instance's
 *     host was slow), dispatch keeps the least silent ones (those heard within suspectAfterMs of the freshest)
 *     instead of refusing the request.
 *
 * One home for the gateway's routing (router.ts routerPick, routerView), the pool machine's dispatch (pool-dispatch.ts,
 * run by the pool leader and the simulator) and their dispatch views. Pure: times in, decisions out.
 */

/** An instance publishes its status every this many ms by default (liveness.instanceStatusIntervalMs), at most liveness.statusIntervalMs. */
export const INSTANCE_STATUS_MS = 250;

/** Statuses missed (interval counts) before an instance is suspected, by default: two lost, and one interval of lateness. */
export const SUSPECT_INTERVALS = 3;

/** A config's liveness as the suspicion reads it (actors/common/config.ts `liveness`). */
export interface SuspectLiveness { statusIntervalMs: number; instanceStatusIntervalMs?: number; suspectAfterMs?: number }

/** The interval of an instance's statuses, ms: liveness.instanceStatusIntervalMs, else INSTANCE_STATUS_MS or statusIntervalMs where that is shorter. */
export function instanceStatusMs(l: SuspectLiveness): number {
  return l.instanceStatusIntervalMs ?? Math.min(INSTANCE_STATUS_MS, l.statusIntervalMs);
}

/** Silence after which an instance takes no new request, ms: liveness.suspectAfterMs, else SUSPECT_INTERVALS of its status interval (750 ms by default). */
export function suspectAfterMsOf(l: SuspectLiveness): number {
  return l.suspectAfterMs ?? SUSPECT_INTERVALS * instanceStatusMs(l);
}

/** Whether an instance last heard at `lastSeenMs` is suspected at `now` (never without a threshold). */
export function suspected(lastSeenMs: number, now: number, suspectAfterMs: number | undefined): boolean {
  return suspectAfterMs !== undefined && now - lastSeenMs > suspectAfterMs;
}

/**
 * The candidates a dispatch may choose from (in their order): those not suspected at `now`; when every one is, the
 * least silent ones (last heard within suspectAfterMs of the most recently heard), never none of a non-empty list.
 * Without a threshold, all of them.
 */
export function unsuspected<T>(xs: readonly T[], lastSeenMs: (x: T) => number, now: number, suspectAfterMs: number | undefined): T[] {
  if (suspectAfterMs === undefined || !xs.length) return [...xs];
  const fresh = xs.filter((x) => !suspected(lastSeenMs(x), now, suspectAfterMs));
  if (fresh.length) return fresh;
  let latest = -Infinity;
  for (const x of xs) latest = Math.max(latest, lastSeenMs(x));
  return xs.filter((x) => !suspected(lastSeenMs(x), latest, suspectAfterMs));
}
