/**
 * Heartbeats: each actor publishes protocols' Heartbeat on subjects.heartbeat(kind, id) every `periodMs`
 * (default 1000 ms) with its lifecycle state and a load summary. Peers track them (liveness.ts).
 */
import { Heartbeat, subjects, type ActorKind } from '../../protocols/index.ts';
import type { Bus } from './bus.ts';
import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import type { LifecycleState } from './lifecycle.ts';

export interface LoadSummary {
  queued: number;
  running: number;
  mailbox?: number;
  rps?: number;
}

export interface HeartbeaterOptions {
  bus: Bus;
  kind: ActorKind;
  id: string;
  /** ms between beats. Default 1000. */
  periodMs?: number;
  load: () => LoadSummary;
  state: () => LifecycleState;
  meta?: () => Record<string, string | number | boolean> | undefined;
  clock?: Clock;
  /** process start, ms since epoch (default: the clock's now at construction). */
  startedMs?: number;
}

export class Heartbeater {
  readonly periodMs: number;
  readonly startedMs: number;
  #opts: HeartbeaterOptions;
  #clock: Clock;
  #timer: unknown;
  #seq = 0;
  #subject: string;

  constructor(opts: HeartbeaterOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.periodMs = opts.periodMs ?? 1000;
    this.startedMs = opts.startedMs ?? this.#clock.now();
    this.#subject = subjects.heartbeat(opts.kind, opts.id);
  }

  /** Beat now, then every period. Idempotent. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.beat();
    this.#timer = this.#clock.setInterval(() => this.beat(), this.periodMs);
  }

  stop(): void {
    if (this.#timer === undefined) return;
    this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Publish one heartbeat (also used to announce a state change at once). */
  beat(): void {
    if (this.#opts.bus.closed) return;
    const l = this.#opts.load();
    const load: Heartbeat['load'] = { queued: Math.max(0, Math.round(l.queued)), running: Math.max(0, Math.round(l.running)) };
    if (l.mailbox !== undefined) load.mailbox = Math.max(0, Math.round(l.mailbox));
    if (l.rps !== undefined) load.rps = Math.max(0, l.rps);
    const hb: Heartbeat = {
      v: 1,
      kind: this.#opts.kind,
      id: this.#opts.id,
      seq: this.#seq++,
      startedMs: this.startedMs,
      sentMs: this.#clock.now(),
      state: this.#opts.state(),
      load,
    };
    const meta = this.#opts.meta?.();
    if (meta) hb.meta = meta;
    try {
      this.#opts.bus.publish(this.#subject, Heartbeat, hb);
    } catch (err) {
      this.#opts.bus.log.warn({ err: (err as Error).message }, 'heartbeat publish failed');
    }
  }
}
