/**
 * A holder of liveness verdicts watching its own link to the bus (the cluster planner's view of its servers and
 * instances; the pool machine keeps the same rule in its own state, pool-instances.ts linkProven): the silence it
 * hears while its link is down, or unproven for longer than a gap, is its own, not its peers'. Pure: the shell feeds
 * the bus's disconnect/reconnect (linkEvent) and the round trips that were answered (linkProof: its lease's, sent at
 * sentMs), and reads silenceFromMs.
 */
export interface LinkWatch {
  /** the connection is down (the bus's 'disconnect' until its 'reconnect'). */
  down: boolean;
  /** the send time of the latest round trip answered, ms. */
  provenMs?: number;
  /** the end of the last stretch without a link (its return, or the first proof after a gap), ms. */
  upMs?: number;
}

export const initialLinkWatch = (): LinkWatch => ({ down: false });

/**
 * The longest a link may go unproven before the silence heard counts as its own, ms: half of deadAfterMs. A peer heard
 * until a cut (it reports at least every deadAfterMs / 2, config validation) is not silent for deadAfterMs while the last
 * proof is younger than this; proofs every min(leaseTtlMs, deadAfterMs) / 3 (a lease's renewals and reads) come well within it.
 */
export const linkGapMs = (deadAfterMs: number): number => Math.floor(deadAfterMs / 2);

/** The connection went down / came back at `now`. */
export function linkEvent(w: LinkWatch, up: boolean, now: number): LinkWatch {
  return { ...w, down: !up, ...(up && w.down ? { upMs: now } : {}) };
}

/** A round trip sent at `sentMs` was answered: after a gap longer than `gapMs` (or as the first), the link's silence ends there. */
export function linkProof(w: LinkWatch, sentMs: number, gapMs: number): LinkWatch {
  if (w.provenMs !== undefined && sentMs <= w.provenMs) return w;
  const after = w.provenMs === undefined || sentMs - w.provenMs > gapMs;
  return { ...w, provenMs: sentMs, ...(after ? { upMs: Math.max(w.upMs ?? -Infinity, sentMs) } : {}) };
}

/**
 * From when a peer's silence counts at `now`: `now` itself while the link is down or unproven for longer than `gapMs`
 * (no silence is anybody's but its own: every peer counts as just heard, with its last report), else the link's last
 * return (a peer gets the whole bound from then to report again).
 */
export function silenceFromMs(w: LinkWatch, now: number, gapMs: number): number {
  if (w.down || w.provenMs === undefined || now - w.provenMs > gapMs) return now;
  return w.upMs ?? -Infinity;
}
