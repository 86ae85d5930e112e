/**
 * Liveness tracking from heartbeats. A peer is declared dead after `missed` periods without a beat
 * (default 3 x 1000 ms), checked every period/4 so the verdict comes within ~(missed + 0.25) periods.
 * Events: 'alive' (first beat of a peer, or a beat after it was declared dead), 'dead' (missed beats, or
 * it announced state stopped/failed), 'restarted' (its startedMs changed: a new process under the same
 * id), each with {kind, id, heartbeat}.
 */
import { EventEmitter } from 'node:events';
import { Heartbeat, subjects, type ActorKind } from '../../protocols/index.ts';
import type { Bus, SubscribeHandle } from './bus.ts';
import { systemClock, type Clock } from './clock.ts';

export interface PeerInfo {
  kind: ActorKind;
  id: string;
  alive: boolean;
  /** local receive time of the last beat, ms since epoch (on this tracker's clock). */
  lastSeenMs: number;
  heartbeat: Heartbeat;
}

export interface LivenessEvent {
  kind: ActorKind;
  id: string;
  heartbeat: Heartbeat;
}

export interface LivenessTrackerOptions {
  bus: Bus;
  /** expected heartbeat period, ms. Default 1000. */
  periodMs?: number;
  /** beats missed before a peer is dead. Default 3. */
  missed?: number;
  clock?: Clock;
  /** only track these kinds (default all). */
  kinds?: ActorKind[];
}

export class LivenessTracker extends EventEmitter {
  readonly periodMs: number;
  readonly missed: number;
  #bus: Bus;
  #clock: Clock;
  #kinds?: Set<ActorKind>;
  #peers = new Map<string, PeerInfo>();
  #subs: SubscribeHandle[] = [];
  #timer: unknown;

  constructor(opts: LivenessTrackerOptions) {
    super();
    this.#bus = opts.bus;
    this.#clock = opts.clock ?? systemClock;
    this.periodMs = opts.periodMs ?? 1000;
    this.missed = opts.missed ?? 3;
    if (opts.kinds) this.#kinds = new Set(opts.kinds);
  }

  start(): void {
    if (this.#timer !== undefined) return;
    // one subscription to all beats; `kinds` filters in observe()
    this.#subs.push(this.#bus.subscribe(subjects.heartbeatAll(), Heartbeat, (hb) => this.observe(hb), { capacity: 4096, expectSubject: (hb) => subjects.heartbeat(hb.kind, hb.id) }));
    this.#timer = this.#clock.setInterval(() => this.check(), Math.max(1, Math.floor(this.periodMs / 4)));
  }

  stop(): void {
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
    if (this.#timer !== undefined) this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Feed one heartbeat (the subscription does this; tests may call it directly). */
  observe(hb: Heartbeat): void {
    if (this.#kinds && !this.#kinds.has(hb.kind)) return;
    const key = `${hb.kind}/${hb.id}`;
    const now = this.#clock.now();
    const prev = this.#peers.get(key);
    const ev: LivenessEvent = { kind: hb.kind, id: hb.id, heartbeat: hb };
    const terminal = hb.state === 'stopped' || hb.state === 'failed';
    if (!prev) {
      this.#peers.set(key, { kind: hb.kind, id: hb.id, alive: !terminal, lastSeenMs: now, heartbeat: hb });
      if (!terminal) this.emit('alive', ev);
      return;
    }
    const restarted = hb.startedMs !== prev.heartbeat.startedMs;
    // a stale beat of the old process (reordered) must not overwrite the new one
    if (!restarted && hb.seq < prev.heartbeat.seq) return;
    if (restarted && hb.startedMs < prev.heartbeat.startedMs) return;
    const wasAlive = prev.alive;
    prev.lastSeenMs = now;
    prev.heartbeat = hb;
    prev.alive = !terminal;
    if (restarted) this.emit('restarted', ev);
    if (!wasAlive && prev.alive) this.emit('alive', ev);
    if (wasAlive && terminal) this.emit('dead', ev);
  }

  /** Declare dead every peer silent for more than `missed` periods. */
  check(): void {
    const limit = this.missed * this.periodMs;
    const now = this.#clock.now();
    for (const p of this.#peers.values()) {
      if (p.alive && now - p.lastSeenMs > limit) {
        p.alive = false;
        this.emit('dead', { kind: p.kind, id: p.id, heartbeat: p.heartbeat } satisfies LivenessEvent);
      }
    }
  }

  peers(): PeerInfo[] {
    return [...this.#peers.values()].map((p) => ({ ...p }));
  }

  isAlive(kind: ActorKind, id: string): boolean {
    return this.#peers.get(`${kind}/${id}`)?.alive ?? false;
  }

  lastHeartbeat(kind: ActorKind, id: string): Heartbeat | undefined {
    return this.#peers.get(`${kind}/${id}`)?.heartbeat;
  }

  /** Forget a peer (e.g. after it was removed on purpose). */
  forget(kind: ActorKind, id: string): void {
    this.#peers.delete(`${kind}/${id}`);
  }
}
