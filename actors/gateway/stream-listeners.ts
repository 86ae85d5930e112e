/**
 * The stream subjects of the legs a gateway holds, read through one subscription to every stream subject
 * (subjects.streamAll, made on first use) and handed out by leg id: no SUB and UNSUB at nats-server per request.
 * On the direct data path a stream subject carries only what the control plane says out of turn (an error, a
 * moved request's grant; a request started with its admission has its grant in the admission reply). The NATS
 * relay (`shared: false`) keeps a subscription per leg: its tokens go only to the gateway reading them.
 */
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import { subjects } from '../../protocols/subjects.ts';
import { TokenChunk } from '../../protocols/messages.ts';

export class StreamListeners {
  readonly #legs = new Map<string, (c: TokenChunk) => void>();
  #sub: SubscribeHandle | undefined;

  constructor(private readonly bus: Bus, private readonly shared: boolean, private readonly capacity: number) {}

  /** `onChunk` gets the chunks of leg `id` (on `subject`) until the handle is unsubscribed. */
  listen(subject: string, id: string, onChunk: (c: TokenChunk) => void): { unsubscribe(): void } {
    if (!this.shared) return this.bus.subscribe(subject, TokenChunk, onChunk, { capacity: this.capacity });
    this.#sub ??= this.bus.subscribe(subjects.streamAll(), TokenChunk, (c) => this.#legs.get(c.id)?.(c), {
      capacity: 1 << 16, expectSubject: (c) => subjects.stream(c.id),
    });
    this.#legs.set(id, onChunk);
    return {
      unsubscribe: () => {
        if (this.#legs.get(id) === onChunk) this.#legs.delete(id);
      },
    };
  }

  close(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }
}
