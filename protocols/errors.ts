/**
 * Error classes of the wire contract. Every error says whether retrying can help (`retryable`) and has a
 * stable `code` that travels in error replies, so the receiver can rebuild the same class.
 */
export type ErrorCode =
  | 'protocol'
  | 'timeout'
  | 'no_responders'
  | 'remote'
  | 'mailbox_full'
  | 'overloaded'
  | 'rejected'
  | 'not_found'
  | 'unavailable'
  | 'cancelled'
  | 'engine_crashed'
  | 'invalid_request'
  | 'internal';

export class DynError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** seconds after which a retry makes sense (for 503 Retry-After). */
  readonly retryAfterS?: number;
  constructor(code: ErrorCode, message: string, opts: { retryable: boolean; retryAfterS?: number; cause?: unknown }) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.code = code;
    this.retryable = opts.retryable;
    this.retryAfterS = opts.retryAfterS;
  }
}

/** A payload that failed to decode or validate. Never retryable: the same bytes fail again. */
export class ProtocolError extends DynError {
  override name = 'ProtocolError';
  readonly subject?: string;
  readonly issues: string[];
  constructor(message: string, opts: { subject?: string; issues?: string[]; cause?: unknown } = {}) {
    super('protocol', message, { retryable: false, cause: opts.cause });
    this.subject = opts.subject;
    this.issues = opts.issues ?? [];
  }
}

/** A version we do not speak. */
export class VersionMismatchError extends ProtocolError {
  override name = 'VersionMismatchError';
  constructor(got: unknown, want: number, subject?: string) {
    super(`protocol version mismatch: got v=${String(got)}, this node speaks v=${want}`, { subject });
  }
}

/** Wire form of an error, carried in replies and stream chunks. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  retryAfterS?: number;
}

export function toWireError(err: unknown): WireError {
  if (err instanceof DynError) {
    const w: WireError = { code: err.code, message: err.message, retryable: err.retryable };
    if (err.retryAfterS !== undefined) w.retryAfterS = err.retryAfterS;
    return w;
  }
  const e = err as { message?: string };
  return { code: 'internal', message: e?.message ?? String(err), retryable: false };
}

/** An error reported by the remote side of a request, rebuilt from its wire form. */
export class RemoteError extends DynError {
  override name = 'RemoteError';
  readonly remoteCode: ErrorCode;
  constructor(w: WireError) {
    super(w.code === 'protocol' ? 'protocol' : 'remote', w.message, { retryable: w.retryable, retryAfterS: w.retryAfterS });
    this.remoteCode = w.code;
  }
}
