/**
 * The planner's leads: one per 'elected' of its lease, each a generation that the next 'lost' or 'elected' ends.
 * What a lead arms (the leader's timers, the status service) belongs to the lead in place and stops with it. A
 * lead's setup awaits (the first read of the store, the liveness window, the inventory reads) and checks after each
 * await that it is still the lead in place and the lease still held (`current`): a lead whose lease was lost
 * meanwhile arms nothing, and neither does one whose replica lost and was elected again (a second lead runs then).
 */
import type { Clock } from '../../src/runtime/clock.ts';

export class Leads {
  #gen = 0;
  #timers: unknown[] = [];
  #serves: { unsubscribe(): void }[] = [];

  /** `leaseHeld`: whether the lease is held now (LeaderLease.isLeader: its expiry on the clock, not only its events). */
  constructor(private readonly clock: Clock, private readonly leaseHeld: () => boolean) {}

  /** An 'elected' or a 'lost': the lead in place ends (end()); the generation of the next. */
  next(): number {
    this.end();
    return ++this.#gen;
  }

  /** Whether lead `gen` is the one in place and the lease is held. */
  current(gen: number): boolean {
    return gen === this.#gen && this.leaseHeld();
  }

  /** A timer of the clock (interval or timeout) that stops with the lead in place; returned. */
  arm<T>(timer: T): T {
    this.#timers.push(timer);
    return timer;
  }

  /** A service (a subscription) that ends with the lead in place. */
  serve(h: { unsubscribe(): void }): void {
    this.#serves.push(h);
  }

  /** The lead in place armed nothing more: its timers stopped, its services unsubscribed (its end, the actor's stop). */
  end(): void {
    for (const t of this.#timers) this.clock.clearInterval(t);
    for (const h of this.#serves) h.unsubscribe();
    this.#timers = [];
    this.#serves = [];
  }
}
