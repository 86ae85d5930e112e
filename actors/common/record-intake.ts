/**
 * A manager's intake of request records (subjects.telRequest: one per finished request or leg), held only while a
 * record can change what it knows. The gateway routes most requests itself, and their records are none of a manager's
 * business: a pool manager's machine acts only on a request its pool dispatched (policy poolRecordsWanted), a cluster
 * manager's predictor learns only from a request its intake classified (policy AwaitedRecords). While records are
 * unwanted (and nothing holds them: a takeover's reads, `hold`) the subscription is not held, so the NATS server sends
 * the manager no record at all, neither to the leader nor to its standby.
 *
 * The subscription is taken in the step that makes records wanted, before that step's effects go out: the SUB
 * precedes the admit or dispatch request on the same connection, so the server has the interest before the instance
 * admits the request, and its record, published later, comes. It is given up at the first sweep that finds records
 * unwanted, so requests coming and going cost at most one SUB and one UNSUB per sweep period. Records that arrive
 * while unwanted are dropped undecoded.
 */
import { RequestRecord, type RequestRecord as RequestRecordT } from '../../protocols/index.ts';
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';

export interface RecordIntakeOptions {
  /** the records' subject (subjects.telRequest of a pool, or subjects.telRequestAll). */
  subject: string;
  /** whether records are wanted now (a policy predicate over the manager's state). */
  wanted: () => boolean;
  /** one record, decoded while wanted. */
  onRecord: (r: RequestRecordT) => void;
  /** a wildcard subject: the subject each record must have come on (subjects.telRequest of its pool). */
  expectSubject?: (r: RequestRecordT) => string;
}

/** records queued for the handler at most (past it a record is refused as mailbox_full: telemetry, not retried). */
const RECORDS_QUEUED_MAX = 8192;

export class RecordIntake {
  #sub?: SubscribeHandle;
  #holds = 0;
  #stopped = false;

  constructor(readonly bus: Bus, readonly o: RecordIntakeOptions) {}

  /** whether the subscription is held now. */
  get subscribed(): boolean {
    return this.#sub !== undefined;
  }

  /** After each step that can make records wanted, before its effects: taken where wanted (or held); given up at a `sweep` where not. */
  sync(sweep: boolean): void {
    if (this.#stopped) return;
    if (this.o.wanted() || this.#holds > 0) {
      this.#sub ??= this.bus.subscribe(this.o.subject, RequestRecord, (r) => this.o.onRecord(r), {
        capacity: RECORDS_QUEUED_MAX, unwanted: () => !this.o.wanted(), ...(this.o.expectSubject ? { expectSubject: this.o.expectSubject } : {}),
      });
    } else if (sweep && this.#sub) {
      this.#sub.unsubscribe();
      this.#sub = undefined;
    }
  }

  /** A takeover's reads (+1 at their start, -1 once the machine leads with what they read): the subscription is held meanwhile. */
  hold(delta: 1 | -1): void {
    this.#holds = Math.max(0, this.#holds + delta);
    if (delta > 0) this.sync(false);
  }

  stop(): void {
    this.#stopped = true;
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }
}
