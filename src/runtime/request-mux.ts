/**
 * The Bus's request-reply over one reply subscription (`<inbox>.*`, as nats.js muxes its requests), without nats.js's
 * per-request objects: nats.js's `request` makes a request object, a deferred promise, a timeout promise with its
 * methods assigned onto it, and, answered, an Error (with its captured stack) to reject the settled promise with; a
 * short request through the gateway asks ~0.2 of them, and they were ~1.5% of the gateway's busy CPU
 * (docs/DATAPATH.md "The gateway's CPU per short request"). Here a request is one pending entry (its callbacks and
 * its timer) in a map by token, and its publication with that token's reply subject.
 *
 * The failures are the Bus's own errors: no reply within the deadline, TimeoutError; the server's no-responders
 * status (a 503 with no data on the reply subject), NoRespondersError; the connection closing, or a publish
 * permission violation on the request's subject (the server's word, through `failSubject`), ConnectionClosedError.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { ConnectionClosedError, NoRespondersError, TimeoutError } from './errors.ts';

interface Pending {
  subject: string;
  resolve(m: Msg): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class RequestMux {
  #prefix = '';
  #sub: Subscription | undefined;
  readonly #pending = new Map<string, Pending>();
  #next = 0;

  constructor(private readonly nc: NatsConnection, private readonly inboxPrefix?: string) {}

  /** Requests in flight (answered, timed out or failed ones are gone). */
  get size(): number {
    return this.#pending.size;
  }

  /** Publishes `data` to `subject` with a reply subject of this mux; resolves with the reply, rejects as the module comment says. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Msg> {
    if (this.#sub === undefined) {
      this.#prefix = `${createInbox(this.inboxPrefix)}.`;
      this.#sub = this.nc.subscribe(`${this.#prefix}*`, { callback: (err, m) => this.#reply(err, m) });
    }
    const token = (this.#next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(token)) reject(new TimeoutError(subject, timeoutMs));
      }, timeoutMs);
      this.#pending.set(token, { subject, resolve, reject, timer });
      try {
        this.nc.publish(subject, data, { reply: this.#prefix + token });
      } catch (err) {
        this.#settle(token)?.reject(err as Error);
      }
    });
  }

  /** Fails the requests in flight to `subject` (a publish permission violation the server reported on it). */
  failSubject(subject: string, why: string): void {
    for (const [token, p] of this.#pending) if (p.subject === subject) this.#settle(token)?.reject(new ConnectionClosedError(`request to ${subject} failed: ${why}`));
  }

  /** Fails every request in flight (the connection closing) and ends the reply subscription. */
  close(): void {
    for (const token of [...this.#pending.keys()]) {
      const p = this.#settle(token);
      p?.reject(new ConnectionClosedError(`request to ${p.subject}: connection closed`));
    }
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }

  #settle(token: string): Pending | undefined {
    const p = this.#pending.get(token);
    if (!p) return undefined;
    this.#pending.delete(token);
    clearTimeout(p.timer);
    return p;
  }

  #reply(err: Error | null, m: Msg): void {
    if (err) {
      // the reply subscription itself failed (its permission refused, the connection closing): nothing can answer
      for (const token of [...this.#pending.keys()]) {
        const p = this.#settle(token);
        p?.reject(new ConnectionClosedError(`request to ${p.subject} failed: ${err.message}`, err));
      }
      this.#sub = undefined;
      return;
    }
    const p = this.#settle(m.subject.slice(this.#prefix.length));
    if (!p) return; // answered late: its request timed out
    if (m.data.length === 0 && m.headers?.code === 503) p.reject(new NoRespondersError(p.subject));
    else p.resolve(m);
  }
}
