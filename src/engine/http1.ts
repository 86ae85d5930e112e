/**
 * A lean HTTP/1.1 client for one job: POST a JSON body to an engine and read its (SSE) response body as it
 * arrives, over kept-alive connections. The gateway's direct data path streams every request's tokens through
 * it (src/engine/client.ts with `EngineTarget.pool`): node:http's ClientRequest, IncomingMessage and Agent
 * (streams, events, a timer per socket, header validation per request) were the largest single item of the
 * gateway's CPU per request (docs/DATAPATH.md). Here a request is one socket write of a string, and the
 * response is parsed in place: the status line and headers, then the body framed by chunked transfer coding,
 * Content-Length, or the connection's close; the body's bytes are handed out as views of the socket's reads. Every
 * connection reads into one shared buffer (net's `onread`: no Buffer, Readable push or 'data' event per read), so a
 * piped reader's views are valid during its callback only; the pieces queued for next() and take() are copies.
 *
 * Connections: one per concurrent exchange; an exchange whose response was read to its end on a connection
 * the server keeps open returns it to the pool (most recently used first, at most `maxIdlePerHost` per host),
 * where it is closed after `idleTimeoutMs` unused (one sweep timer per pool, not one timer per socket).
 * A request sent on a kept-alive connection that the server closed before answering any byte (it timed the
 * connection out as we sent) is sent again on a new connection, at most twice, as node:http's documented
 * `reusedSocket` pattern does: nothing reached the engine. Anything else that breaks an exchange rejects it.
 */
import { connect, type Socket } from 'node:net';
import type { AbortLike } from './abort.ts';
import type { Http1Request, Http1Response } from './http1-types.ts';
import { MARK, firstTokenTrace } from '../runtime/first-token-trace.ts';

export interface Http1PoolOptions {
  /** idle connections kept per host:port. Default 256. */
  maxIdlePerHost?: number;
  /** an idle connection is closed after this long unused, ms. Default 4000. */
  idleTimeoutMs?: number;
}

/** The largest response head (status line and headers) accepted, bytes. */
const MAX_HEAD = 64 * 1024;
/** Body views queued before the socket is paused (the reader is slower than the engine). */
const HIGH_WATER = 64;
/** Bytes one read of an engine connection takes at most (the shared read buffer's size). */
const READ_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
let sharedRead: Buffer | undefined;
/** The read buffer every connection of every pool reads into (onread): its bytes are valid only during the read's callback. */
const readBuffer = (): Buffer => (sharedRead ??= Buffer.allocUnsafe(READ_BYTES));
const HEAD_END = Buffer.from('\r\n\r\n');

/** An HTTP exchange broke: the connection failed or closed early, or the response is not valid HTTP/1.1. */
export class Http1Error extends Error {
  override name = 'Http1Error';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

interface PooledSocket extends Socket {
  /** the exchange reading this connection, if any. */
  _x?: Exchange | undefined;
  _key?: string;
  _idleSince?: number;
}

export class Http1Pool {
  private readonly idle = new Map<string, PooledSocket[]>();
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private sweep: NodeJS.Timeout | undefined;
  private destroyed = false;

  constructor(opts: Http1PoolOptions = {}) {
    this.maxIdle = opts.maxIdlePerHost ?? 256;
    this.idleMs = opts.idleTimeoutMs ?? 4000;
  }

  /** Idle connections held now (all hosts). */
  get idleCount(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /** Closes every idle connection; exchanges in flight keep theirs (and close it at their end). */
  destroy(): void {
    this.destroyed = true;
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = undefined;
    for (const l of this.idle.values()) for (const s of l) s.destroy();
    this.idle.clear();
  }

  /** An idle connection to host:port (reused: true), or a new one. */
  acquire(host: string, port: number): { socket: PooledSocket; reused: boolean } {
    const key = `${host}:${port}`;
    const l = this.idle.get(key);
    while (l && l.length > 0) {
      const s = l.pop()!;
      if (s.destroyed || !s.writable) continue;
      s.ref();
      return { socket: s, reused: true };
    }
    // every read lands in one buffer shared by all connections (read callbacks run one at a time) and is handed to
    // the exchange at once: no Buffer, Readable push, 'data' event or nextTick per read; the exchange copies what it keeps
    const s = connect({
      host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 1000,
      onread: {
        buffer: readBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => {
          const x = s._x;
          if (x) x.onData((buf as Buffer).subarray(0, n));
          else s.destroy(); // bytes on an idle connection: not a response to anything of ours
          return true; // (an exchange whose queue is full pauses the socket itself)
        },
      },
    }) as PooledSocket;
    s._key = key;
    s.on('end', () => {
      const x = s._x;
      if (x) x.onEnd();
      else s.destroy();
    });
    s.on('error', (e) => s._x?.onError(e));
    s.on('close', () => {
      const x = s._x;
      s._x = undefined;
      if (x) x.onClose();
      else this.forget(s);
    });
    return { socket: s, reused: false };
  }

  /** A connection whose exchange ended cleanly: kept for the next one, or closed. */
  release(s: PooledSocket): void {
    s._x = undefined;
    if (this.destroyed || s.destroyed || !s.writable) return void s.destroy();
    const key = s._key!;
    let l = this.idle.get(key);
    if (!l) this.idle.set(key, (l = []));
    if (l.length >= this.maxIdle) return void s.destroy();
    s._idleSince = Date.now();
    s.unref();
    l.push(s);
    if (!this.sweep) {
      this.sweep = setInterval(() => this.closeIdle(), Math.max(250, Math.min(1000, this.idleMs / 2)));
      this.sweep.unref();
    }
  }

  private forget(s: PooledSocket): void {
    const l = this.idle.get(s._key!);
    if (!l) return;
    const i = l.indexOf(s);
    if (i >= 0) l.splice(i, 1);
  }

  private closeIdle(): void {
    const cut = Date.now() - this.idleMs;
    let left = 0;
    for (const [key, l] of this.idle) {
      // oldest first: the pool pushes and pops at the end
      let k = 0;
      while (k < l.length && (l[k]!._idleSince ?? 0) <= cut) l[k++]!.destroy();
      if (k > 0) l.splice(0, k);
      if (l.length === 0) this.idle.delete(key);
      left += l.length;
    }
    if (left === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = undefined;
    }
  }
}

export type { Http1Request, Http1Response } from './http1-types.ts';

/** Header values must not break the request's framing (as node:http refuses them). */
function checkHeader(name: string, value: string): void {
  if (/[\r\n\0]/.test(value) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new TypeError(`invalid HTTP header ${JSON.stringify(name)}`);
}

/**
 * Sends the request and resolves with the response once its head is in. A reused connection the server closed
 * before any response byte is replaced by a new one (at most twice). `signal` aborts it (rejects with, and later
 * breaks the body with, its reason).
 */
export async function http1Request(pool: Http1Pool, req: Http1Request, signal?: AbortLike): Promise<Http1Response> {
  let head = `${req.method} ${req.path} HTTP/1.1\r\nHost: ${req.host}:${req.port}\r\n`;
  for (const k in req.headers) {
    const v = req.headers[k]!;
    checkHeader(k, v);
    head += `${k}: ${v}\r\n`;
  }
  head += `Content-Length: ${Buffer.byteLength(req.body)}\r\nConnection: keep-alive\r\n\r\n`;
  const wire = head + req.body;
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Http1Error('aborted', 'ABORT_ERR');
    const { socket, reused } = pool.acquire(req.host, req.port);
    const x = new Exchange(pool, socket, signal);
    socket._x = x;
    socket.write(wire);
    // the first token's path (src/runtime/first-token-trace.ts): the request's x-request-id names its record
    if (firstTokenTrace.on) firstTokenTrace.mark(x.traceId = req.headers['x-request-id'], MARK.written);
    try {
      await x.headReady;
      return x;
    } catch (err) {
      // nothing came back on a connection the pool had kept: the server closed it as we sent; nothing reached it
      if (reused && !x.gotBytes && attempt < 2 && !signal?.aborted && !(err instanceof Http1ProtocolError)) continue;
      throw err;
    }
  }
}

class Http1ProtocolError extends Http1Error {}

const enum St { Head, Chunk, ChunkData, ChunkEnd, Trailer, Length, Close, Done }

/** The last final head parsed: an engine sends the same head request after request (its headers frozen, shared). */
let lastHead: { text: string; status: number; headers: Record<string, string>; keepAlive: boolean } | undefined;
const ignore = (): undefined => undefined; // headReady's rejection nobody waits for

class Exchange implements Http1Response {
  status = 0;
  headers: Record<string, string> = {};
  complete = false;
  gotBytes = false;
  /** the first token trace's request id (only while it is on). */
  traceId: string | undefined;
  readonly headReady: Promise<void>;
  private headResolve!: () => void;
  private headReject!: (e: Error) => void;
  private st = St.Head;
  /** bytes of a head, chunk-size line or trailer not complete yet. */
  private partial: Buffer | undefined;
  /** bytes left of the current chunk or of a Content-Length body. */
  private left = 0;
  private keepAlive = true;
  private readonly q: Buffer[] = [];
  /** push mode (pipe): the reader's callback, and the end of the body's settlement. */
  private sink: ((b: Buffer) => void) | undefined;
  private piped: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private err: Error | null = null;
  private wake: (() => void) | null = null;
  private closed = false;
  /** the reader closed it with a drain window: discard the rest, then release. */
  private draining: NodeJS.Timeout | undefined;
  private readonly onAbort: (() => void) | undefined;
  /** detached: takes the connection back before it is closed. */
  private reclaim: (() => void) | undefined;

  constructor(private readonly pool: Http1Pool, private readonly socket: PooledSocket, private readonly signal: AbortLike | undefined) {
    this.headReady = new Promise<void>((res, rej) => {
      this.headResolve = res;
      this.headReject = rej;
    });
    // a rejection nobody waits for (the body broke after the head) is not unhandled
    this.headReady.catch(ignore);
    if (signal) {
      this.onAbort = () => this.fail(signal.reason instanceof Error ? signal.reason : new Http1Error('aborted', 'ABORT_ERR'), true);
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  // ---- the reader's side ----

  take(): Buffer | undefined {
    const b = this.q.shift();
    if (b && this.q.length === 0 && this.socket.isPaused()) this.socket.resume();
    return b;
  }

  async next(): Promise<Buffer | null> {
    for (;;) {
      const b = this.take();
      if (b) return b;
      if (this.err) throw this.err;
      if (this.complete) return null;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  pipe(onData: (b: Buffer) => void): Promise<void> {
    if (this.sink) throw new Error('the response is piped already');
    return new Promise<void>((resolve, reject) => {
      this.sink = onData;
      this.piped = { resolve, reject };
      try {
        for (let b = this.q.shift(); b && !this.closed; b = this.q.shift()) onData(b);
      } catch (e) {
        this.fail(e as Error, true);
        // a response already read to its end has no error of its own to settle the reader with: the sink's exception does
        this.piped = undefined;
        return reject(e as Error);
      }
      if (this.socket.isPaused()) this.socket.resume();
      this.poke();
    });
  }

  pause(): void {
    if (!this.closed && !this.socket.destroyed) this.socket.pause();
  }

  resume(): void {
    if (!this.closed && !this.socket.destroyed && this.socket.isPaused()) this.socket.resume();
  }

  detach(reclaim: () => void): number | undefined {
    const h = (this.socket as unknown as { _handle: { fd: number; reading: boolean; writeQueueSize: number; readStop(): number } | null })._handle;
    if (!this.sink || this.closed || this.err || this.complete || this.st !== St.Chunk || this.partial || this.q.length || !h?.reading || !(h.fd >= 0) || h.writeQueueSize > 0) return undefined;
    h.reading = false;
    h.readStop();
    this.reclaim = reclaim;
    return h.fd;
  }

  attach(rest: Buffer, cancelled: boolean): void {
    this.reclaim = undefined;
    if (!cancelled && rest.length > 0) this.onData(rest);
    const h = (this.socket as unknown as { _handle: { reading: boolean; readStart(): number } | null })._handle;
    if (h && !h.reading && !this.socket.destroyed) {
      h.reading = true;
      h.readStart();
    }
  }

  /** a detached connection is taken back before it is closed or failed. */
  private taken(): void {
    const r = this.reclaim;
    this.reclaim = undefined;
    r?.();
  }

  close(drainMs?: number): void {
    this.taken();
    if (this.closed) return;
    this.closed = true;
    this.q.length = 0;
    // a piped reader that closes is done with it: its promise settles now
    const p = this.piped;
    this.piped = undefined;
    p?.resolve();
    this.detachSignal();
    if (this.socket.isPaused()) this.socket.resume();
    if (this.complete && !this.err) return this.finish();
    if (drainMs !== undefined && !this.err && this.st !== St.Close) {
      this.draining = setTimeout(() => this.socket.destroy(), drainMs);
      this.draining.unref();
      return;
    }
    this.socket._x = undefined;
    this.socket.destroy();
  }

  // ---- the socket's side ----

  onData(b: Buffer): void {
    if (this.traceId !== undefined && !this.gotBytes) firstTokenTrace.mark(this.traceId, MARK.engineBytes);
    this.gotBytes = true;
    try {
      this.parse(b);
    } catch (e) {
      this.fail(e as Error, true);
    }
  }

  onEnd(): void {
    if (this.st === St.Close) {
      this.keepAlive = false;
      this.st = St.Done;
      this.complete = true;
      this.poke();
      if (this.closed) this.finish();
      return;
    }
    if (!this.complete) this.fail(new Http1Error(this.st === St.Head ? 'socket hang up' : 'the engine closed the connection before the end of its response', 'ECONNRESET'), true);
  }

  onError(e: Error): void {
    this.fail(e, false);
  }

  onClose(): void {
    clearTimeout(this.draining);
    if (!this.complete) this.fail(new Http1Error(this.st === St.Head ? 'socket hang up' : 'the connection closed before the end of the response', 'ECONNRESET'), false);
    this.detachSignal();
  }

  private fail(e: Error, destroy: boolean): void {
    this.taken();
    if (!this.err && !this.complete) {
      this.err = e;
      if (this.st === St.Head) this.headReject(e);
      this.poke();
    }
    this.detachSignal();
    if (destroy) {
      this.socket._x = undefined;
      this.socket.destroy();
    }
  }

  private detachSignal(): void {
    if (this.onAbort) this.signal!.removeEventListener('abort', this.onAbort);
  }

  /** The message was read to its end: the connection goes back to the pool when the reader is done with it. */
  private finish(): void {
    clearTimeout(this.draining);
    this.detachSignal();
    if (this.keepAlive && this.closed) this.pool.release(this.socket);
    else if (this.closed) {
      this.socket._x = undefined;
      this.socket.destroy();
    }
  }

  private poke(): void {
    const w = this.wake;
    if (w) {
      this.wake = null;
      w();
    }
    const p = this.piped;
    if (p && (this.err || this.complete)) {
      this.piped = undefined;
      if (this.err) p.reject(this.err);
      else p.resolve();
    }
  }

  private body(b: Buffer): void {
    if (b.length === 0 || this.closed) return;
    // (an exception of the sink breaks the exchange: parse's caller fails it)
    if (this.sink) {
      if (!this.err) this.sink(b);
      return;
    }
    // (a view of the shared read buffer: what waits for the reader is copied)
    this.q.push(Buffer.from(b));
    if (this.q.length >= HIGH_WATER) this.socket.pause();
    this.poke();
  }

  private done(): void {
    this.st = St.Done;
    this.complete = true;
    this.poke();
    if (this.closed) this.finish();
  }

  private parse(b: Buffer): void {
    let pos = 0;
    if (this.partial) {
      b = Buffer.concat([this.partial, b]);
      this.partial = undefined;
    }
    while (pos < b.length) {
      switch (this.st) {
        case St.Head: {
          const end = b.indexOf(HEAD_END, pos);
          if (end < 0) {
            if (b.length - pos > MAX_HEAD) throw new Http1ProtocolError('response head too large', 'HPE_HEADER_OVERFLOW');
            this.partial = Buffer.from(b.subarray(pos));
            return;
          }
          const informational = this.head(b.toString('latin1', pos, end));
          pos = end + 4;
          if (!informational) this.startBody();
          break;
        }
        case St.Chunk: {
          const nl = b.indexOf(CRLF, pos);
          if (nl < 0) {
            if (b.length - pos > 1024) throw new Http1ProtocolError('chunk size line too long', 'HPE_INVALID_CHUNK_SIZE');
            this.partial = Buffer.from(b.subarray(pos));
            return;
          }
          let size = 0, i = pos, digits = 0;
          for (; i < nl; i++) {
            const c = b[i]!;
            const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
            if (d < 0) break;
            size = size * 16 + d;
            digits++;
          }
          // after the digits only whitespace and chunk extensions (;name=value), which nobody here uses
          if (digits === 0 || digits > 12 || (i < nl && b[i] !== 59 && b[i] !== 32 && b[i] !== 9)) throw new Http1ProtocolError('invalid chunk size', 'HPE_INVALID_CHUNK_SIZE');
          pos = nl + 2;
          if (size === 0) this.st = St.Trailer;
          else {
            this.left = size;
            this.st = St.ChunkData;
          }
          break;
        }
        case St.ChunkData: {
          const n = Math.min(this.left, b.length - pos);
          this.body(b.subarray(pos, pos + n));
          pos += n;
          this.left -= n;
          if (this.left === 0) this.st = St.ChunkEnd;
          break;
        }
        case St.ChunkEnd: {
          if (b.length - pos < 2) {
            this.partial = Buffer.from(b.subarray(pos));
            return;
          }
          if (b[pos] !== 13 || b[pos + 1] !== 10) throw new Http1ProtocolError('chunk not followed by CRLF', 'HPE_STRICT');
          pos += 2;
          this.st = St.Chunk;
          break;
        }
        case St.Trailer: {
          // trailer fields (ignored) up to an empty line
          const nl = b.indexOf(CRLF, pos);
          if (nl < 0) {
            if (b.length - pos > MAX_HEAD) throw new Http1ProtocolError('trailer too large', 'HPE_HEADER_OVERFLOW');
            this.partial = Buffer.from(b.subarray(pos));
            return;
          }
          const empty = nl === pos;
          pos = nl + 2;
          if (empty) {
            if (pos < b.length) throw new Http1ProtocolError('bytes after the end of the response', 'HPE_UNEXPECTED_CONTENT');
            return this.done();
          }
          break;
        }
        case St.Length: {
          const n = Math.min(this.left, b.length - pos);
          this.body(b.subarray(pos, pos + n));
          pos += n;
          this.left -= n;
          if (this.left === 0) {
            if (pos < b.length) throw new Http1ProtocolError('bytes after the end of the response', 'HPE_UNEXPECTED_CONTENT');
            return this.done();
          }
          break;
        }
        case St.Close:
          this.body(pos === 0 ? b : b.subarray(pos));
          return;
        case St.Done:
          throw new Http1ProtocolError('bytes after the end of the response', 'HPE_UNEXPECTED_CONTENT');
      }
    }
  }

  /** Parses a head; true when it was an informational (1xx) one, to be skipped. */
  private head(text: string): boolean {
    if (lastHead?.text === text) {
      ({ status: this.status, headers: this.headers, keepAlive: this.keepAlive } = lastHead);
      return false;
    }
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]!);
    if (!m) throw new Http1ProtocolError(`not an HTTP/1.x response: ${JSON.stringify(lines[0]!.slice(0, 80))}`, 'HPE_INVALID_CONSTANT');
    const status = Number(m[2]);
    if (status >= 100 && status < 200 && status !== 101) return true;
    const h: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      const c = l.indexOf(':');
      if (c <= 0) throw new Http1ProtocolError('invalid header line', 'HPE_INVALID_HEADER_TOKEN');
      const k = l.slice(0, c).trim().toLowerCase();
      const v = l.slice(c + 1).trim();
      h[k] = h[k] === undefined ? v : `${h[k]}, ${v}`;
    }
    this.status = status;
    this.headers = Object.freeze(h);
    const conn = (h.connection ?? '').toLowerCase();
    this.keepAlive = m[1] === '1' ? !/\bclose\b/.test(conn) : /\bkeep-alive\b/.test(conn);
    lastHead = { text, status, headers: this.headers, keepAlive: this.keepAlive };
    return false;
  }

  private startBody(): void {
    const h = this.headers;
    const te = h['transfer-encoding'];
    if (this.status === 204 || this.status === 304) {
      this.headResolve();
      return this.done();
    }
    if (te !== undefined) {
      if (!/(?:^|,)\s*chunked\s*$/i.test(te)) {
        // another coding last: the body runs to the connection's close
        this.keepAlive = false;
        this.st = St.Close;
      } else this.st = St.Chunk;
    } else if (h['content-length'] !== undefined) {
      const n = Number(h['content-length']);
      if (!/^\d+$/.test(h['content-length']) || !Number.isSafeInteger(n)) throw new Http1ProtocolError('invalid Content-Length', 'HPE_INVALID_CONTENT_LENGTH');
      this.left = n;
      this.st = St.Length;
      this.headResolve();
      if (n === 0) this.done();
      return;
    } else {
      this.keepAlive = false;
      this.st = St.Close;
    }
    this.headResolve();
  }
}
