/**
 * The cluster planner's lease events, published as its lease changes: an election at once (live subscribers and the
 * tests read an election's time from it), a loss after it. A replica makes the events stream before it contends
 * (eventsStreamBeforeLead, bounded), so that the first planner's election is stored; one published while the stream is
 * not there (not made within that bound) reaches live subscribers only.
 */
import type { EventPublisher } from '../common/events.ts';

export class LeaseEvents {
  /** the events stream is known to be there (made or found before contending) */
  streamMade = false;

  constructor(private readonly evt: EventPublisher) {}

  /** This replica leads (`term`); `setUp` is its lead's setup (true: the stream is there from then on). */
  elected(summary: string, term: number | undefined, leader: string, setUp: Promise<boolean>): void {
    this.evt('lease', summary, { leader, term }, {});
    void setUp.then((made) => void (this.streamMade ||= made));
  }

  /** This replica lost the lease. */
  lost(summary: string): void {
    this.evt('lease', summary, { leader: null }, {});
  }
}
