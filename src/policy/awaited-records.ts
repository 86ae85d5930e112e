/**
 * The requests whose RequestRecord a cluster manager waits for: its intake classified them, and its output predictor
 * learns from their records (an 'ok' record: the features the intake saw, the completion tokens the record says). The
 * records of every other request (the gateway routed it itself, or it was a readiness probe) teach nothing, so the
 * cluster manager wants records only while it awaits one (`recordsWanted`): the shell holds the records'
 * subscription only then (actors/common/record-intake.ts).
 *
 * A request is awaited from its classification, before its dispatch goes out, until its 'ok' record comes or its
 * record can no longer come: its time budget (giveUpAtMs - arrivalMs, capped at RECORD_WAIT_MAX_MS) from its
 * classification, plus RECORD_GRACE_MS (an instance frees a leg whose gateway went silent 5 s past the give-up time,
 * then records it). A record of another outcome leaves it awaited: the same request id may still end 'ok' (the
 * gateway's estimated record of a leg whose instance went silent, then that instance's own). At most `max` are awaited
 * (the oldest forgotten first). The simulator has no bus: its classifier (src/sim/classifier.ts) learns at each
 * completion directly, what the records awaited here deliver to the live predictor.
 */

/** after a request's time budget, how long its record may still come, ms. */
export const RECORD_GRACE_MS = 30_000;
/** the longest time budget counted for a request, ms (an hour: a budget beyond it is the client's to wait, not the predictor's). */
export const RECORD_WAIT_MAX_MS = 3_600_000;
/** requests awaited at most by default. */
export const AWAITED_RECORDS_MAX = 50_000;

/** The time by which the record of a request classified at `nowMs` has come, if it ever does (its budget from its own clock's arrival and give-up times). */
export function recordDueMs(r: { arrivalMs: number; giveUpAtMs: number }, nowMs: number): number {
  const budget = Number.isFinite(r.giveUpAtMs - r.arrivalMs) ? Math.max(0, r.giveUpAtMs - r.arrivalMs) : RECORD_WAIT_MAX_MS;
  return nowMs + Math.min(RECORD_WAIT_MAX_MS, budget) + RECORD_GRACE_MS;
}

export class AwaitedRecords<F> {
  readonly #byId = new Map<string, { f: F; dueMs: number }>();

  constructor(readonly max = AWAITED_RECORDS_MAX) {}

  get size(): number {
    return this.#byId.size;
  }

  /** Whether a record can teach anything now: one is awaited. */
  recordsWanted(): boolean {
    return this.#byId.size > 0;
  }

  /** Request `id` classified with features `f`: its record awaited until `dueMs` (recordDueMs); again: from now on. */
  await(id: string, f: F, dueMs: number): void {
    this.#byId.delete(id);
    if (this.#byId.size >= this.max) this.#byId.delete(this.#byId.keys().next().value!);
    this.#byId.set(id, { f, dueMs });
  }

  /** A record of request `id` with `outcome`: its features when it teaches (an awaited request's 'ok' record; no longer awaited), else undefined. */
  take(id: string, outcome: string): F | undefined {
    const e = this.#byId.get(id);
    if (!e || outcome !== 'ok') return undefined;
    this.#byId.delete(id);
    return e.f;
  }

  /** Forget the requests whose record is past due at `nowMs`; returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [id, e] of this.#byId) {
      if (e.dueMs > nowMs) continue;
      this.#byId.delete(id);
      n++;
    }
    return n;
  }
}
