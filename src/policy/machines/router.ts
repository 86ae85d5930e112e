/**
 * The gateway's request plane (docs/DATAPATH.md): intake's pool choice and each pool's dispatch, run by the
 * gateway itself over what the cluster publishes, so that a request reaches its instance in one request-reply
 * (the instance's admission) instead of three (cluster intake -> pool dispatch -> instance admission).
 *
 * Its inputs are the ones the cluster and pool managers decide from: the routing table the cluster leader
 * publishes (RoutingTable: its `route` and the pools' assignments) and every instance's InstanceStatus (what
 * each pool leader's dispatch view is made of). The decisions are theirs, not a copy: the pools tried are
 * `routePools` (intake's intakePools), the instance is policy `dispatchRequest` over `dispatchViews` (the pool
 * leader's views) with the same local count that spreads a burst between two statuses (`countDispatched`).
 *
 * No I/O and no clock: the gateway's shell (actors/gateway/router.ts) feeds it messages and the time. Unlike
 * the pool and cluster machines it is updated in place (it runs once per request on the gateway's hot path,
 * and nothing else holds an older state).
 */
import type { InstanceStatus, PoolAssignment, RoutingTable } from '../../../protocols/control.ts';
import type { RequestType } from '../../../protocols/request-types.ts';
import type { Profile } from '../../model/profile-types.ts';
import { dispatchRequest } from '../dispatch.ts';
import { PREFIX_CHUNK_CHARS, PREFIX_CHUNK_TOKENS, RoutedPrefixes, kvCacheChunks, preferPrefixHolder, prefixHitShare, promptChunkHashes } from '../prefix.ts';
import { routePools } from './cluster.ts';
import type { TrackedInstance } from './pool-types.ts';
import { creditStatus, type CreditLines } from './credits.ts';
import type { NatsConnectionId } from '../../../protocols/nats-advisory.ts';
import type { DispatchOutReason, DispatchView } from '../../../protocols/dispatch-view.ts';
import { heard, suspected, unsuspected } from '../suspect.ts';
import { connectionEnded, connectionEndedAt, connectionEndedSeen, endedKeepMs, initialEndedConnections, type EndedConnections } from '../connection-ended.ts';

export interface DispatchViewOf { id: string; tp: number; clockMhz: number; healthy: boolean; load: Partial<Record<RequestType, number>>; queued: number; running: number; pendingPrefillTokens?: number }

/** Most requests a pool holds at once while it has no ready instance (the rest are refused as overloaded). */
export const MAX_HELD = 1024;

/** How a held request's dispatch ended: admitted by an instance, refused while its hold ran, or refused at its hold's end. */
export const HOLD_OUTCOMES = ['dispatched', 'refused', 'timed_out'] as const;
export type HoldOutcome = (typeof HOLD_OUTCOMES)[number];

/** Requests a pool holds now (its dispatch jobs): held for a ready instance, or tried on one after their hold, not answered yet. */
export function heldNow(jobs: Iterable<{ holdEndMs?: number }>): number {
  let n = 0;
  for (const j of jobs) if (j.holdEndMs !== undefined) n++;
  return n;
}

/**
 * Whether a pool with none of its ready instances left to try expects capacity soon, so that its dispatch holds
 * a request (bounded by the request's give-up time and the engine health deadline) instead of refusing it: a
 * re-shard or a start under way; an instance of an active pool that is not ready (starting, restarting its
 * engine, failed and being replaced, silent and maybe dead); no ready instance while GPUs are granted to the
 * active pool (its reconciliation starts instances on granted GPUs no live instance holds: after a node agent
 * died with its instances) or while the leader took the lead less than deadAfterMs ago (`newLeader`: it has
 * not heard every instance yet). Every instance alive, ready and refusing (full) is overload, not capacity
 * coming: the refusal is the answer at once. `held`: requests held now; at MAX_HELD it holds no more.
 */
export function capacityComing(p: { reshard: boolean; starting: number; held: number; instances: Iterable<TrackedInstance>; assignment: PoolAssignment | undefined; newLeader?: boolean }): boolean {
  if (p.held >= MAX_HELD) return false;
  if (p.reshard || p.starting > 0) return true;
  if (p.assignment?.state === 'retired') return false;
  let ready = false;
  for (const t of p.instances) {
    if (!t.alive || t.status.state !== 'ready') return true;
    ready = true;
  }
  if (ready) return false;
  return (p.newLeader ?? false) || (p.assignment?.grants.some((g) => g.gpuIds.length > 0) ?? false);
}

/** The instances alive for the pool (the pool machine's view). */
export function aliveInstances(s: { instances: Map<string, TrackedInstance> }): InstanceStatus[] {
  return [...s.instances.values()].filter((t) => t.alive).map((t) => t.status);
}

/**
 * The instances' estimate of the pool's load for its re-shard epoch (req/s by type), read where the pool has counted
 * no arrivals (policy epochArrivalLoad: a replica that has led for no traffic yet, instances without admission
 * counters, the simulator's first epoch on the forecast): the sum of its alive instances' epoch loads (status
 * epochLoadByType, their EWMAs projected to their epochs' close; loadByType where absent), which read the same
 * wherever in the instances' epochs the pool's epoch falls.
 */
export function poolEpochLoad(s: { instances: Map<string, TrackedInstance> }): Partial<Record<RequestType, number>> {
  const out: Partial<Record<RequestType, number>> = {};
  for (const st of aliveInstances(s)) for (const [t, v] of Object.entries(st.epochLoadByType ?? st.loadByType) as [RequestType, number][]) out[t] = (out[t] ?? 0) + v;
  return out;
}

/** Measured pool load (req/s by type) = sum of its alive instances' loads. */
export function poolLoad(s: { instances: Map<string, TrackedInstance> }): Partial<Record<RequestType, number>> {
  const out: Partial<Record<RequestType, number>> = {};
  for (const st of aliveInstances(s)) for (const [t, v] of Object.entries(st.loadByType) as [RequestType, number][]) out[t] = (out[t] ?? 0) + v;
  return out;
}

/**
 * The time and threshold of a dispatch's suspicion (policy suspect.ts): `afterMs` undefined suspects none. `heardOnly`:
 * a move's candidates, only those heard (policy heard): no fallback to suspected ones, none when all are silent.
 */
export interface SuspectAt { now: number; afterMs: number | undefined; heardOnly?: boolean }
const lastSeenOf = (t: TrackedInstance): number => t.lastSeenMs;

/**
 * The dispatch view (policy dispatchRequest's input) of the tracked instances that are alive, ready and
 * not excluded, less those `suspect` suspects among the alive and ready ones (policy unsuspected: the least silent
 * when it would suspect them all): the pool leader's (pool.ts), and the gateway's for the pools it routes itself.
 * When every candidate the suspicion leaves is excluded (tried: each refused the request), a new request goes on to
 * the suspected ones not tried, the least silent first (policy unsuspected over them, freshest first): a silent
 * instance is alive until deadAfterMs, and a refusal of the heard ones does not make the pool empty. A move
 * (`heardOnly`) has no such fallback.
 */
export function dispatchViews(instances: Iterable<TrackedInstance>, exclude: ReadonlySet<string>, alive: (t: TrackedInstance) => boolean, suspect?: SuspectAt): DispatchViewOf[] {
  const eligible: TrackedInstance[] = [];
  for (const t of instances) if (t.status.state === 'ready' && alive(t)) eligible.push(t);
  const chosen = suspect ? (suspect.heardOnly ? heard : unsuspected)(eligible, lastSeenOf, suspect.now, suspect.afterMs) : eligible;
  let left = chosen.filter((t) => !exclude.has(t.status.id));
  if (!left.length && suspect && !suspect.heardOnly && chosen.length < eligible.length) {
    const untried = eligible.filter((t) => !exclude.has(t.status.id));
    left = unsuspected(untried, lastSeenOf, suspect.now, suspect.afterMs).sort((a, b) => b.lastSeenMs - a.lastSeenMs);
  }
  // load: the status's own object, not a copy: dispatch remembers an instance's score on it until the
  // next status replaces it (policy dispatch memoScoreOf), so a burst between two statuses costs one
  // scoring per instance, not one per request
  return left.map(({ status: st }) => ({ id: st.id, tp: st.tp, clockMhz: st.clockMhz, healthy: true, load: st.loadByType, queued: st.queued, running: st.running, ...(st.pendingPrefillTokens !== undefined ? { pendingPrefillTokens: st.pendingPrefillTokens } : {}) }));
}

/** An instance's status as a view tracks it from `now`: its state's start kept while the same process reports the same state. */
export function trackedStatus(t: TrackedInstance | undefined, st: InstanceStatus, now: number): TrackedInstance {
  const same = t !== undefined && t.alive && t.status.startedMs === st.startedMs && t.status.state === st.state;
  return { status: st, lastSeenMs: now, alive: true, stateSinceMs: same ? t.stateSinceMs ?? now : now };
}

/** The instance as its view counts it once a request of `inputTokens` went to it (until its next status says). */
export function countDispatched(t: TrackedInstance, inputTokens: number): TrackedInstance {
  const st = t.status;
  // every count is a copy of the status as received (copied once: a decoded message's members are a dictionary, and V8
  // copies one fast object many times on its fast path, not a chain of copies of copies), the view's requests added
  const received = t.received ?? { ...st };
  const n = (t.dispatched?.n ?? 0) + 1, tokens = (t.dispatched?.tokens ?? 0) + inputTokens;
  const status = { ...received, queued: received.queued + n };
  if (received.pendingPrefillTokens !== undefined) status.pendingPrefillTokens = received.pendingPrefillTokens + tokens;
  // a literal, not a spread of `t` with members added (V8's slow path, ~0.5 us per request)
  return { status, lastSeenMs: t.lastSeenMs, alive: t.alive, stateSinceMs: t.stateSinceMs, deadMs: t.deadMs, received, dispatched: { n, tokens } };
}

export interface RouterConfig {
  profile?: Profile;
  /** SLO capacity dispatch keeps free (the pools' policy.headroom). */
  headroom: number;
  /** an instance without a status for this long is not dispatched to (the pool leader's death verdict), ms. */
  deadAfterMs: number;
  /** an instance without a status for this long takes no new request while another is heard (policy suspect.ts), ms; absent: none is suspected. */
  suspectAfterMs?: number;
  /**
   * cache-aware routing on the prompt's text (policy promptChunkHashes, RoutedPrefixes, preferPrefixHolder: the
   * engines cache prefixes; the gateway's config `engine.prefixCaching`). Default false: the energy choice alone.
   */
  prefixRouting?: boolean;
}

export interface RouterState {
  /** type -> pool (the cluster's route); empty until the first table. */
  route: Map<RequestType, string>;
  /** each pool's types (dispatch scores instances by them) and whether it was merged away. */
  pools: Map<string, { types: RequestType[]; retired: boolean }>;
  /** the table's epoch and when it arrived (undefined: none yet: the gateway sends requests to intake). */
  epoch?: number;
  tableAtMs?: number;
  /** the instances by pool, each with its last status and when it arrived (lastSeenMs). */
  byPool: Map<string, Map<string, TrackedInstance>>;
  /** the prompt chunks routed to each instance (prefixRouting). */
  prefixes: RoutedPrefixes;
  /** admission credits the instances lent this gateway, by instance (credits.ts: creditReceived, creditSpend). */
  credits: CreditLines;
  /** the connections the NATS server said ended: an instance whose status went out on one takes no dispatch (connection-ended.ts). */
  ended: EndedConnections;
  /** when routerSweep last walked byPool (it walks at most once per deadAfterMs). */
  sweptMs?: number;
  /** this view's own link to the bus is down (routerLink): no holder is called gone for its silence meanwhile. */
  linkDown?: boolean;
  /** when this view last heard the bus (a status, a routing table: routerHeard), ms; undefined: its link is not watched (a view fed by hand). */
  heardMs?: number;
  /** the end of its last stretch without the bus (its link back, or the first message after a gap): silence counts from then at the earliest, ms. */
  linkUpMs?: number;
}

export function initialRouterState(): RouterState {
  return { route: new Map(), pools: new Map(), byPool: new Map(), prefixes: new RoutedPrefixes(), credits: new Map(), ended: initialEndedConnections() };
}

/** A table older than this is no longer refreshed by its leader's snapshots (one a second): any table replaces it, ms. */
export const TABLE_STALE_MS = 5000;

/**
 * A routing table: replaces the one held unless it has an older epoch while the one held is fresh (a previous
 * leader's snapshot in flight); a stale one is replaced by any (a cluster started afresh counts epochs anew).
 */
export function routerTable(s: RouterState, t: RoutingTable, now: number): void {
  if (s.epoch !== undefined && t.epoch < s.epoch && now - (s.tableAtMs ?? 0) < TABLE_STALE_MS) return;
  s.route = new Map<RequestType, string>(Object.entries(t.routes) as [RequestType, string][]);
  s.pools = new Map(t.pools.map((p) => [p.pool, { types: p.types, retired: p.retired }]));
  s.epoch = t.epoch;
  s.tableAtMs = now;
}

/** An instance's status (the pool leader's rules: an older one of the same process is ignored, a stopped instance is forgotten). */
export function routerStatus(s: RouterState, st: InstanceStatus, now: number): void {
  let pool = s.byPool.get(st.pool);
  const t = pool?.get(st.id);
  if (t && st.seq < t.status.seq && st.startedMs === t.status.startedMs) return;
  // a later credit epoch, another process or a state other than ready voids the instance's loan
  if (s.credits.size) creditStatus(s.credits, st);
  if (st.state === 'stopped') {
    pool?.delete(st.id);
    s.prefixes.forget(st.id);
    return;
  }
  if (!pool) s.byPool.set(st.pool, (pool = new Map<string, TrackedInstance>()));
  pool.set(st.id, trackedStatus(t, st, now));
}

/**
 * How long after its last status the router forgets an instance (routerSweep), ms: the pool machine's bound for a
 * dead instance (60 s, pool-instances.ts sweep) or 10 death verdicts where deadAfterMs is longer. Well past every
 * use of an instance silent that long: its death (lapsed after deadAfterMs, routerHolderGone's verdict) and the
 * connection-ended record of its connection (endedKeepMs); routerCapacityComing, without it, reads the table's pools.
 */
export const routerForgetAfterMs = (deadAfterMs: number): number => Math.max(60_000, 10 * deadAfterMs);

/**
 * Forgets the instances without a status for routerForgetAfterMs (SIGKILLed, or replaced under another id: no
 * `stopped` status ever comes), with their routed prefixes and credits, and pools left without instances; walks
 * the view at most once per deadAfterMs. Called with each status, pick and view, so the view is bounded by the
 * instances heard from in the last routerForgetAfterMs. A later status of a forgotten instance tracks it anew.
 */
export function routerSweep(s: RouterState, now: number, cfg: RouterConfig): void {
  if (s.sweptMs !== undefined && now - s.sweptMs < cfg.deadAfterMs) return;
  s.sweptMs = now;
  const forgetMs = routerForgetAfterMs(cfg.deadAfterMs);
  for (const [p, pool] of s.byPool) {
    for (const [id, t] of pool) {
      if (now - t.lastSeenMs <= forgetMs) continue;
      pool.delete(id);
      s.prefixes.forget(id);
      s.credits.delete(id);
    }
    if (!pool.size) s.byPool.delete(p);
  }
}

/**
 * Whether this view expects an instance (an engine to tokenize with, to admit to) while none is ready and alive:
 * one seen less than `holdMs` ago that is not ready (starting, restarting its engine, failed and being
 * replaced) or silent past deadAfterMs (dead: its node agent starts it again); or none seen in that time while
 * the cluster's routing table names pools (every instance of a cluster restarting, or this view just begun).
 * False while one is ready.
 */
export function routerCapacityComing(s: RouterState, now: number, cfg: RouterConfig, holdMs: number): boolean {
  let seen = false;
  for (const pool of s.byPool.values()) {
    for (const t of pool.values()) {
      const age = now - t.lastSeenMs;
      if (age >= holdMs) continue;
      if (outOfDispatch(t, s.ended, now, cfg.deadAfterMs) === undefined) return false;
      seen = true;
    }
  }
  return seen || (s.epoch !== undefined && [...s.pools.values()].some((p) => !p.retired));
}

/** The NATS server said a connection ended: the instance whose status went out on it takes no dispatch until a status from another. */
export function routerConnectionEnded(s: RouterState, conn: NatsConnectionId, now: number, cfg: RouterConfig): void {
  s.ended = connectionEndedSeen(s.ended, conn, now, endedKeepMs(cfg.deadAfterMs));
}

/** An instance that did not answer its admission (no responders: its process is gone) at `now`: no dispatch until its next status. */
export function routerGone(s: RouterState, pool: string, id: string, now?: number): void {
  s.credits.delete(id);
  const t = s.byPool.get(pool)?.get(id);
  if (t) s.byPool.get(pool)!.set(id, { ...t, alive: false, ...(now !== undefined ? { deadMs: now } : {}) });
}

/**
 * The longest this view may hear nothing from the bus before the silence counts as its own (a cut its client has
 * not noticed yet), ms: half of deadAfterMs. A live cluster speaks to it more often: each instance's status (every
 * deadAfterMs / 2 at most, config validation) and the planner's routing table (every second).
 */
export const routerLinkGapMs = (deadAfterMs: number): number => Math.floor(deadAfterMs / 2);

/** This view heard the bus at `now` (a status, a routing table): after a longer gap than routerLinkGapMs, its silence ends here. */
export function routerHeard(s: RouterState, now: number, cfg: RouterConfig): void {
  if (s.heardMs === undefined || now - s.heardMs > routerLinkGapMs(cfg.deadAfterMs)) s.linkUpMs = Math.max(s.linkUpMs ?? -Infinity, now);
  s.heardMs = Math.max(s.heardMs ?? -Infinity, now);
}

/** This view's own connection went down / came back (the bus's status): its silence meanwhile is nobody's death. */
export function routerLink(s: RouterState, up: boolean, now: number): void {
  if (up && s.linkDown) s.linkUpMs = now;
  s.linkDown = !up;
}

/**
 * Whether the process of instance `id` that admitted a request at `admittedMs` (started at `startedMs`, from
 * its admission) is gone in this view: a status of a later process under the id arrived, it did not answer an
 * admission since (routerGone), or no sign of life (a status, or the admission itself) came for deadAfterMs:
 * the pool leader's death verdict. Silence is no verdict while this view's own link is down or unheard for longer
 * than routerLinkGapMs, and counts from the link's return (routerLink, routerHeard) at the earliest. An instance this view does not hold (never seen, or it reported `stopped`
 * and ended its requests itself) is not called gone.
 */
export function routerHolderGone(s: RouterState, id: string, startedMs: number | undefined, admittedMs: number, now: number, cfg: RouterConfig): boolean {
  for (const pool of s.byPool.values()) {
    const t = pool.get(id);
    if (!t) continue;
    if (startedMs !== undefined && t.status.startedMs > startedMs) return true;
    // a status of an earlier process still in the view says nothing of the one that admitted the request
    const same = startedMs === undefined || t.status.startedMs === startedMs;
    if (same && !t.alive) return true;
    // silence is a death only while this view hears the bus, and counts from its link's last return at the earliest
    if (s.linkDown || (s.heardMs !== undefined && now - s.heardMs > routerLinkGapMs(cfg.deadAfterMs))) return false;
    return now - Math.max(same ? Math.max(t.lastSeenMs, admittedMs) : admittedMs, s.linkUpMs ?? -Infinity) > cfg.deadAfterMs;
  }
  return false;
}

/**
 * Why a tracked instance takes no request now, undefined when one may go to it: the one test behind every dispatch
 * view (the gateway's routing, the pool leader's dispatch, and what each reports in its DispatchView). In order:
 * dead in the view (`alive` false: the pool leader's death verdict, or no responders at the gateway), no status for
 * `deadAfterMs` (given by the gateway, which has no sweep; the pool leader's sweep sets `alive` instead), the
 * connection its status went out on ended (the server's advisory), a state other than ready.
 */
export function outOfDispatch(t: TrackedInstance, ended: EndedConnections, now: number, deadAfterMs?: number): DispatchOutReason | undefined {
  if (!t.alive) return 'dead';
  if (deadAfterMs !== undefined && now - t.lastSeenMs > deadAfterMs) return 'lapsed';
  if (connectionEnded(ended, t.status.conn)) return 'conn_ended';
  if (t.status.state !== 'ready') return 'state';
  return undefined;
}

/**
 * outOfDispatch with when the instance left this view's dispatch (`sinceMs`, this view's clock): the earliest of the
 * reasons that apply whose start is known (dead: the verdict's time; lapsed: its last status's arrival plus
 * deadAfterMs; conn_ended: the advisory's arrival; state: the first status of its process in that state), `why` that
 * reason; undefined when a request may go to it.
 */
export function outOfDispatchSince(t: TrackedInstance, ended: EndedConnections, now: number, deadAfterMs?: number): { why: DispatchOutReason; sinceMs?: number } | undefined {
  const first = outOfDispatch(t, ended, now, deadAfterMs);
  if (first === undefined) return undefined;
  const known: [DispatchOutReason, number | undefined][] = [
    ['dead', t.alive ? undefined : t.deadMs],
    ['lapsed', deadAfterMs !== undefined && now - t.lastSeenMs > deadAfterMs ? t.lastSeenMs + deadAfterMs : undefined],
    ['conn_ended', connectionEndedAt(ended, t.status.conn)],
    ['state', t.status.state !== 'ready' ? t.stateSinceMs : undefined],
  ];
  let best: { why: DispatchOutReason; sinceMs?: number } = { why: first };
  for (const [why, at] of known) if (at !== undefined && (best.sinceMs === undefined || at < best.sinceMs)) best = { why, sinceMs: at };
  return best;
}

/** Entries of a view listed at most per pool (ready and out each), and pools at most (DispatchView's bounds). */
export const VIEW_MAX_INSTANCES = 1024;
export const VIEW_MAX_POOLS = 256;

/** One pool's entry of a DispatchView: its tracked instances split by outOfDispatchSince (`why`), bounded, sorted by id. */
export function poolViewOf(pool: string, instances: Iterable<TrackedInstance>, why: (t: TrackedInstance) => { why: DispatchOutReason; sinceMs?: number } | undefined, leader?: boolean): DispatchView['pools'][number] {
  const ready: string[] = [];
  const out: DispatchView['pools'][number]['out'] = [];
  for (const t of instances) {
    const w = why(t);
    if (w === undefined) {
      if (ready.length < VIEW_MAX_INSTANCES) ready.push(t.status.id);
    } else if (out.length < VIEW_MAX_INSTANCES) out.push({ id: t.status.id, state: t.status.state, why: w.why, ...(w.sinceMs !== undefined ? { sinceMs: w.sinceMs } : {}) });
  }
  ready.sort();
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { pool, ...(leader !== undefined ? { leader } : {}), ready, out };
}

/**
 * The gateway's routing view as it reports it (subjects.dispatchView): each pool it tracks instances of, the ones
 * routerPick may choose (alive, a status within deadAfterMs, its connection not ended, ready) and the others with
 * why. `routing`: whether it routes at all (a direct request plane and a routing table: routerPools is empty without).
 */
export function routerView(s: RouterState, now: number, cfg: RouterConfig, direct = true): { routing: boolean; pools: DispatchView['pools'] } {
  routerSweep(s, now, cfg);
  const pools = [...s.byPool.keys()].sort().slice(0, VIEW_MAX_POOLS);
  return {
    routing: direct && s.epoch !== undefined,
    pools: pools.map((p) => poolViewOf(p, s.byPool.get(p)!.values(), whyOut(s.byPool.get(p)!.values(), s.ended, now, cfg.deadAfterMs, cfg.suspectAfterMs))),
  };
}

/**
 * outOfDispatchSince of a pool's instances, and `suspect` (since its last status plus suspectAfterMs) for one that
 * dispatch leaves out as suspected (dispatchViews with nothing excluded), so that a view lists ready exactly what its
 * dispatch chooses from.
 */
function whyOut(instances: Iterable<TrackedInstance>, ended: EndedConnections, now: number, deadAfterMs: number | undefined, suspectAfterMs: number | undefined): (t: TrackedInstance) => { why: DispatchOutReason; sinceMs?: number } | undefined {
  const all = [...instances];
  const chosen = suspectAfterMs === undefined ? undefined : new Set(dispatchViews(all, new Set(), aliveAt(now, ended, deadAfterMs), { now, afterMs: suspectAfterMs }).map((v) => v.id));
  return (t) => {
    const w = outOfDispatchSince(t, ended, now, deadAfterMs);
    if (w !== undefined || chosen === undefined || chosen.has(t.status.id)) return w;
    return { why: 'suspect', sinceMs: t.lastSeenMs + suspectAfterMs! };
  };
}

/**
 * The pool's dispatch view as its manager reports it (subjects.dispatchView): the instances its dispatch may choose
 * (alive in this replica's view, its connection not ended, ready, and not suspected at `now` with `suspectAfterMs`)
 * and the others with why; `leader`: whether this replica leads the pool (only the leader dispatches).
 */
export function poolDispatchView(s: { instances: Map<string, TrackedInstance>; ended: EndedConnections; leader: boolean }, pool: string, now = 0, suspectAfterMs?: number): DispatchView['pools'][number] {
  return poolViewOf(pool, s.instances.values(), whyOut(s.instances.values(), s.ended, now, undefined, suspectAfterMs), s.leader);
}

/** Alive in a view, a status within deadAfterMs when given, and its connection not ended (outOfDispatch less the state, which dispatchViews tests). */
export const aliveAt = (now: number, ended: EndedConnections, deadAfterMs?: number) => (t: TrackedInstance): boolean => {
  const w = outOfDispatch(t, ended, now, deadAfterMs);
  return w === undefined || w === 'state';
};

/** Whether the view holds a ready, live instance of `pool` (`heard`: one not suspected at `now`, policy suspect.ts). */
function hasReady(s: RouterState, pool: string, now: number, cfg: RouterConfig, heard = false): boolean {
  const alive = aliveAt(now, s.ended, cfg.deadAfterMs);
  for (const t of s.byPool.get(pool)?.values() ?? []) if (t.status.state === 'ready' && alive(t) && !(heard && suspected(t.lastSeenMs, now, cfg.suspectAfterMs))) return true;
  return false;
}

/**
 * The pools intake would try for a request of `type`, in order, keeping only those with a ready instance in
 * this view; empty when there is no table yet or no candidate has one (the request then goes to intake,
 * whose pool leader may hold it while capacity starts).
 */
export function routerPools(s: RouterState, type: RequestType, now: number, cfg: RouterConfig): string[] {
  if (s.epoch === undefined) return [];
  const ready = (p: string) => hasReady(s, p, now, cfg);
  return routePools(s.route, (p) => s.pools.get(p)?.retired === true, type, ready, (p) => hasReady(s, p, now, cfg, true)).filter(ready);
}

/**
 * The instance of `pool` the pool's dispatch picks for the request (policy dispatchRequest over the pool
 * leader's views), not one of `exclude`; counted at once in this view so a burst spreads before the next
 * status. Undefined when the view has no candidate left, or with `spill` (a longer pool follows in the request's
 * chain: policy spillPasses) when every instance is at its SLO cap, as the pool's own dispatch refuses it then.
 */
export function routerPick(s: RouterState, pool: string, req: { type?: RequestType; inputTokens: number } & Parameters<typeof promptChunkHashes>[0], exclude: ReadonlySet<string>, now: number, cfg: RouterConfig, spill = false): string | undefined {
  routerSweep(s, now, cfg);
  const inst = s.byPool.get(pool);
  if (!inst) return undefined;
  const v = dispatchViews(inst.values(), exclude, aliveAt(now, s.ended, cfg.deadAfterMs), { now, afterMs: cfg.suspectAfterMs });
  if (!v.length) return undefined;
  const types = s.pools.get(pool)?.types ?? [...s.route].filter(([, p]) => p === pool).map(([t]) => t);
  // cache-aware: the instance sent the longest prefix of this prompt, by the prefill work before its first token
  const chunks = cfg.prefixRouting ? promptChunkHashes(req) : undefined;
  const tokensPerUnit = chunks?.units ? req.inputTokens / chunks.units : 0;
  const unit = Array.isArray(req.prompt) ? PREFIX_CHUNK_TOKENS : PREFIX_CHUNK_CHARS;
  const prefer = chunks?.hashes.length
    ? (ids: string[]) => preferPrefixHolder(req.inputTokens, ids.map((id) => {
      const x = v.find((y) => y.id === id)!;
      // its pending prompts (whole, as its status and this view count them) at its engine's measured hit share
      return { id, tp: x.tp, cachedPrefixTokens: Math.min(req.inputTokens, s.prefixes.matched(id, chunks.hashes) * unit * tokensPerUnit), pendingPrefillTokens: x.pendingPrefillTokens ?? 0, cachedShare: prefixHitShare(inst.get(id)?.status.prefixCacheTokens) };
    }))
    : undefined;
  const d = dispatchRequest(req, v, cfg.profile, types, { headroom: cfg.headroom, ...(prefer ? { prefer } : {}) });
  if (spill && d.capped) return undefined;
  const id = d.id;
  inst.set(id, countDispatched(inst.get(id)!, req.inputTokens));
  // the router remembers what the instance's KV cache can hold, not more (its engine evicts the rest)
  if (chunks) s.prefixes.record(id, chunks.hashes, (cfg.profile && kvCacheChunks(cfg.profile, v.find((x) => x.id === id)?.tp ?? 1, unit * tokensPerUnit)) ?? Infinity);
  return id;
}

/**
 * The leader elections the gateway follows (the cluster planner's, each pool's), from the managers'
 * heartbeats: per role, when a live heartbeat last named its leader, and when the last gap longer than
 * deadAfterMs (a leader dead, no successor leading yet) ended. Bounded: at most MAX_ELECTION_ROLES roles.
 */
export interface ElectionState { roles: Map<string, { seenMs: number; gapEndedMs?: number }> }

/** Roles (the cluster planner and the pools) an ElectionState follows at most. */
export const MAX_ELECTION_ROLES = 4096;

export function initialElectionState(): ElectionState {
  return { roles: new Map() };
}

/** A heartbeat named the leader of `role` at `now`: a silence of more than deadAfterMs before it was an election, ended now. */
export function electionLeaderSeen(s: ElectionState, role: string, now: number, deadAfterMs: number): void {
  const r = s.roles.get(role);
  if (!r && s.roles.size >= MAX_ELECTION_ROLES) return;
  const gapEndedMs = r && now - r.seenMs > deadAfterMs ? now : r?.gapEndedMs;
  s.roles.set(role, gapEndedMs !== undefined ? { seenMs: now, gapEndedMs } : { seenMs: now });
}

/**
 * The last time an election was under way, as of `now`: `now` while a role's leader was last named more than
 * deadAfterMs but less than holdMs ago (dead, and a successor may still lead: the longest a request's intake
 * waits for it), else the end of the latest gap; undefined when none was seen.
 */
export function lastElectionMs(s: ElectionState, now: number, deadAfterMs: number, holdMs: number): number | undefined {
  let last: number | undefined;
  for (const r of s.roles.values()) {
    const silent = now - r.seenMs;
    const t = silent > deadAfterMs && silent < holdMs ? now : r.gapEndedMs;
    if (t !== undefined && (last === undefined || t > last)) last = t;
  }
  return last;
}
