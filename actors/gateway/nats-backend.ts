/**
 * The gateway's backend over NATS: subscribe to the request's token stream FIRST (so no chunk can be
 * missed), then ask cluster intake (request-reply with a deadline) to admit it; a refusal becomes a typed
 * DynError (mapped to 429/503 by the HTTP layer). Chunks flow through a bounded queue; a stream silent for
 * `chunkTimeoutMs` ends with an explicit retryable error; aborting the signal publishes a Cancel.
 */
import type { Bus } from '../../src/runtime/bus.ts';
import { DynError, RemoteError } from '../../protocols/errors.ts';
import { subjects } from '../../protocols/subjects.ts';
import { Admission, Cancel, DetokenizeReply, DetokenizeRequest, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { GatewayBackend } from './server.ts';

export interface NatsBackendOptions {
  /** deadline of the intake request (classification + dispatch + instance admission), ms. Default 10000. */
  admitTimeoutMs?: number;
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

export class NatsBackend implements GatewayBackend {
  private readonly admitTimeoutMs: number;
  private readonly chunkTimeoutMs: number;
  private readonly capacity: number;
  private readonly tokenizeTimeoutMs: number;

  constructor(
    private readonly bus: Bus,
    opts: NatsBackendOptions = {},
  ) {
    this.admitTimeoutMs = opts.admitTimeoutMs ?? 10_000;
    this.chunkTimeoutMs = opts.chunkTimeoutMs ?? 60_000;
    this.capacity = opts.streamCapacity ?? 8192;
    this.tokenizeTimeoutMs = opts.tokenizeTimeoutMs ?? 5000;
  }

  /** Any instance's engine tokenizer (queue group): vLLM's /tokenize. */
  tokenize(req: TokenizeRequest): Promise<TokenizeReply> {
    return this.bus.request(subjects.tokenize(), TokenizeRequest, req, TokenizeReply, { timeoutMs: this.tokenizeTimeoutMs });
  }

  detokenize(req: DetokenizeRequest): Promise<DetokenizeReply> {
    return this.bus.request(subjects.detokenize(), DetokenizeRequest, req, DetokenizeReply, { timeoutMs: this.tokenizeTimeoutMs });
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

  async submit(req: InferenceRequest, signal: AbortSignal): Promise<AsyncIterable<TokenChunk>> {
    const subject = subjects.stream(req.id);
    const msg: InferenceRequest = { ...req, streamSubject: subject };
    const q = new ChunkQueue(this.capacity);
    const seen = new Set<number>();
    const sub = this.bus.subscribe(
      subject,
      TokenChunk,
      (c) => {
        // a request moved between instances may repeat a seq; the first copy wins
        if (seen.has(c.seq)) return;
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
      adm = await this.bus.request(subjects.clusterIntake(), InferenceRequest, msg, Admission, { timeoutMs: this.admitTimeoutMs, signal });
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
    return stream();
  }
}
