/**
 * A streaming client's flow control (docs/DATAPATH.md "A slow client"): a client that reads slower than its engine
 * writes makes the gateway stop reading that stream's engine, not hold the generation in memory. Past
 * CLIENT_HOLD_BYTES unsent on the client's response, the stream's engine reads stop (pushed: the engine connection
 * paused, src/engine/client.ts ReaderFlow; pulled: the next batch is not asked for) until the client's socket
 * drains, as uvicorn's send waits for its transport's drain. A client that takes nothing of what it holds for
 * `stallMs` is disconnected: the request is cancelled as for a client that went away, freeing its engine.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ReaderFlow } from '../../src/engine/client.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';

/**
 * Bytes a client's response may hold unsent (Node's queue and its socket's) before its engine's reads stop: four of
 * the SSE writer's largest writes (SSE_COALESCE_MAX_BYTES), a few hundred tokens' events; 1024 streams in flight
 * hold at most 256 MiB for their clients.
 */
export const CLIENT_HOLD_BYTES = 256 * 1024;

/** Default of gateway.clientStallMs: a blocked client that reads nothing for this long is disconnected, ms. */
export const DEFAULT_CLIENT_STALL_MS = 30_000;

export class ClientFlow implements ReaderFlow {
  private waiters: (() => void)[] = [];
  private sock: Socket | undefined;
  private watch: unknown;
  /** the bytes held at the watch's last look. */
  private seen = 0;
  /** the client was disconnected for reading nothing for stallMs. */
  cut = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly stallMs = DEFAULT_CLIENT_STALL_MS,
    private readonly clock: Clock = systemClock,
    private readonly holdBytes = CLIENT_HOLD_BYTES,
  ) {}

  /** the client holds holdBytes or more unsent: the stream's reads wait for its drain (onDrain, drained). */
  blocked(): boolean {
    if (this.res.writableLength < this.holdBytes || this.res.destroyed) return false;
    this.listen();
    return this.sock !== undefined;
  }

  /** `fn` once the client's socket drained (or closed). */
  onDrain(fn: () => void): void {
    if (!this.listen()) return fn();
    this.waiters.push(fn);
  }

  drained(): Promise<void> {
    return new Promise<void>((r) => this.onDrain(r));
  }

  /** the stream is over: no watch, no listener; a waiter left is called. */
  close(): void {
    this.release();
  }

  private listen(): boolean {
    if (this.sock) return true;
    const s = this.res.socket;
    if (!s || s.destroyed) return false;
    this.sock = s;
    s.on('drain', this.release);
    s.on('close', this.release);
    this.seen = this.res.writableLength;
    this.watch = this.clock.setTimeout(this.check, this.stallMs);
    return true;
  }

  private readonly check = (): void => {
    const n = this.res.writableLength;
    if (n === 0) return this.release();
    if (n < this.seen) {
      this.seen = n;
      this.watch = this.clock.setTimeout(this.check, this.stallMs);
      return;
    }
    // nothing taken for stallMs: the client is gone in all but name (its 'close' cancels the request)
    this.cut = true;
    this.sock?.destroy();
    this.release();
  };

  private readonly release = (): void => {
    if (this.watch !== undefined) this.clock.clearTimeout(this.watch);
    this.watch = undefined;
    const s = this.sock;
    this.sock = undefined;
    s?.off('drain', this.release);
    s?.off('close', this.release);
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  };
}
