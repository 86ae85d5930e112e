/**
 * A pool manager's intake of its pool's request records (subjects.telRequest: one per finished request or leg). A
 * record changes the pool machine only for a request the pool dispatched (policy poolRecordsWanted: an entry
 * outstanding, or a dispatch under way); the gateway routes most requests itself, and their records are none of the
 * pool's. So the subscription is held only while records are wanted, or while a takeover reads the dispatched list
 * it adopts (`hold`): the NATS server sends a pool manager no record otherwise, neither the leader nor its standby.
 *
 * It is taken in the step that makes records wanted, before that step's effects go out: the SUB precedes the admit
 * request on the same connection, so the server has the interest before the instance admits the request, and its
 * record, published later, comes. It is given up at the first sweep that finds records unwanted, so dispatches coming
 * and going cost at most one SUB and one UNSUB per sweep period. Records that arrive while unwanted are dropped
 * undecoded.
 */
import { RequestRecord, subjects, type RequestRecord as RequestRecordT } from '../../protocols/index.ts';
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';

export class PoolRecords {
  #sub?: SubscribeHandle;
  #holds = 0;
  #stopped = false;

  /** `wanted`: whether the machine wants records now; `onRecord`: one record decoded while wanted. */
  constructor(readonly bus: Bus, readonly pool: string, readonly wanted: () => boolean, readonly onRecord: (r: RequestRecordT) => void) {}

  /** whether the subscription is held now. */
  get subscribed(): boolean {
    return this.#sub !== undefined;
  }

  /** After each step of the machine: taken where records are wanted (or held); given up at a `sweep` where not. */
  sync(sweep: boolean): void {
    if (this.#stopped) return;
    if (this.wanted() || this.#holds > 0) {
      this.#sub ??= this.bus.subscribe(subjects.telRequest(this.pool), RequestRecord, (r) => this.onRecord(r), { capacity: 8192, unwanted: () => !this.wanted() });
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
