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
 *     instead of refusing the request;
 *   - when every candidate the suspicion leaves refused a request (tried, e.g. overloaded), the request goes on to the
 *     suspected ones not tried yet, the least silent first (router.ts dispatchViews): a silent instance is alive until
 *     deadAfterMs, and refusing a request while one is left is neither a hold nor an overload.
 *
 * A move of queued requests to peers (emergency step 3, an engine crash, a stop) has no such fallback: it goes only to
 * peers heard within suspectAfterMs (heard), and when every peer is suspected it moves nothing. A moved request has a
 * home that is heard (its instance keeps it, the ladder's reject step bounds its wait), so a move refused costs one
 * ladder step, while a move into silence strands it on a host that may be cut off until deadAfterMs and the death's
 * re-dispatch. A dispatcher whose own loop stalled reads the queued statuses and moves at its next step. The same
 * rule counts an instance's peers with room (the ladder's move step, the backpressure to the pool).
 *
 * The pool choice (the gateway's routerPools, intake's intakePools) skips a pool whose ready instances are all
 * suspected while a longer pool serving the type has one heard; with none heard anywhere, the live ready ones count.
 *
 * One home for the gateway's routing (router.ts routerPick, routerPools, routerView), intake's pool choice (cluster.ts
 * intakePools, the cluster manager), the pool machine's dispatch and moves
 * (pool-dispatch.ts, run by the pool leader and the simulator), their dispatch views, and the instance machine's peers
 * (instance-emergency.ts, instance-admission.ts). Pure: times in, decisions out.
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
  const fresh = heard(xs, lastSeenMs, now, suspectAfterMs);
  if (fresh.length) return fresh;
  let latest = -Infinity;
  for (const x of xs) latest = Math.max(latest, lastSeenMs(x));
  return heard(xs, lastSeenMs, latest, suspectAfterMs);
}

/**
 * The candidates a move may go to (in their order): those not suspected at `now`, possibly none (no all-silent
 * fallback: a move keeps its requests where they are heard rather than send them into silence). Without a threshold,
 * all of them.
 */
export function heard<T>(xs: readonly T[], lastSeenMs: (x: T) => number, now: number, suspectAfterMs: number | undefined): T[] {
  return xs.filter((x) => !suspected(lastSeenMs(x), now, suspectAfterMs));
}
