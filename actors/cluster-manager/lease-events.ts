/**
 * The cluster planner's lease events, in the order of its lease's changes, each published once the events stream is
 * there when it could be made (an event published before the stream exists reaches live subscribers only, and the
 * first planner's election comes before its setup made the stream). A replica makes the stream before it contends
 * (eventsStreamBeforeLead, bounded); an election while it is not known to be there waits for the lead's setup
 * (setUpJetStreamInBackground, which ends early once the lead is lost), and a loss after it waits for that election's
 * event.
 */
import type { EventPublisher } from '../common/events.ts';

export class LeaseEvents {
  #chain: Promise<unknown> = Promise.resolve();
  /** the events stream is known to be there (made or found) */
  streamMade = false;

  constructor(private readonly evt: EventPublisher) {}

  /** This replica leads (`term`); `setUp` is its lead's setup (true: the stream is there). */
  elected(summary: string, term: number | undefined, leader: string, setUp: Promise<boolean>): void {
    const after = this.streamMade ? undefined : setUp.then((made) => void (this.streamMade ||= made));
    this.#chain = this.#chain.then(() => after).then(() => this.evt('lease', summary, { leader, term }, {}));
  }

  /** This replica lost the lease. */
  lost(summary: string): void {
    this.#chain = this.#chain.then(() => this.evt('lease', summary, { leader: null }, {}));
  }
}
