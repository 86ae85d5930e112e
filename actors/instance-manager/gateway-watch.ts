/**
 * The gateway processes an instance grants direct legs to, as their heartbeats show them (subjects.heartbeatsOf
 * ('gateway')). A direct leg is streamed by one gateway process from the engine; the instance counts its seat until
 * that gateway reports the leg's end. A gateway that dies never reports it, and its client may never resume the
 * stream elsewhere, so the seat would stay taken until the request's give-up time (10 min by default). Here a leg
 * whose gateway process (LegReport.gateway: id and startedMs; two processes of one replica, a serving one and its
 * standby, beat under the same id) has not beaten for GONE_AFTER_MS, plus `timeouts.resumeGraceMs` for a resume
 * on another gateway (which ends the leg itself), is ended. Only a process seen beating counts as gone when it goes
 * silent: one never heard of (no heartbeat read yet, or none allowed) keeps the give-up time as its bound. The silence
 * this instance manager hears while its own NATS link is down is its own: no leg ends meanwhile, and back, every
 * gateway's silence counts from the link's return (the outage added to its last beat), as the router's linkDown rule.
 */
import { DynError, Heartbeat, subjects } from '../../protocols/index.ts';
import type { LegReport } from '../../protocols/messages.ts';
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import { creditStall, timerStallMs } from '../../src/policy/timer-stall.ts';

/** a gateway process silent this long is gone: three of its heartbeats (one a second) missed, ms. */
export const GONE_AFTER_MS = 3000;
/** how often the legs are checked, ms. */
const CHECK_MS = 500;
/** a process silent this long (and streaming no leg here) is forgotten, ms. */
const FORGET_MS = 10 * 60_000;

type GatewayProcess = NonNullable<LegReport['gateway']>;

/** Whether a leg's gateway process, last heard at `lastBeatMs` (undefined: never), is gone past the grace at `now`. */
export function gatewayGone(lastBeatMs: number | undefined, now: number, graceMs: number): boolean {
  return lastBeatMs !== undefined && now - lastBeatMs > GONE_AFTER_MS + graceMs;
}

export class GatewayWatch {
  /** last heartbeat of each gateway process (`id@startedMs`), on this clock. */
  readonly #beats = new Map<string, number>();
  readonly #legs = new Map<number, { key: string; onGone: () => void }>();
  #next = 0;
  #timer: unknown;
  /** when the next check is due (start's interval), on this clock; undefined: checks are called by hand. */
  #dueMs: number | undefined;
  #sub?: SubscribeHandle;
  /** when this process's link went down (the bus's disconnect), until its reconnect. */
  #downMs: number | undefined;
  #onStatus?: (s: { type: string }) => void;

  constructor(private readonly clock: Clock, private readonly graceMs: number) {}

  start(bus: Bus): void {
    this.#sub = bus.subscribe(subjects.heartbeatsOf('gateway'), Heartbeat, (hb) => this.observe(hb), { capacity: 1024, expectSubject: (hb) => subjects.heartbeat(hb.kind, hb.id) });
    this.#dueMs = this.clock.now() + CHECK_MS;
    this.#timer = this.clock.setInterval(() => this.check(), CHECK_MS);
    this.#onStatus = (s) => {
      if (s.type === 'disconnect' || s.type === 'staleConnection') this.link(false);
      else if (s.type === 'reconnect') this.link(true);
    };
    bus.on('status', this.#onStatus);
    this.#bus = bus;
  }

  #bus?: Bus;

  /** This process's own link went down (false) or came back (true): the outage is nobody's silence but its own. */
  link(up: boolean): void {
    const now = this.clock.now();
    if (!up) {
      this.#downMs ??= now;
      return;
    }
    if (this.#downMs === undefined) return;
    const outage = now - this.#downMs;
    this.#downMs = undefined;
    for (const [key, at] of this.#beats) this.#beats.set(key, creditStall(at, outage));
  }

  stop(): void {
    this.#sub?.unsubscribe();
    if (this.#onStatus) this.#bus?.off('status', this.#onStatus);
    if (this.#timer !== undefined) this.clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  observe(hb: Heartbeat): void {
    if (hb.kind === 'gateway') this.#beats.set(`${hb.id}@${hb.startedMs}`, this.clock.now());
  }

  /** Calls `onGone` once `gateway` is gone past the grace (see the module comment); returns the unwatch. */
  watch(gateway: GatewayProcess, onGone: () => void): () => void {
    const k = this.#next++;
    this.#legs.set(k, { key: `${gateway.id}@${gateway.startedMs}`, onGone });
    return () => void this.#legs.delete(k);
  }

  check(): void {
    const now = this.clock.now();
    // a check that runs late ran after this process was stopped (src/policy/timer-stall.ts): the heartbeats of the
    // stall wait unread in its socket, so the stall is not the gateways' silence
    const stall = this.#dueMs === undefined ? 0 : timerStallMs(this.#dueMs, now);
    if (this.#dueMs !== undefined) this.#dueMs = now + CHECK_MS;
    if (stall > 0) for (const [key, at] of this.#beats) this.#beats.set(key, creditStall(at, stall));
    if (this.#downMs !== undefined) return; // cut off: no gateway is heard, none is judged
    for (const [k, leg] of this.#legs) {
      if (!gatewayGone(this.#beats.get(leg.key), now, this.graceMs)) continue;
      this.#legs.delete(k);
      leg.onGone();
    }
    if (this.#beats.size > 256) for (const [key, at] of this.#beats) if (now - at > FORGET_MS) this.#beats.delete(key);
  }
}

/** A direct leg (its abort, and where its unwatch is kept) ends once `gateway`, the process streaming it, is gone past the grace. */
export function watchLeg(w: GatewayWatch, leg: { ac: { abort(reason?: unknown): void }; unwatchGateway?: () => void } | undefined, gateway: GatewayProcess | undefined): void {
  if (!leg || !gateway || leg.unwatchGateway) return;
  leg.unwatchGateway = w.watch(gateway, () => leg.ac.abort(new DynError('timeout', 'the gateway streaming this request is gone and no resume ended it', { retryable: true })));
}
