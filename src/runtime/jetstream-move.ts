/**
 * Moving a NATS connection off a server without JetStream (Bus.jetstreamFailed). A clustered nats-server takes
 * client connections again as soon as it restarts, and its JetStream API answers nobody until it has caught up
 * ("jetstream is not enabled": no responders), for seconds (measured: up to 4.2 s on an idle 3-server cluster,
 * 4-7 s in `dynamollm chaos` on a loaded 2-core VM). An actor whose connection landed there could neither renew
 * nor take a lease, nor read or write the KV, while the other servers served JetStream: it moves to another server
 * of the cluster instead (a forced reconnect), at most once per `minGapMs`. Likewise when a JetStream call went
 * unanswered and the connection's server does not answer a ping either (a frozen or dying server: nats.js's own
 * ping-out takes ~3 s to see it).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import type { ReconnectSteering } from './nats-dial.ts';
import { within } from './clock.ts';

export class JetStreamMover {
  /** moves made (the bus's counters read it). */
  moves = 0;
  #movedMs = -Infinity;

  /** `steering`: the reconnect then leaves this server (nats.js's own loop dials the server it left first). */
  constructor(private readonly nc: NatsConnection, private readonly servers: readonly string[], private readonly log: Logger, private readonly steering?: ReconnectSteering, private readonly minGapMs = 2000) {}

  /** `err` from a JetStream call: moves when it says this server has no JetStream and another server is known. True when it moves. */
  failed(err: unknown, connected: boolean): boolean {
    if ((err as Error | undefined)?.name !== 'JetStreamNotEnabled' || !connected) return false;
    return this.#move('this NATS server has no JetStream (yet): moving to another');
  }

  /**
   * A JetStream call got no answer in time: pings this connection's server (a flush, within `ms`); one that does not
   * answer either is left for another server of the cluster. True when it moves.
   */
  async unanswered(ms: number, connected: () => boolean): Promise<boolean> {
    if (!connected()) return false;
    const answered = await within(this.nc.flush(), ms, `PING ${this.nc.getServer()}`).then(() => true, () => false);
    if (answered || !connected()) return false;
    return this.#move(`this NATS server answers no ping within ${ms} ms: moving to another`);
  }

  #move(why: string): boolean {
    const others = new Set([...this.servers, ...(this.nc.info?.connect_urls ?? [])]).size > 1;
    const now = Date.now();
    if (!others || now - this.#movedMs < this.minGapMs) return false;
    this.#movedMs = now;
    this.moves++;
    this.log.warn({ server: this.nc.getServer() }, why);
    this.steering?.leave(this.nc.getServer());
    this.nc.reconnect().catch(() => {});
    return true;
  }
}
