/** The options and handles of Bus.serve and Bus.subscribe (./bus.ts). */
import type { Logger } from 'pino';
import type { Mailbox } from './mailbox.ts';
import type { NatsSettings } from './nats-settings.ts';

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
  /**
   * Every message of the subject is a request (the protocol's commands: PoolCommand, InstanceCommand, NodeCommand, each
   * answered with an Ack): one without a reply subject is not the protocol's and is dropped unhandled (counted as a
   * protocol error, logged rate-limited).
   */
  requestsOnly?: boolean;
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

export interface BusConnectOptions {
  /** server URL(s) and credentials (src/runtime/nats-settings.ts); or the plain fields below. */
  settings?: NatsSettings;
  servers?: string | string[];
  /** connection name, shown by the server (`nats server report connections`). */
  name: string;
  /**
   * prefix of this connection's reply inboxes (protocols' inboxPrefix(kind, id)); the server lets each
   * actor subscribe only under its own. Default `_INBOX` (admin tools).
   */
  inboxPrefix?: string;
  user?: string;
  pass?: string;
  log: Logger;
  /** reconnect forever after a disconnect (default true). */
  reconnect?: boolean;
  /** deadline of one connection attempt to one server (first connect and reconnects), ms. Default NATS_DIAL_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /** how long the first connect is retried while no server takes it, ms (nats-dial.ts firstConnect). Default 0: one attempt. */
  firstConnectMs?: number;
  /** the keep-alive's ping period, ms (src/policy/bus-keepalive.ts busPingMs of the actor's liveness.deadAfterMs); default that of a 3 s window. */ pingIntervalMs?: number;
  /** ends the first connect's retries (CancelledError). */
  signal?: AbortSignal;
  /** min ms between two log lines about bad payloads on one subject (default 10000). */
  protocolLogIntervalMs?: number;
  /** try the servers in the order given (default: random, spreading clients); those answering first either way (nats-dial.ts). */
  noRandomize?: boolean;
}
