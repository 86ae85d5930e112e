/**
 * The dispatchers' own views, as `dynamollm chaos` (commands/chaos.ts) reads them: every gateway (worker process)
 * and pool manager answers subjects.dispatchView with the instances it sends requests to now and those it tracks
 * that take none, with why (protocols DispatchView; policy outOfDispatch decides both). These are where a request
 * goes: the gateways route most requests themselves (their routing view), and a pool's leader dispatches those
 * that reach it through the cluster intake; the cluster status (the planner's view) only reports.
 *
 * The harness learns who dispatches from the heartbeats (kinds gateway and pool), asks each one every `pollMs`
 * (one request in flight per actor, each within `timeoutMs`) as the observer, and follows each instance kill: per
 * gateway that routes, the first answer to a request sent after the kill that does not list the instance ready; for
 * the pool, the first such answer from a manager leading the instance's pool. The leave is timed by the view's own
 * word of when the instance left (its `sinceMs`), so a harness cut off from NATS for a while (its server killed)
 * still times it right; the answer's arrival bounds it (ViewOut).
 */
import { DispatchView, Heartbeat, StatusRequest, subjects, type DispatchOutReason, type DispatchViewKind } from '../../protocols/index.ts';
import type { Bus, SubscribeHandle } from '../runtime/bus.ts';

/**
 * An instance's leave of one view: `outMs`, ms from the kill to when the view says it left its dispatch (its `sinceMs`,
 * the dispatcher's clock: the harness runs on the same host; 0 when that was before the kill), or to the answer's
 * arrival when the view gives no time (`absent`: no longer tracked); `seenMs`, ms from the kill to the first answer
 * without it ready (the harness's clock: late while the harness's connection is down); why the view gave.
 */
export interface ViewOut { outMs: number; seenMs: number; why: DispatchOutReason | 'absent' }

/** One kill's leave of the dispatchers' views, updated by every answer (DispatchViews.follow). */
export class ViewLeave {
  /** every gateway that answered with routing on after the kill: its leave, or undefined while it lists the instance ready. */
  readonly gateways = new Map<string, ViewOut | undefined>();
  /** the pool's dispatch view: the first answer after the kill, from a manager leading the instance's pool, without it ready. */
  pool?: ViewOut & { leader: string };

  constructor(readonly instance: string, readonly atMs: number) {}

  /** An answer to a request sent at `sentMs`, arrived at `now`; `pool`: the instance's pool as the views named it. */
  seen(v: DispatchView, sentMs: number, now: number, pool: string | undefined): void {
    if (sentMs < this.atMs) return;
    const out = (p: DispatchView['pools'][number] | undefined): ViewOut | undefined => {
      if (p?.ready.includes(this.instance)) return undefined;
      const o = p?.out.find((x) => x.id === this.instance);
      const seenMs = now - this.atMs;
      return { outMs: o?.sinceMs !== undefined ? Math.min(seenMs, Math.max(0, o.sinceMs - this.atMs)) : seenMs, seenMs, why: o?.why ?? 'absent' };
    };
    if (v.kind === 'gateway') {
      if (!v.routing) return;
      if (this.gateways.get(v.id) !== undefined) return;
      // ready in any pool of its view: still routed to
      const ready = v.pools.some((p) => p.ready.includes(this.instance));
      this.gateways.set(v.id, ready ? undefined : out(v.pools.find((p) => p.pool === pool)));
      return;
    }
    const led = v.pools.find((p) => p.pool === pool && p.leader === true);
    if (!led) return;
    if (this.pool) return;
    const o = out(led);
    if (o) this.pool = { ...o, leader: v.id };
  }

  /**
   * The gateways' figure: the latest of their leaves once every gateway that answered after the kill and is still
   * answering (within `liveMs` of `now`) has one; undefined before, or when none answered.
   */
  gatewayOut(now: number, liveMs: number, lastAnswer: (id: string) => number): ViewOut & { gateways: number } | undefined {
    let worst: ViewOut | undefined;
    let n = 0;
    for (const [id, o] of this.gateways) {
      if (o === undefined) {
        if (now - lastAnswer(id) <= liveMs) return undefined;
        continue; // a gateway that stopped answering (killed) dispatches nothing
      }
      n++;
      if (!worst || o.outMs > worst.outMs) worst = o;
    }
    return worst ? { ...worst, gateways: n } : undefined;
  }
}

/** Dispatchers (gateways and pool managers) DispatchViews follows at most. */
export const MAX_DISPATCHERS = 1024;
/** Instances whose pool DispatchViews remembers at most (a view lists at most VIEW_MAX_INSTANCES per pool and kind). */
export const MAX_POOL_OF = 16_384;

/** A dispatcher DispatchViews asks: its last heartbeat, whether a request is in flight, its last answer (harness clock). */
export interface Dispatcher { kind: DispatchViewKind; id: string; hbMs: number; busy: boolean; answerMs: number }

/** Forgets the dispatchers without a request in flight whose last heartbeat is more than `forgetMs` before `now`. */
export function pruneDispatchers(actors: Map<string, Dispatcher>, now: number, forgetMs: number): void {
  for (const [key, a] of actors) if (!a.busy && now - a.hbMs > forgetMs) actors.delete(key);
}

/** Forgets the instances no view listed for more than `forgetMs` before `now`, except those `keep` names (a kill followed). */
export function prunePoolOf(poolOf: Map<string, { pool: string; seenMs: number }>, now: number, forgetMs: number, keep: (instance: string) => boolean): void {
  for (const [id, e] of poolOf) if (now - e.seenMs > forgetMs && !keep(id)) poolOf.delete(id);
}

export interface DispatchViewsOptions {
  /** period of the requests to each dispatcher, ms. Default 100. */
  pollMs?: number;
  /** deadline of one request, ms. Default 1000. */
  timeoutMs?: number;
  /** a dispatcher whose heartbeat is older than this is no longer asked, ms. Default 10 000. */
  forgetMs?: number;
}

/** Polls the dispatch views of every gateway and pool manager on the harness's observer connection (which may be made anew). */
export class DispatchViews {
  readonly stats = { requests: 0, answers: 0, failures: 0 };
  readonly #bus: () => Bus | undefined;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  readonly #forgetMs: number;
  /** dispatchers by `kind/id` (at most MAX_DISPATCHERS; pruneDispatchers forgets the silent ones). */
  readonly #actors = new Map<string, Dispatcher>();
  /** each instance's pool, as the last view that listed it named it, and when (at most MAX_POOL_OF; prunePoolOf forgets the old ones). */
  readonly #poolOf = new Map<string, { pool: string; seenMs: number }>();
  readonly #follows = new Set<ViewLeave>();
  #attached?: Bus;
  #subs: SubscribeHandle[] = [];
  #timer?: ReturnType<typeof setInterval>;
  #prunedMs = 0;

  constructor(bus: () => Bus | undefined, o: DispatchViewsOptions = {}) {
    this.#bus = bus;
    this.#pollMs = o.pollMs ?? 100;
    this.#timeoutMs = o.timeoutMs ?? 1000;
    this.#forgetMs = o.forgetMs ?? 10_000;
  }

  start(): void {
    this.#timer ??= setInterval(() => this.#tick(), this.#pollMs).unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    this.#attached = undefined;
  }

  /** Follows an instance's leave from a kill at `atMs` until `unfollow`. */
  follow(instance: string, atMs: number): ViewLeave {
    const f = new ViewLeave(instance, atMs);
    this.#follows.add(f);
    return f;
  }

  unfollow(f: ViewLeave): void {
    this.#follows.delete(f);
  }

  /** When the dispatcher `kind/id` last answered (harness clock; 0: never). */
  lastAnswer(kind: DispatchViewKind, id: string): number {
    return this.#actors.get(`${kind}/${id}`)?.answerMs ?? 0;
  }

  /** Whether any gateway answered with routing on (the gateways route requests themselves). */
  routingSeen = false;

  #tick(): void {
    const bus = this.#bus();
    if (!bus) return;
    if (bus !== this.#attached) {
      for (const s of this.#subs.splice(0)) s.unsubscribe();
      this.#attached = bus;
      for (const kind of ['gateway', 'pool'] as const) {
        this.#subs.push(bus.subscribe(subjects.heartbeatsOf(kind), Heartbeat, (hb) => {
          if (hb.kind !== kind || hb.state === 'stopped') return;
          const key = `${kind}/${hb.id}`;
          const a = this.#actors.get(key);
          if (a) a.hbMs = Date.now();
          else if (this.#actors.size < MAX_DISPATCHERS) this.#actors.set(key, { kind, id: hb.id, hbMs: Date.now(), busy: false, answerMs: 0 });
        }, { capacity: 1024 }));
      }
    }
    const now = Date.now();
    // the maps walked once a second, not every poll
    if (now - this.#prunedMs >= 1000) {
      this.#prunedMs = now;
      pruneDispatchers(this.#actors, now, this.#forgetMs);
      const followed = new Set([...this.#follows].map((f) => f.instance));
      prunePoolOf(this.#poolOf, now, this.#forgetMs, (id) => followed.has(id));
    }
    for (const a of this.#actors.values()) {
      if (a.busy || now - a.hbMs > this.#forgetMs) continue;
      a.busy = true;
      this.stats.requests++;
      const sentMs = Date.now();
      bus.request(subjects.dispatchView(a.kind, a.id), StatusRequest, { v: 1 }, DispatchView, { timeoutMs: this.#timeoutMs }).then((v) => {
        const at = Date.now();
        this.stats.answers++;
        a.answerMs = at;
        if (v.kind !== a.kind || v.id !== a.id) return;
        if (v.routing) this.routingSeen = true;
        for (const p of v.pools) {
          for (const id of [...p.ready, ...p.out.map((o) => o.id)]) if (this.#poolOf.has(id) || this.#poolOf.size < MAX_POOL_OF) this.#poolOf.set(id, { pool: p.pool, seenMs: at });
        }
        for (const f of this.#follows) f.seen(v, sentMs, at, this.#poolOf.get(f.instance)?.pool);
      }, () => {
        this.stats.failures++;
      }).finally(() => (a.busy = false));
    }
  }
}

/** A kill's figures from the dispatchers' views (dynamollm chaos's killLog: commands/chaos.ts Kill). */
export interface ViewFigures {
  /**
   * instance, engine: the gateways' own routing views (subjects.dispatchView): ms from the kill until
   * every gateway that routes and answered after it had the instance out of its dispatch (the latest of them, by each
   * view's own word of when it left), why that one gave, when the harness saw it (gatewaySeenMs: the latest first
   * answer without it ready, late while the harness was cut off), and each gateway's own figures.
   */
  outOfGatewayMs?: number;
  gatewayOutWhy?: string;
  gatewaySeenMs?: number;
  gatewaysOut?: Record<string, ViewOut>;
  /** instance, engine: the same from the dispatch view of a manager leading the instance's pool (the first answer after the kill without it ready). */
  outOfPoolMs?: number;
  poolOutWhy?: string;
  poolSeenMs?: number;
}

/** How many times each defined value occurs. */
export function countBy(xs: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) if (x !== undefined) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** A kill's leave of the dispatchers' own views (chaos-views.ts), followed by watchKill. */
export interface KillViews {
  leave: ViewLeave;
  /** when gateway `id` last answered its view (harness clock). */
  lastAnswer: (id: string) => number;
  /** whether any gateway routes (answered with routing on): without, no gateway figure is awaited. */
  routing: () => boolean;
}

/** how long after a kill watchKill waits for the views' figures at most, ms. */
const VIEW_WAIT_MS = 20_000;
/** a gateway that has not answered its view for this long is taken for gone (killed) and not waited for, ms. */
const VIEW_LIVE_MS = 2000;

/** The views' figures of a kill so far, into `k` (each set once). */
export function timeByViews(k: ViewFigures & { atMs: number }, v: KillViews, now: number): void {
  if (k.outOfGatewayMs === undefined) {
    const g = v.leave.gatewayOut(now, VIEW_LIVE_MS, v.lastAnswer);
    if (g) {
      k.outOfGatewayMs = g.outMs;
      k.gatewayOutWhy = g.why;
      k.gatewaysOut = Object.fromEntries([...v.leave.gateways].filter((e): e is [string, ViewOut] => e[1] !== undefined));
      k.gatewaySeenMs = Math.max(...Object.values(k.gatewaysOut).map((o) => o.seenMs));
    }
  }
  if (k.outOfPoolMs === undefined && v.leave.pool) {
    k.outOfPoolMs = v.leave.pool.outMs;
    k.poolOutWhy = v.leave.pool.why;
    k.poolSeenMs = v.leave.pool.seenMs;
  }
}

/** Whether a kill's view figures are still awaited (within VIEW_WAIT_MS of it; the gateways' only while some gateway routes). */
export function viewsPending(k: ViewFigures & { atMs: number }, v: KillViews | undefined, now: number): boolean {
  if (!v || now > k.atMs + VIEW_WAIT_MS) return false;
  return (k.outOfGatewayMs === undefined && v.routing()) || k.outOfPoolMs === undefined;
}
