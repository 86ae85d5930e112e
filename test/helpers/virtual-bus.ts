/**
 * What the gateway's NatsBackend and GatewayRouter use of a Bus, in memory, on a ManualClock (test/unit/gateway-admission-clock.test.ts,
 * gateway-migration-correctness.test.ts).
 */
import { EventEmitter } from 'node:events';
import type { ManualClock } from '../../src/runtime/clock.ts';
import { CancelledError, ConnectionClosedError, NoRespondersError, TimeoutError } from '../../src/runtime/errors.ts';
import type { Codec } from '../../protocols/codec.ts';

/** NATS subject matching: `*` one token, `>` the rest. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

export type Responder = (msg: unknown, reply: (r: unknown) => void) => void;

/**
 * What the backend uses of a Bus, in memory: publish/subscribe with NATS wildcards, request-reply with the
 * Bus's errors (no responders, a timeout at the deadline on the ManualClock, a cancel, a closed connection), and
 * the connection state a test flips (its 'status' events, as the Bus's, are the test's to emit). Every message goes through its codec both ways (validated as on the wire).
 */
export class VirtualBus extends EventEmitter {
  connected = true;
  closed = false;
  readonly #subs = new Set<{ pattern: string; codec: Codec<unknown>; handler: (m: unknown, s: string) => void }>();
  readonly responders = new Map<string, Responder>();
  /** every request sent: subject, virtual time, the request's id. */
  readonly sent: { subject: string; atMs: number; id?: string }[] = [];
  constructor(private readonly clock: ManualClock) {
    super();
  }

  /** the pattern of each subscription held now. */
  get subscribed(): string[] {
    return [...this.#subs].map((s) => s.pattern);
  }

  subscribe<T>(pattern: string, codec: Codec<T>, handler: (m: T, s: string) => void): { unsubscribe(): void } {
    const s = { pattern, codec: codec as Codec<unknown>, handler: handler as (m: unknown, s: string) => void };
    this.#subs.add(s);
    return { unsubscribe: () => void this.#subs.delete(s) };
  }

  publish<T>(subject: string, codec: Codec<T>, msg: T): void {
    if (!this.connected) throw new ConnectionClosedError(`publish to ${subject}: disconnected`);
    const bytes = codec.encode(msg);
    for (const s of [...this.#subs]) if (matches(s.pattern, subject)) s.handler(s.codec.decode(bytes, subject), subject);
  }

  request<Q, R>(subject: string, reqCodec: Codec<Q>, msg: Q, resCodec: Codec<R>, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<R> {
    if (!this.connected) return Promise.reject(new ConnectionClosedError(`request to ${subject}: disconnected`));
    const m = reqCodec.decode(reqCodec.encode(msg), subject);
    this.sent.push({ subject, atMs: this.clock.now(), id: (m as { id?: string }).id });
    const responder = this.responders.get(subject);
    if (!responder) return Promise.reject(new NoRespondersError(subject));
    return new Promise<R>((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(t);
        opts.signal?.removeEventListener('abort', onAbort);
        f();
      };
      const onAbort = () => settle(() => reject(new CancelledError(`request to ${subject} cancelled`)));
      const t = this.clock.setTimeout(() => settle(() => reject(new TimeoutError(subject, opts.timeoutMs))), opts.timeoutMs);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      responder(m, (r) => settle(() => resolve(resCodec.decode(resCodec.encode(r as R), subject))));
    });
  }
}
