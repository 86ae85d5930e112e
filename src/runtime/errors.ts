/**
 * Runtime error classes. Each extends protocols' DynError, so it carries a stable `code` for the wire and
 * says whether retrying can help.
 */
import { DynError } from '../../protocols/errors.ts';

export { DynError, ProtocolError, RemoteError, VersionMismatchError, toWireError } from '../../protocols/errors.ts';
export type { WireError, ErrorCode } from '../../protocols/errors.ts';

/** A request got no reply inside its deadline. Retryable: the responder may be slow or restarting. */
export class TimeoutError extends DynError {
  override name = 'TimeoutError';
  readonly subject: string;
  readonly timeoutMs: number;
  constructor(subject: string, timeoutMs: number, cause?: unknown) {
    super('timeout', `request to ${subject} timed out after ${timeoutMs} ms`, { retryable: true, cause });
    this.subject = subject;
    this.timeoutMs = timeoutMs;
  }
}

/** Nobody subscribes to the subject (the server told us at once). Retryable: a standby may appear. */
export class NoRespondersError extends DynError {
  override name = 'NoRespondersError';
  readonly subject: string;
  constructor(subject: string, cause?: unknown) {
    super('no_responders', `no responders on ${subject}`, { retryable: true, cause });
    this.subject = subject;
  }
}

/** A bounded mailbox is full: backpressure. Retryable after the consumer catches up. */
export class MailboxFullError extends DynError {
  override name = 'MailboxFullError';
  readonly capacity: number;
  constructor(capacity: number, what = 'mailbox') {
    super('mailbox_full', `${what} full (capacity ${capacity})`, { retryable: true, retryAfterS: 0.1 });
    this.capacity = capacity;
  }
}

/** A call made in a lifecycle state that does not allow it (e.g. start() on a failed actor). */
export class LifecycleError extends DynError {
  override name = 'LifecycleError';
  readonly state: string;
  constructor(message: string, state: string) {
    super('unavailable', message, { retryable: false });
    this.state = state;
  }
}

/** The connection to NATS is gone (closed or draining). Retryable after reconnect. */
export class ConnectionClosedError extends DynError {
  override name = 'ConnectionClosedError';
  constructor(message = 'NATS connection closed', cause?: unknown) {
    super('unavailable', message, { retryable: true, cause });
  }
}

/** The caller aborted the request (its AbortSignal fired). */
export class CancelledError extends DynError {
  override name = 'CancelledError';
  constructor(message = 'cancelled', cause?: unknown) {
    super('cancelled', message, { retryable: false, cause });
  }
}
