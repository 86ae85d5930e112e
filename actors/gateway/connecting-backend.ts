/**
 * The gateway's backend from the bind of its port to its first NATS connection (docs/DATAPATH.md "Gateway start and
 * standby"). A gateway binds its port before it dials NATS, so a process started while every NATS server is down
 * (restarted by its supervisor during an outage) holds its clients' requests instead of refusing their connections,
 * as a running gateway holds new requests during a reconnect. Each call to the cluster (a prompt's count, an
 * admission, a resume and its journal's read) waits here for the NatsBackend the actor makes once connected (`attach`), then goes to it:
 * - at most `capacity` calls wait at once (gateway.maxInflight); past it the call is refused at once with a
 *   retryable `overloaded` (429, Retry-After: 1);
 * - each waits at most `holdMs` (gateway.holdLimitMs). A request's own hold limit, counted from its arrival, runs out
 *   first and answers it with the gateway's retryable 503 (`server.ts` HoldLimit), its abort ending its wait here;
 *   a call without one (`/tokenize`) gets a retryable 503 `unavailable` from this bound;
 * - a start that fails or is stopped (`fail`) refuses every waiting call with the retryable error it is given.
 * Once attached, every call goes straight to the NatsBackend (no wait, no extra promise).
 */
import type { Clock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';
import type { DetokenizeReply, DetokenizeRequest, InferenceRequest, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { TokenSource } from './choices.ts';
import type { ResumeFrom, StreamHooks } from './resume.ts';
import type { GatewayBackend } from './server-options.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/** The backend a connected gateway serves with (NatsBackend): every optional call of GatewayBackend present. */
export type ConnectedBackend = Required<Pick<GatewayBackend, 'resume' | 'ready' | 'tokenize' | 'detokenize'>> & GatewayBackend;

interface Waiter {
  resolve(b: ConnectedBackend): void;
  reject(e: Error): void;
}

export class ConnectingBackend implements GatewayBackend {
  #backend: ConnectedBackend | undefined;
  #failure: Error | undefined;
  readonly #waiting = new Set<Waiter>();
  /** calls that waited for the first connection (dynamollm_gateway_held_for_first_connect_total). */
  held = 0;

  constructor(private readonly o: { clock: Clock; holdMs: number; capacity: number }) {}

  /** Calls waiting now. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** The connected backend: every waiting call goes to it, and every later one at once. */
  attach(backend: ConnectedBackend): void {
    if (this.#backend || this.#failure) return;
    this.#backend = backend;
    for (const w of this.#waiting) w.resolve(backend);
    this.#waiting.clear();
  }

  /** No connection will come (the start failed, the actor stops): every waiting and later call is refused with `err`. Ignored once attached. Returns how many waiting calls it refused. */
  fail(err: Error): number {
    if (this.#backend || this.#failure) return 0;
    this.#failure = err;
    const refused = this.#waiting.size;
    for (const w of this.#waiting) w.reject(err);
    this.#waiting.clear();
    return refused;
  }

  submit(req: InferenceRequest, signal: AbortLike, hooks?: StreamHooks): Promise<TokenSource> {
    if (this.#backend) return this.#backend.submit(req, signal, hooks);
    return this.#connected(signal).then((b) => b.submit(req, signal, hooks));
  }

  resume(req: InferenceRequest, from: ResumeFrom, signal: AbortLike, hooks?: StreamHooks): Promise<TokenSource> {
    if (this.#backend) return this.#backend.resume(req, from, signal, hooks);
    return this.#connected(signal).then((b) => b.resume(req, from, signal, hooks));
  }

  tokenize(req: TokenizeRequest): Promise<TokenizeReply> {
    if (this.#backend) return this.#backend.tokenize(req);
    return this.#connected().then((b) => b.tokenize(req));
  }

  detokenize(req: DetokenizeRequest): Promise<DetokenizeReply> {
    if (this.#backend) return this.#backend.detokenize(req);
    return this.#connected().then((b) => b.detokenize(req));
  }

  /** `f` once connected (at once when it is), held as a call to the backend is: the resume journal's read. */
  whenConnected<T>(f: () => Promise<T>, signal?: AbortLike): Promise<T> {
    if (this.#backend) return f();
    return this.#connected(signal).then(() => f());
  }

  /** false until connected (GET /healthz answers 503 while requests are held). */
  ready(): boolean {
    return this.#backend?.ready() ?? false;
  }

  /** Resolves with the connected backend once attached; rejects past holdMs, on `signal`'s abort, on fail(), or at once when `capacity` calls wait. */
  #connected(signal?: AbortLike): Promise<ConnectedBackend> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#waiting.size >= this.o.capacity) {
      return Promise.reject(new DynError('overloaded', `the gateway holds ${this.o.capacity} requests until it reaches the cluster: retry`, { retryable: true, retryAfterS: 1 }));
    }
    this.held++;
    return new Promise<ConnectedBackend>((resolve, reject) => {
      const done = () => {
        this.#waiting.delete(w);
        this.o.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const w: Waiter = {
        resolve: (b) => (done(), resolve(b)),
        reject: (e) => (done(), reject(e)),
      };
      const onAbort = () => w.reject(abortError(signal!));
      const timer = this.o.clock.setTimeout(() => w.reject(new DynError('unavailable',
        `the gateway did not reach the cluster within its hold limit (${Math.round(this.o.holdMs / 1000)} s) of its start: retry`,
        { retryable: true, retryAfterS: 1 })), this.o.holdMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.add(w);
    });
  }
}

/** The abort's reason when it is an Error (the hold limit's DynError), else a non-retryable `cancelled`. */
function abortError(signal: AbortLike): Error {
  return signal.reason instanceof Error ? signal.reason : new DynError('cancelled', 'client disconnected', { retryable: false });
}
