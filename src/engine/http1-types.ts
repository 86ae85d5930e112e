/** The lean HTTP/1.1 client's request and response (src/engine/http1.ts). */

export interface Http1Request {
  host: string;
  port: number;
  method: 'POST' | 'GET';
  path: string;
  /** header name -> value; Host, Content-Length and Connection are set here. */
  headers: Record<string, string>;
  body: string;
}

/** A response being read: its status and headers, then its body's bytes. */
export interface Http1Response {
  status: number;
  /** lower-case names; a repeated header's values joined with ', '. */
  headers: Record<string, string>;
  /** the next piece of the body, waiting for it; null at its end. Rejects when the exchange broke. */
  next(): Promise<Buffer | null>;
  /** the next piece already here, without waiting. */
  take(): Buffer | undefined;
  /** true once the whole message (body and framing) was read. */
  readonly complete: boolean;
  /**
   * Push mode: every piece of the body from now on (those already queued first) goes to `onData` as the socket
   * reads it, synchronously, instead of to next() and take(); the socket is never paused for the reader. A piece is
   * a view of the shared read buffer, valid only until `onData` returns: a reader that keeps bytes copies them. Resolves
   * at the end of the body, rejects when the exchange broke (an exception thrown by `onData` breaks it too, with
   * that exception). Once the reader `close`s the exchange, pieces stop and the promise resolves.
   */
  pipe(onData: (b: Buffer) => void): Promise<void>;
  /** Push mode: the connection's reads stop (its bytes wait in the kernel) until `resume`. */
  pause(): void;
  resume(): void;
  /**
   * The reader is done with the exchange. A complete response leaves its connection to the pool; an incomplete
   * one with `drainMs` is read to its end in the background (its connection to the pool then) or closed after
   * drainMs; without it, the connection is closed.
   */
  close(drainMs?: number): void;
  /**
   * A piped chunked body at a chunk boundary, nothing held, nothing written pending: the connection's fd with its reads stopped (the native data
   * plane's, actors/gateway/data-plane.ts), `reclaim` called before any close or failure until `attach`; else undefined.
   */
  detach(reclaim: () => void): number | undefined;
  /** Reads again after detach: `rest` (bytes read meanwhile, not consumed) first unless the exchange is being closed (`cancelled`). */
  attach(rest: Buffer, cancelled: boolean): void;
}
