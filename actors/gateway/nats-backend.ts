/**
 * The gateway's backend over NATS: subscribe to the request's token stream FIRST (so no chunk can be
 * missed), then ask cluster intake (request-reply with a deadline) to admit it; a refusal becomes a typed
 * DynError (mapped to 429/503 by the HTTP layer). Chunks flow through a bounded queue; a stream silent for
 * `chunkTimeoutMs` ends with an explicit retryable error; aborting the signal publishes a Cancel.
 *
 * Admission is retried, not timed out: every hop (cluster intake, pool dispatch, instance admit) is
 * idempotent by request id (a duplicate joins the admission in flight or gets its answer), so an attempt
 * that hit a dead manager (no reply within `admitAttemptMs`, no responders, a dropped connection, the
 * cluster saying `unavailable`) is sent again with the same id until `admitTimeoutMs` has passed. While
 * NATS is reconnecting, new requests wait for the connection inside that same budget.
 */
import type { Bus } from '../../src/runtime/bus.ts';
import { DynError, RemoteError } from '../../protocols/errors.ts';
import { subjects } from '../../protocols/subjects.ts';
import { Admission, Cancel, DetokenizeReply, DetokenizeRequest, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { GatewayBackend } from './server.ts';

export interface NatsBackendOptions {
  /** the whole admission's budget (classification + dispatch + instance admission, retries included), ms. Default 10000. */
  admitTimeoutMs?: number;
  /** deadline of one intake attempt before it is sent again (same request id), ms. Default 3000. */
  admitAttemptMs?: number;
  /** the longest silence between two chunks (and before the first) before the request fails, ms. Default 60000. */
  chunkTimeoutMs?: number;
  /** chunks buffered per request before the stream fails as too slow a reader, count. Default 8192. */
  streamCapacity?: number;
  /** deadline of a tokenize/detokenize request to an instance, ms. Default 5000. */
  tokenizeTimeoutMs?: number;
}

/** A bounded single-consumer queue of chunks with an end/failure. */
class ChunkQueue {
  private readonly items: TokenChunk[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  failure: DynError | null = null;
  constructor(private readonly capacity: number) {}
  push(c: TokenChunk): void {
    if (this.ended) return;
    if (this.items.length >= this.capacity) {
      this.fail(new DynError('mailbox_full', `token stream buffer full (${this.capacity} chunks)`, { retryable: true }));
      return;
    }
    this.items.push(c);
    this.wake();
  }
  fail(e: DynError): void {
    if (this.ended) return;
    this.failure = e;
    this.ended = true;
    this.wake();
  }
  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
  /** Next chunk, null at the end; rejects with the failure, or a timeout after idleMs of silence. */
  async next(idleMs: number): Promise<TokenChunk | null> {
    for (;;) {
      if (this.items.length) return this.items.shift()!;
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      let t: NodeJS.Timeout | undefined;
      const timedOut = await new Promise<boolean>((resolve) => {
        this.waiter = () => resolve(false);
        t = setTimeout(() => resolve(true), idleMs);
      });
      clearTimeout(t);
      if (timedOut && this.items.length === 0 && !this.ended) {
        throw new DynError('timeout', `no token for ${idleMs} ms: the instance serving this request stopped answering`, { retryable: true, retryAfterS: 1 });
      }
    }
  }
}

/** The token stream of an admitted request, with the admission the cluster granted (pool, instance). */
export type AdmittedStream = AsyncIterable<TokenChunk> & { readonly admission: Admission };

/** What the cluster or the connection answered that another attempt (same id) can fix: a dead or moving manager. */
function retryableAdmission(code: string | undefined): boolean {
  return code === 'timeout' || code === 'no_responders' || code === 'unavailable';
}

/** Counters of the admission path (the gateway's metrics and the chaos harness read them). */
export interface AdmissionCounters {
  /** intake attempts sent again after one hit a dead manager or a dropped connection. */
  retries: number;
  /** requests that waited for NATS to reconnect before their first attempt. */
  heldForReconnect: number;
  /** terminal chunks accepted although their seq had been seen (a stream ended by someone else than its instance). */
  foreignTerminals: number;
}

export class NatsBackend implements GatewayBackend {
  readonly counters: AdmissionCounters = { retries: 0, heldForReconnect: 0, foreignTerminals: 0 };
  private readonly admitTimeoutMs: number;
  private readonly admitAttemptMs: number;
  private readonly chunkTimeoutMs: number;
  private readonly capacity: number;
  private readonly tokenizeTimeoutMs: number;

  constructor(
    private readonly bus: Bus,
    opts: NatsBackendOptions = {},
  ) {
    this.admitTimeoutMs = opts.admitTimeoutMs ?? 10_000;
    this.admitAttemptMs = Math.min(opts.admitAttemptMs ?? 3000, this.admitTimeoutMs);
    this.chunkTimeoutMs = opts.chunkTimeoutMs ?? 60_000;
    this.capacity = opts.streamCapacity ?? 8192;
    this.tokenizeTimeoutMs = opts.tokenizeTimeoutMs ?? 5000;
  }

  /** Any instance's engine tokenizer (queue group): vLLM's /tokenize. Held and retried like admission (it is idempotent). */
  tokenize(req: TokenizeRequest): Promise<TokenizeReply> {
    return this.retrying(Date.now() + this.tokenizeTimeoutMs, Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), undefined, (timeoutMs) =>
      this.bus.request(subjects.tokenize(), TokenizeRequest, req, TokenizeReply, { timeoutMs }));
  }

  detokenize(req: DetokenizeRequest): Promise<DetokenizeReply> {
    return this.retrying(Date.now() + this.tokenizeTimeoutMs, Math.min(this.admitAttemptMs, this.tokenizeTimeoutMs), undefined, (timeoutMs) =>
      this.bus.request(subjects.detokenize(), DetokenizeRequest, req, DetokenizeReply, { timeoutMs }));
  }

  ready(): boolean {
    return !this.bus.closed;
  }

  private cancel(id: string, reason: string, sent?: { done: boolean }): void {
    if (sent) {
      if (sent.done) return;
      sent.done = true;
    }
    try {
      this.bus.publish(subjects.cancel(id), Cancel, { v: 1, id, reason: reason.slice(0, 512) });
    } catch {
      // connection gone: the instance will notice the deadline instead
    }
  }

  /** Resolves once NATS is connected (at once when it is), false when `ms` passed first or the bus closed. */
  private waitConnected(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.bus.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearInterval(t);
        clearTimeout(to);
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onAbort = () => done(false);
      // the Bus flips `connected` on the client's reconnect status; poll it (a few requests at most wait here)
      const t = setInterval(() => {
        if (this.bus.connected) done(true);
        else if (this.bus.closed) done(false);
      }, 25);
      const to = setTimeout(() => done(this.bus.connected), Math.max(0, ms));
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * One request-reply, sent again (after a short backoff) while it fails in a way another attempt can fix:
   * no reply within `attemptMs`, no responders, a dropped connection (it first waits for the reconnect), or
   * a reply `again(reply)` says is worth another attempt; until `untilMs`. The last failure is thrown, or
   * the last reply returned, when the budget is spent. The callee must be idempotent.
   */
  private async retrying<R>(untilMs: number, attemptMs: number, signal: AbortSignal | undefined, send: (timeoutMs: number) => Promise<R>, again: (r: R) => boolean = () => false): Promise<R> {
    const never = new AbortController().signal;
    let wait = 50;
    for (let attempt = 0; ; attempt++) {
      if (!this.bus.connected) {
        if (attempt === 0) this.counters.heldForReconnect++;
        if (!(await this.waitConnected(untilMs - Date.now(), signal ?? never))) {
          if (signal?.aborted) throw new DynError('cancelled', 'client disconnected', { retryable: false });
          throw new DynError('unavailable', 'the gateway lost its connection to the cluster and it did not come back in time', { retryable: true, retryAfterS: 1 });
        }
      }
      try {
        const r = await send(Math.max(1, Math.min(attemptMs, untilMs - Date.now())));
        if (!again(r) || Date.now() + wait >= untilMs) return r;
      } catch (err) {
        const e = err as DynError;
        const fixable = e instanceof DynError && (retryableAdmission(e.code) || !this.bus.connected);
        if (signal?.aborted || !fixable || Date.now() + wait >= untilMs) throw err;
      }
      this.counters.retries++;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(500, wait * 2);
    }
  }

  /**
   * The cluster's admission of `msg`, retried with the same id inside admitTimeoutMs (see the module
   * comment). A refusal that retrying cannot fix (overloaded, rejected, invalid) is returned as it came.
   */
  private admit(msg: InferenceRequest, signal: AbortSignal): Promise<Admission> {
    const until = Math.min(Date.now() + this.admitTimeoutMs, msg.giveUpAtMs);
    return this.retrying(
      until, this.admitAttemptMs, signal,
      (timeoutMs) => this.bus.request(subjects.clusterIntake(), InferenceRequest, msg, Admission, { timeoutMs, signal }),
      (a) => !a.ok && retryableAdmission(a.error?.code) && a.error?.retryable !== false,
    );
  }

  async submit(req: InferenceRequest, signal: AbortSignal): Promise<AdmittedStream> {
    const subject = subjects.stream(req.id);
    const msg: InferenceRequest = { ...req, streamSubject: subject };
    const q = new ChunkQueue(this.capacity);
    const seen = new Set<number>();
    const sub = this.bus.subscribe(
      subject,
      TokenChunk,
      (c) => {
        // a request moved between instances may repeat a seq; the first copy wins. A terminal chunk (done or
        // error) ends the stream whoever sends it: the pool leader ending a dead instance's stream numbers it
        // from that instance's last status, which may be a seq the gateway already has
        if (seen.has(c.seq)) {
          if (!(c.done || c.error)) return;
          this.counters.foreignTerminals++;
        }
        seen.add(c.seq);
        q.push(c);
      },
      { capacity: this.capacity },
    );
    let admitted = false;
    const cancelSent = { done: false };
    const onAbort = () => {
      q.fail(new DynError('cancelled', 'client disconnected', { retryable: false }));
      if (admitted) this.cancel(req.id, 'client disconnected', cancelSent);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let adm: Admission;
    try {
      adm = await this.admit(msg, signal);
    } catch (err) {
      signal.removeEventListener('abort', onAbort);
      sub.unsubscribe();
      // the intake may have admitted it before the deadline: make sure nobody works on it for nothing
      if ((err as DynError).code === 'timeout' || signal.aborted) this.cancel(req.id, 'admission not confirmed');
      throw err;
    }
    if (!adm.ok) {
      signal.removeEventListener('abort', onAbort);
      sub.unsubscribe();
      const e = adm.error ?? { code: 'rejected' as const, message: 'request refused', retryable: true };
      // the cluster's refusal: its words may name pools or instances, so the HTTP layer answers in its own
      throw new RemoteError(e);
    }
    admitted = true;
    const idleMs = this.chunkTimeoutMs;
    // an async generator cannot be an arrow function, so it reaches the backend through a name
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    async function* stream(): AsyncGenerator<TokenChunk> {
      let finished = false;
      try {
        for (;;) {
          const c = await q.next(idleMs);
          if (!c) return;
          yield c;
          if (c.done || c.error) {
            finished = true;
            return;
          }
        }
      } finally {
        signal.removeEventListener('abort', onAbort);
        sub.unsubscribe();
        if (!finished) self.cancel(req.id, signal.aborted ? 'client disconnected' : 'gateway stopped reading', cancelSent);
      }
    }
    return Object.assign(stream(), { admission: adm });
  }
}
