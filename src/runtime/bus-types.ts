/** The options and handles of Bus.serve and Bus.subscribe (./bus.ts). */
import type { Mailbox } from './mailbox.ts';

export interface MailboxOpts {
  /** queue group: one member of the group gets each message. */
  queue?: string;
  /** max messages waiting for a handler slot (default 1024). Beyond it: mailbox_full. */
  capacity?: number;
  /** handlers running at once (default 64 for serve, 1 for subscribe: ordered). */
  concurrency?: number;
}

export interface ServeOpts<Q> extends MailboxOpts {
  /**
   * A publication (a message without a reply subject: nobody reads an answer) handled at once in the message's
   * callback by this synchronous handler, while nothing waits in the mailbox (a message queued before it is handled
   * first: the order holds): no mailbox slot, promise or reply. A throw is counted (handlerErrors) and logged.
   */
  publication?: (req: Q, subject: string) => void;
}

export interface SubscribeOpts<T> extends MailboxOpts {
  /**
   * Identity check at intake: the subject a message must have arrived on, given what it claims (e.g. an
   * InstanceStatus of instance X on pool P: controlSubjects.instanceStatus(P, X)). The server's
   * permissions let only X's credentials publish there, so a message whose claim does not match its
   * subject is forged (or a bug): it is refused, counted (identityRejections) and logged rate-limited.
   */
  expectSubject?: (msg: T) => string;
  /**
   * Asked as a message arrives, before it is decoded: true drops it uncounted. For a subscriber that has no
   * use for any message of the subject for now (a pool leader with no request of its own outstanding, for the
   * records of requests the gateway routed), so it spends no decode on them; `subject`: the one it arrived on.
   */
  unwanted?: (subject: string) => boolean;
}

export interface ServeHandle {
  readonly subject: string;
  /** stop receiving at once; running handlers see their signal aborted. */
  unsubscribe(): void;
  /** stop receiving, let queued and running handlers finish. */
  drain(): Promise<void>;
  readonly mailbox: Mailbox<unknown>;
}

export interface SubscribeHandle {
  readonly subject: string;
  unsubscribe(): void;
  drain(): Promise<void>;
  readonly mailbox: Mailbox<unknown>;
}
