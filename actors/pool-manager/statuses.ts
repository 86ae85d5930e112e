/**
 * A pool manager's intake of its instances' statuses (4 a second per instance). While its machine leads, each is
 * stepped as it comes (dispatch, suspicion, the pool's load). While it does not (a standby), only the latest of each
 * instance is kept, undecoded (Bus.subscribeLatest), and `replay` steps those kept, in their order of arrival and
 * each at its arrival time, before what reads them: the sweep (the death verdicts), the lead, a read of the view.
 * What the standby's machine holds when it reads is what it would hold had it stepped every status, but for the
 * statuses an instance sent between two reads (its counters are cumulative; its latest status replaces them).
 */
import { InstanceStatus, controlSubjects, type InstanceStatus as InstanceStatusT } from '../../protocols/index.ts';
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import type { LatestHandle } from '../../src/runtime/bus-latest.ts';
import type { Clock } from '../../src/runtime/clock.ts';

export class PoolStatuses {
  #sub?: SubscribeHandle;
  #kept?: LatestHandle<InstanceStatusT>;

  /** `step`: one status to the machine, at `atMs` (its arrival) or now. */
  constructor(readonly bus: Bus, readonly pool: string, readonly clock: Clock, readonly step: (st: InstanceStatusT, atMs?: number) => void) {}

  /** whether each status is stepped as it comes (the machine leads). */
  get eager(): boolean {
    return this.#sub !== undefined;
  }

  /** The statuses kept since the last replay, stepped in their order of arrival, each at its arrival time. */
  replay(): void {
    if (!this.#kept?.pending) return;
    for (const { msg, atMs } of this.#kept.take()) this.step(msg, atMs);
  }

  /** Each status stepped as it comes (`lead`: those kept stepped first), or the latest of each kept. */
  listen(lead: boolean): void {
    const subject = controlSubjects.instanceStatusPool(this.pool), expectSubject = (s: InstanceStatusT) => controlSubjects.instanceStatus(s.pool, s.id);
    if (lead) {
      this.replay();
      // subscribed before the other ends: the server has the new subscription first, and nothing kept is left unread
      this.#sub ??= this.bus.subscribe(subject, InstanceStatus, (s) => this.step(s), { capacity: 4096, expectSubject });
      this.#kept?.unsubscribe();
      this.#kept = undefined;
    } else {
      this.#kept ??= this.bus.subscribeLatest(subject, InstanceStatus, { now: () => this.clock.now(), maxSubjects: 4096, expectSubject });
      this.#sub?.unsubscribe();
      this.#sub = undefined;
    }
  }

  stop(): void {
    this.#sub?.unsubscribe();
    this.#kept?.unsubscribe();
    this.#sub = this.#kept = undefined;
  }
}
