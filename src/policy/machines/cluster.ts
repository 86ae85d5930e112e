/**
 * The cluster manager's scaling brain as a pure state machine: `clusterStep(state, event, now) -> {state,
 * effects}`. No I/O, no wall clock, no timers. It owns the leader's decisions (paper Sec. IV-A):
 * - the load forecast (one sample of the observed load per sample period into the forecaster);
 * - when a scale epoch runs: on its timer, once at the start, early on a forecast change (the plan of the
 *   forecast differs from the plan in force on two observations in a row, at most once per minEpochGapMs),
 *   and ahead of a forecast rise (the servers the next epoch adds, started instanceStartupMs early);
 * - the plan (policy planCluster: whole servers per pool, merges) and the server placement: a pool keeps
 *   the servers it holds (fewer moves), then takes free ones in order; with configured pools (or no
 *   profile) an even split of every server's GPUs;
 * - the pool assignments that change, and the routing table (type -> pool);
 * - intake's routing: the pool of a request's type, then (overloaded) the pools serving longer requests, along
 *   policy longerType, the rule the plan forwards a pool's load above its servers by.
 * - server power, when configured (./cluster-power.ts): drained servers powered off beyond a reserve, servers
 *   powered on ahead of the plans that need them, a server that does not come back marked failed and planned around.
 * Effects: arm a timer, assign a pool (store + command), power a server on or off, publish a decision event.
 */
import { REQUEST_TYPES, type LengthClass, type RequestType } from '../../../protocols/request-types.ts';
import type { PoolAssignment } from '../../../protocols/control.ts';
import type { Profile } from '../../model/profile-types.ts';
import { LoadForecaster, type ForecasterState } from '../forecast.ts';
import { epochAfterObservation, epochAfterRun, forecastError, initialEpochLength, meanError, type EpochLengthConfig, type EpochLengthState } from '../epoch-length.ts';
import { longerType, planCluster, serversToStartAhead, sharedPrefixClasses, type ClusterPlanResult } from '../cluster.ts';
import {
  afterPlacement, clonePower, idlePower, initialPowerState, observePower, plannableServers, powerResult, usableServers, wakeAhead,
  type AliveServer, type PowerEffect, type PowerMachineState, type PowerResult, type ServerPowerConfig,
} from './cluster-power.ts';

type Load = Partial<Record<RequestType, number>>;

export interface ClusterServer { id: string; gpus: number }

export interface ClusterMachineConfig {
  /** who issues the assignments (the leader's actor id). */
  issuer: string;
  profile?: Profile;
  /** the pools (configured, or one per type). */
  pools: { id: string; types: RequestType[] }[];
  /** pools were configured: a static split, no planning. */
  configuredPools: boolean;
  /** scale epoch, ms. */
  epochMs: number;
  /** status interval of the actors, ms (the observation tick is 4 of them, at least 1 s). */
  statusIntervalMs: number;
  /** least time between two epochs run early on a forecast change, ms. */
  minEpochGapMs: number;
  /** time a new instance takes to serve, ms (servers are granted this long before the epoch that needs them). */
  instanceStartupMs: number;
  /** window whose highest observed load floors the forecast, ms. */
  recentWindowMs: number;
  /** SLO capacity kept free (as dispatch and the re-shard plan keep it): the plan is sized for forecast / (1 - headroom). Default 0. */
  headroom?: number;
  /**
   * the TP degrees the pools split a server into (policy planCluster splitTps): a server's capacity is that of the
   * best of them. Default [8] (the paper's TP8 servers); the TP degrees the pools re-shard to when they do.
   */
  splitTps?: readonly number[];
  /**
   * the forecaster's safety margin on its peak (0.1 = +10%; default the forecaster's, 10%). The plan then keeps
   * `headroom` of SLO capacity free on top of it.
   */
  forecastMargin?: number;
  /**
   * server power decisions (./cluster-power.ts); absent: no server is ever powered off or on. With it, events carry
   * every configured server in `servers` and those whose node agent reports in `alive`.
   */
  power?: ServerPowerConfig;
  /**
   * a shorter epoch while the forecast is confident (../epoch-length.ts; fullMs is epochMs): every epoch plans for the
   * current length's horizon and recent window (at most recentWindowMs), and once that length has passed since the last
   * epoch an observation whose plan only takes servers away (scalesIn) runs one. Absent: every epoch is epochMs.
   */
  adaptiveEpoch?: Omit<EpochLengthConfig, 'fullMs'>;
  /**
   * how long a silent server's grants are kept at a new leader's first epoch (policy keptServers), ms: a server silent
   * longer is placed as gone. Default keepSilentForMs(3000); the live planner's is keepSilentForMs(liveness.deadAfterMs).
   */
  keepSilentForMs?: number;
}

/**
 * The bound on a silent server's kept grants: 10 x deadAfterMs, at least 30 s. It covers a network partition and the
 * JetStream elections at its heal (measured in test/chaos/multi-host.test.ts: a cut of ~8 s, leases lapsing for seconds
 * after the heal) and a host frozen past the liveness window while the planner changes (~10 s in
 * test/integration/planner-takeover-silent-host.test.ts); a host silent longer is dead, and its GPUs go to the pools
 * alive at the first epoch after it, however often the leader changes meanwhile.
 */
export const keepSilentForMs = (deadAfterMs: number): number => Math.max(30_000, 10 * deadAfterMs);

export interface ClusterMachineState {
  /** the last epoch number issued (or found in the store). */
  epoch: number;
  /** input classes whose pools reuse prefixes, from the last epoch that reported reuse (sharedPrefixClasses). */
  sharedClasses?: LengthClass[];
  assignments: Map<string, PoolAssignment>;
  /** type -> pool intake routes to (a retired pool's entry stays; intake skips retired pools). */
  route: Map<RequestType, string>;
  forecaster: ForecasterState;
  lastSampleMs: number;
  lastEpochMs: number;
  /** observations in a row whose plan differs from the plan in force. */
  mismatchTicks: number;
  /** servers per pool of the plan in force (undefined before the first planned epoch or with configured pools). */
  planServers?: Map<string, number>;
  lastForecast?: Load;
  /** server power (with cfg.power). */
  power?: PowerMachineState;
  /** the epoch's current length and the forecast's recent error (with cfg.adaptiveEpoch). */
  epochLen?: EpochLengthState;
  /** the servers the last epoch of this leader placed over (undefined before its first): one back from silence is placed again. */
  placedServers?: string[];
}

/** What the power decisions observe (with cfg.power): servers whose node agent reports, servers holding an instance. */
export interface PowerObservation { alive?: AliveServer[]; busy?: string[] }

export type ClusterEvent =
  /** this replica became the leader: arm the timers. */
  | { type: 'lead' }
  /** assignments found in the store (a new leader, a restart). */
  | { type: 'assignments_loaded'; assignments: PoolAssignment[] }
  /** the observation tick: the load the live instances measure, the servers whose agent is alive. */
  | ({ type: 'observe'; observed: Load; servers: ClusterServer[] } & PowerObservation)
  /** server power only (the simulator when a server it powered on comes up): what observe updates, without a forecast sample. */
  | ({ type: 'power_tick'; observed: Load; servers: ClusterServer[] } & PowerObservation)
  /** the power driver's outcome for a 'power' effect. */
  | { type: 'power_result'; result: PowerResult }
  /**
   * a scale epoch is due (timer, start-up, or the start-ahead timer with the next epoch's forecast).
   * `forecast`: the peak to plan for, given by the caller in place of the machine's forecaster (the
   * simulator's forecaster knows the trace); then nothing is started ahead (the caller's forecast covers it).
   * `prefixReuse`: each type's pool's measured prefix reuse (share of prompt tokens served from cache): input classes
   * that reuse prefixes get one pool (policy sharedPrefixClasses).
   * `keep`: servers placed over although silent now, where the assignments in force grant them (policy keptServers:
   * a new leader's first epoch, so that a host a partition or a NATS election hid for seconds keeps its pools' grants
   * and its instances; the epoch timer's epochs place over the servers alive). `silentMs`: how long each server of
   * `keep` has been silent as this process saw it (since its last node status, else since the process began to
   * listen); one silent cfg.keepSilentForMs or longer, or without an entry, is not kept.
   */
  | ({ type: 'epoch'; why: string; observed: Load; servers: ClusterServer[]; extra?: Load; forecast?: Load; prefixReuse?: Load; keep?: ClusterServer[]; silentMs?: Readonly<Record<string, number>> } & PowerObservation);

export type ClusterEffect =
  | { kind: 'arm_timer'; timer: 'observe' | 'epoch'; everyMs: number }
  /** one-shot; a 'start_ahead' replaces the one armed before. */
  | { kind: 'arm_timer'; timer: 'first_epoch' | 'start_ahead'; inMs: number; forecast?: Load }
  | { kind: 'assign'; assignment: PoolAssignment }
  | { kind: 'event'; event: 'scale' | 'merge'; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> }
  | PowerEffect;

export function initialClusterState(cfg: Pick<ClusterMachineConfig, 'pools'>): ClusterMachineState {
  const route = new Map<RequestType, string>();
  for (const p of cfg.pools) for (const t of p.types) route.set(t, p.id);
  return { epoch: 0, assignments: new Map(), route, forecaster: { history: {}, holt: {}, firstT: null }, lastSampleMs: 0, lastEpochMs: 0, mismatchTicks: 0 };
}

/** The forecaster's sample period: a minute (its unit) in production, shorter when the epoch is short (tests). */
export const sampleMsOf = (cfg: Pick<ClusterMachineConfig, 'epochMs'>) => Math.min(60_000, Math.max(1000, cfg.epochMs / 30));

/**
 * The servers an epoch places over: those alive, and of `keep` (in its order) those the active assignments grant GPUs on,
 * so that a leader's first epoch does not take a silent host's grants away (its pool leader would stop the instances
 * there once the host is heard again). Only a server silent for less than `boundMs` (`silentMs`, keepSilentForMs) is
 * kept: one silent longer is gone and loses its grants here; one kept loses them at the next timed epoch if still silent.
 */
export function keptServers(alive: ClusterServer[], keep: ClusterServer[], assignments: ReadonlyMap<string, PoolAssignment>, silentMs: Readonly<Record<string, number>>, boundMs: number): ClusterServer[] {
  const granted = new Set<string>();
  for (const a of assignments.values()) if (a.state === 'active') for (const g of a.grants) if (g.gpuIds.length) granted.add(g.node);
  const ids = new Set(alive.map((x) => x.id));
  const extra = keep.filter((x) => !ids.has(x.id) && granted.has(x.id) && (silentMs[x.id] ?? Infinity) < boundMs);
  if (!extra.length) return alive;
  const take = new Set([...ids, ...extra.map((x) => x.id)]);
  // in the order of `keep` (the configured one): the even split gives each server the pool it had
  const kept = new Set(keep.map((x) => x.id));
  return [...keep.filter((x) => take.has(x.id)), ...alive.filter((x) => !kept.has(x.id))];
}

/**
 * Servers alive that the last epoch of this leader did not place over (back from silence, or reporting late) and that
 * no active pool holds: the plan in force is placed again over the servers alive (an epoch with the forecast it
 * planned for), so a host back from a partition or a restart serves again without waiting for the epoch timer.
 */
export function serversBack(s: Pick<ClusterMachineState, 'placedServers' | 'assignments'>, servers: ClusterServer[]): string[] {
  if (!s.placedServers) return [];
  const placed = new Set(s.placedServers);
  const granted = new Set<string>();
  for (const a of s.assignments.values()) if (a.state === 'active') for (const g of a.grants) granted.add(g.node);
  return servers.filter((x) => !placed.has(x.id) && !granted.has(x.id)).map((x) => x.id);
}

/**
 * The load the machine observes (its 'observe' and 'epoch' events' `observed`): the sum, by type, of the load estimates
 * (InstanceStatus.loadByType, each instance's EWMA of its admissions) of the instances heard within deadAfterMs (counted
 * from `sinceMs` at the earliest: link-watch.ts silenceFromMs). The live leader sums its instances' last statuses; the
 * simulator sums its instances' estimates at the tick.
 */
export function observedLoad(instances: Iterable<{ st: { loadByType: Load }; seenMs: number }>, now: number, deadAfterMs: number, sinceMs = -Infinity): Load {
  const load: Load = {};
  for (const { st, seenMs } of instances) {
    if (now - Math.max(seenMs, sinceMs) > deadAfterMs) continue;
    for (const [t, v] of Object.entries(st.loadByType) as [RequestType, number][]) load[t] = (load[t] ?? 0) + v;
  }
  return load;
}

/**
 * The servers whose node agent reported within 3 x deadAfterMs (at least 3 s); every configured server before any has.
 * `sinceMs` (link-watch.ts silenceFromMs): silence counts from then at the earliest (the planner's own link was down).
 */
export function aliveServers(configured: ClusterServer[], seenMs: ReadonlyMap<string, number>, now: number, deadAfterMs: number, sinceMs = -Infinity): ClusterServer[] {
  const alive = configured.filter((s) => {
    const t = seenMs.get(s.id);
    return t !== undefined && now - Math.max(t, sinceMs) < Math.max(3 * deadAfterMs, 3000);
  });
  return alive.length ? alive : configured;
}

export function clusterStep(prev: ClusterMachineState, ev: ClusterEvent, now: number, cfg: ClusterMachineConfig): { state: ClusterMachineState; effects: ClusterEffect[] } {
  const s: ClusterMachineState = { ...prev, assignments: new Map(prev.assignments), route: new Map(prev.route) };
  const fx: ClusterEffect[] = [];
  if (cfg.power) s.power = prev.power ? clonePower(prev.power) : initialPowerState();
  const power = cfg.power && s.power ? { p: s.power, cfg: cfg.power } : undefined;
  switch (ev.type) {
    case 'lead':
      fx.push(
        { kind: 'arm_timer', timer: 'observe', everyMs: Math.max(1000, cfg.statusIntervalMs * 4) },
        { kind: 'arm_timer', timer: 'epoch', everyMs: cfg.epochMs },
        // the first plan once the nodes had time to report
        { kind: 'arm_timer', timer: 'first_epoch', inMs: Math.max(500, cfg.statusIntervalMs * 3) },
      );
      break;
    case 'assignments_loaded':
      for (const a of ev.assignments) {
        // the store may lag what this leader issued a moment ago: never an older epoch over a newer one
        const have = s.assignments.get(a.pool);
        if (have && have.epoch > a.epoch) continue;
        s.assignments.set(a.pool, a);
        s.epoch = Math.max(s.epoch, a.epoch);
        if (a.state === 'active') for (const t of a.types) s.route.set(t, a.pool);
      }
      break;
    case 'observe':
    case 'power_tick': {
      const replan = power && ev.alive ? observePower(power.p, ev.servers, ev.alive, now, power.cfg, fx) ?? takeReplan(power.p) : undefined;
      const epochBefore = s.epoch;
      if (ev.type === 'observe') observe(s, fx, ev, now, cfg);
      // without server power: a server back from silence gets its share of the plan in force again
      const back = power ? [] : serversBack(s, ev.servers);
      // the plan in force placed again (its forecast), now that servers came up or one failed
      const again = replan ?? (back.length ? `servers back: ${back.join(', ')}` : undefined);
      if (again && s.epoch === epochBefore) scaleEpoch(s, fx, again, ev.observed, ev.servers, now, cfg, undefined, s.lastForecast);
      if (power && ev.alive) idlePower(power.p, ev.servers, grantedServers(s), new Set(ev.busy ?? []), now, power.cfg, fx);
      break;
    }
    case 'power_result':
      if (power) {
        const replan = powerResult(power.p, ev.result, now, fx);
        if (replan) power.p.replan = replan;
      }
      break;
    case 'epoch':
      if (ev.prefixReuse) s.sharedClasses = sharedPrefixClasses(ev.prefixReuse);
      if (power && ev.alive) {
        observePower(power.p, ev.servers, ev.alive, now, power.cfg, fx);
        takeReplan(power.p);
      }
      scaleEpoch(s, fx, ev.why, ev.observed, ev.keep ? keptServers(ev.servers, ev.keep, s.assignments, ev.silentMs ?? {}, cfg.keepSilentForMs ?? keepSilentForMs(3000)) : ev.servers, now, cfg, ev.extra, ev.forecast);
      break;
  }
  return { state: s, effects: fx };
}

/** A re-plan a driver outcome asked for, taken once. */
function takeReplan(p: PowerMachineState): string | undefined {
  const r = p.replan;
  p.replan = undefined;
  return r;
}

/** Servers granted to an active pool. */
function grantedServers(s: ClusterMachineState): Set<string> {
  const out = new Set<string>();
  for (const a of s.assignments.values()) if (a.state === 'active') for (const g of a.grants) out.add(g.node);
  return out;
}

const forecasterOptions = (cfg: ClusterMachineConfig, windowMs = cfg.recentWindowMs) => ({ recentWindowMs: windowMs, ...(cfg.forecastMargin !== undefined ? { safetyMargin: cfg.forecastMargin } : {}) });

/** The length of the epoch in force: cfg.epochMs, or shorter while the forecast is confident (cfg.adaptiveEpoch). */
export function epochLengthOf(s: Pick<ClusterMachineState, 'epochLen'>, cfg: Pick<ClusterMachineConfig, 'epochMs' | 'adaptiveEpoch'>): number {
  return cfg.adaptiveEpoch && s.epochLen ? Math.min(cfg.epochMs, s.epochLen.lenMs) : cfg.epochMs;
}

/** The forecast over `horizonMs` from `at`; its recent window is at most the epoch in force (a shorter epoch reads a shorter window). */
function forecastOf(s: ClusterMachineState, cfg: ClusterMachineConfig, at: number, horizonMs: number): Load {
  const windowMs = Math.min(cfg.recentWindowMs, epochLengthOf(s, cfg));
  return LoadForecaster.reading(s.forecaster, forecasterOptions(cfg, windowMs)).forecast(at, horizonMs);
}

const epochLengthConfig = (cfg: ClusterMachineConfig): EpochLengthConfig | undefined => (cfg.adaptiveEpoch ? { ...cfg.adaptiveEpoch, fullMs: cfg.epochMs } : undefined);

/**
 * Every observation tick: the measured load feeds the forecaster (one sample per sample period); when the
 * plan of the current forecast needs other server counts than the plan in force on two ticks in a row, the
 * epoch runs early ("forecast change"), at most once per minEpochGapMs, so a load that outgrows the plan
 * does not wait for the epoch timer.
 */
function observe(s: ClusterMachineState, fx: ClusterEffect[], ev: { observed: Load; servers: ClusterServer[] }, now: number, cfg: ClusterMachineConfig): void {
  const lenCfg = epochLengthConfig(cfg);
  if (now - s.lastSampleMs >= sampleMsOf(cfg)) {
    const f = new LoadForecaster(forecasterOptions(cfg), s.forecaster);
    // the minute scored against the forecaster's prediction of it, before it is fed in
    if (lenCfg && s.forecaster.firstT !== null) s.epochLen = epochAfterObservation(s.epochLen ?? initialEpochLength(lenCfg), forecastError(f.predict(now), ev.observed, sampleMsOf(cfg) / 1000), lenCfg);
    f.observe(now, ev.observed);
    s.forecaster = f.snapshot();
    s.lastSampleMs = now;
  }
  if (!cfg.profile || cfg.configuredPools || !s.planServers) return;
  const lenMs = epochLengthOf(s, cfg);
  const f = forecastOf(s, cfg, now, lenMs);
  let want: Map<string, number>;
  try {
    want = serversPerPool(planOf(f, s.power ? plannableServers(s.power, ev.servers) : ev.servers, cfg.profile, cfg.headroom, cfg.splitTps, s.sharedClasses));
  } catch {
    return;
  }
  const have = s.planServers;
  if (lenCfg && lenMs < cfg.epochMs && now - s.lastEpochMs >= lenMs && scalesIn(have, want)) {
    // a confident forecast's short epoch: it only takes servers away (a rise has the forecast-change epoch and the
    // start-ahead; a move between pools costs an instance start each way)
    s.mismatchTicks = 0;
    scaleEpoch(s, fx, `short epoch: ${Math.round(lenMs / 1000)} s, forecast error ${(meanError(s.epochLen!) ?? 0).toFixed(2)}`, ev.observed, ev.servers, now, cfg);
    return;
  }
  const differs = [...new Set([...want.keys(), ...have.keys()])].some((p) => (want.get(p) ?? 0) !== (have.get(p) ?? 0));
  s.mismatchTicks = differs ? s.mismatchTicks + 1 : 0;
  if (s.mismatchTicks >= 2 && now - s.lastEpochMs >= cfg.minEpochGapMs) {
    s.mismatchTicks = 0;
    const fmt = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([p, n]) => `${p}:${n}`).join(',') || 'none';
    scaleEpoch(s, fx, `forecast change: plan ${fmt(have)} -> ${fmt(want)} (observed ${JSON.stringify(round3(ev.observed))})`, ev.observed, ev.servers, now, cfg);
  }
}

/** A plan that only takes servers away: no pool gains one, and at least one loses one. */
export function scalesIn(have: ReadonlyMap<string, number>, want: ReadonlyMap<string, number>): boolean {
  const sum = (m: ReadonlyMap<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return [...want].every(([p, n]) => n <= (have.get(p) ?? 0)) && sum(want) < sum(have);
}

/** The plan for a forecast peak, sized for it plus the headroom. */
export function planOf(forecast: Load, servers: ClusterServer[], profile: Profile, headroom = 0, splitTps?: readonly number[], shared?: readonly LengthClass[]): ClusterPlanResult {
  const peak: Load = {};
  for (const [t, v] of Object.entries(forecast) as [RequestType, number][]) if (v) peak[t] = v / (1 - headroom);
  return planCluster({ forecastPeak: peak, profile, totalServers: servers.length, gpusPerServer: servers[0]?.gpus ?? 8, ...(splitTps ? { splitTps } : {}), ...(shared?.length ? { sharedPrefixClasses: shared } : {}) });
}

function serversPerPool(plan: { pools: { pool: { id: string }; servers: number }[] }): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of plan.pools) if (p.servers > 0) m.set(p.pool.id, p.servers);
  // nothing planned: the longest pool keeps one server
  if (!m.size) m.set(plan.pools[plan.pools.length - 1]?.pool.id ?? 'pool-LL', 1);
  return m;
}

/**
 * The scale epoch: forecast -> planCluster -> whole servers per pool (a pool keeps the servers it has where
 * it can, so a scale step only moves the difference) -> the assignments that changed. Then
 * serversToStartAhead: servers the forecast of the NEXT epoch adds are granted instanceStartupMs before it.
 * `extra`: a forecast to plan for as well (max per type; the start-ahead epoch).
 */
function scaleEpoch(s: ClusterMachineState, fx: ClusterEffect[], why: string, observed: Load, servers: ClusterServer[], now: number, cfg: ClusterMachineConfig, extra?: Load, given?: Load): void {
  s.lastEpochMs = now;
  s.placedServers = servers.map((x) => x.id);
  // the next epoch's length (a confident forecast shortens it), the horizon this one plans for; a start-ahead epoch
  // or a re-placement of the plan in force (`extra`, `given`) leaves it
  const lenCfg = epochLengthConfig(cfg);
  if (lenCfg && !extra && !given) s.epochLen = epochAfterRun(s.epochLen ?? initialEpochLength(lenCfg), lenCfg);
  const epochMs = epochLengthOf(s, cfg);
  const forecast = { ...(given ?? forecastOf(s, cfg, now, epochMs)) };
  if (extra) for (const [t, v] of Object.entries(extra) as [RequestType, number][]) forecast[t] = Math.max(forecast[t] ?? 0, v);
  s.lastForecast = forecast;
  const pools = cfg.pools;
  const grants = new Map<string, { node: string; gpuIds: number[] }[]>();
  const types = new Map<string, RequestType[]>(pools.map((p) => [p.id, [...p.types]]));
  const merges: { from: string; into: string }[] = [];
  let rationale: unknown = 'static split';
  let startAhead: unknown;
  let capped: { needed: number; have: number } | undefined;
  const allEight = servers.every((x) => x.gpus % 8 === 0);
  if (cfg.profile && !cfg.configuredPools && allEight) {
    // with server power: the plan counts on servers that are or can be powered; grants go to powered ones only
    const power = cfg.power && s.power ? { p: s.power, cfg: cfg.power } : undefined;
    const plannable = power ? plannableServers(power.p, servers) : servers;
    const usable = power ? usableServers(power.p, servers) : servers;
    // the paper's plan: whole servers per pool, floor(PL/ML), remainder forwarded, merges
    const plan = planOf(forecast, plannable, cfg.profile, cfg.headroom, cfg.splitTps, s.sharedClasses);
    rationale = plan.rationale;
    capped = plan.capped ? { needed: plan.neededServers, have: servers.length } : undefined;
    const count = serversPerPool(plan);
    // a pool keeps the servers it holds (fewer moves), then takes free ones in order
    const owner = new Map<string, string>();
    for (const a of s.assignments.values()) if (a.state === 'active') for (const g of a.grants) owner.set(g.node, a.pool);
    const left = new Set(usable.map((x) => x.id));
    const take = (pool: string, x: ClusterServer) => {
      left.delete(x.id);
      grants.set(pool, [...(grants.get(pool) ?? []), { node: x.id, gpuIds: range(x.gpus) }]);
    };
    for (const [pool, n] of count) for (const x of usable) if ((grants.get(pool)?.length ?? 0) < n && left.has(x.id) && owner.get(x.id) === pool) take(pool, x);
    for (const [pool, n] of count) for (const x of usable) if ((grants.get(pool)?.length ?? 0) < n && left.has(x.id)) take(pool, x);
    const wanted = [...count.values()].reduce((a, b) => a + b, 0);
    if (power) afterPlacement(power.p, servers, wanted, [...grants.values()].reduce((n, g) => n + g.length, 0), now, fx);
    for (const p of plan.pools) types.set(p.pool.id, p.pool.types);
    merges.push(...plan.merges);
    if (!plan.pools.some((p) => p.servers > 0) && servers.length) {
      // nothing planned (no load yet): the longest pool keeps one server and serves every type
      const last = [...count.keys()][0]!;
      types.set(last, [...REQUEST_TYPES]);
      for (const p of pools) if (p.id !== last && !merges.some((m) => m.from === p.id)) merges.push({ from: p.id, into: last });
    }
    s.planServers = count;
    // start ahead of a forecast rise: what the next epoch's forecast adds, granted instanceStartupMs early
    if (epochMs > 0 && !extra && !given) {
      const next = forecastOf(s, cfg, now + epochMs, epochMs);
      const ahead = serversToStartAhead(plan, planOf(next, plannable, cfg.profile, cfg.headroom, cfg.splitTps, s.sharedClasses), cfg.instanceStartupMs, epochMs);
      if (ahead.length) {
        startAhead = ahead;
        const at = Math.min(...ahead.map((x) => x.startInMs));
        // the servers it adds are powered bootMs before it
        if (power) wakeAhead(power.p, wanted + ahead.reduce((n, x) => n + x.servers, 0), at, now, power.cfg);
        fx.push({ kind: 'arm_timer', timer: 'start_ahead', inMs: at, forecast: next });
        fx.push({
          kind: 'event', event: 'scale', summary: `start ahead: ${ahead.map((x) => `+${x.servers} ${x.poolId}`).join(', ')} in ${Math.round(at / 1000)} s`,
          decision: { startAhead: ahead }, inputs: { next, startupS: cfg.instanceStartupMs / 1000, epochS: epochMs / 1000 },
        });
      }
    }
  } else {
    // configured pools: split every server's GPUs evenly among the pools (one share per pool and server
    // when there are more pools than servers), grants on one node merged
    const per = pools.length;
    const chunksPerServer = Math.max(1, Math.ceil(per / Math.max(1, servers.length)));
    let k = 0;
    for (const x of servers) {
      const share = Math.max(1, Math.floor(x.gpus / chunksPerServer));
      for (let j = 0; j < chunksPerServer && (j + 1) * share <= x.gpus; j++, k++) {
        const p = pools[k % per]!;
        const list = grants.get(p.id) ?? [];
        const same = list.find((g) => g.node === x.id);
        if (same) same.gpuIds.push(...range(share, j * share));
        else list.push({ node: x.id, gpuIds: range(share, j * share) });
        grants.set(p.id, list);
      }
    }
  }
  const epoch = ++s.epoch;
  const mergedInto = new Map(merges.map((m) => [m.from, m.into]));
  const ids = new Set([...pools.map((p) => p.id), ...grants.keys()]);
  const changes: Record<string, unknown>[] = [];
  for (const id of ids) {
    const g = grants.get(id) ?? [];
    const into = mergedInto.get(id);
    const state = g.length ? 'active' : 'retired';
    const prev = s.assignments.get(id);
    const a: PoolAssignment = {
      v: 1, pool: id, types: state === 'active' ? types.get(id)! : (pools.find((p) => p.id === id)?.types ?? types.get(id)!), grants: g, epoch, state,
      issuedBy: cfg.issuer, atMs: now, forecast: Object.fromEntries(Object.entries(forecast).filter(([t]) => (types.get(id) ?? []).includes(t as RequestType))),
    };
    if (into) a.mergedInto = into;
    const same = prev && prev.state === a.state && JSON.stringify(prev.grants) === JSON.stringify(a.grants) && JSON.stringify(prev.types) === JSON.stringify(a.types);
    if (same) continue;
    changes.push({ pool: id, state, gpus: g.reduce((n, x) => n + x.gpuIds.length, 0), mergedInto: into });
    s.assignments.set(id, a);
    if (a.state === 'active') for (const t of a.types) s.route.set(t, a.pool);
    fx.push({ kind: 'assign', assignment: a });
  }
  if (changes.length) {
    fx.push({
      kind: 'event', event: 'scale', summary: `cluster epoch ${epoch} (${why}): ${changes.length} pool(s) changed`,
      decision: { epoch, why, changes, merges, startAhead, ...(capped ? { capped } : {}), ...(lenCfg ? { nextEpochS: epochMs / 1000 } : {}) },
      inputs: { forecast, observed, servers: servers.map((x) => x.id), rationale, planner: 'heuristic', ...(lenCfg && s.epochLen ? { forecastError: meanError(s.epochLen) ?? null } : {}) },
    });
    for (const m of merges) fx.push({ kind: 'event', event: 'merge', summary: `${m.from} merged into ${m.into}`, decision: m, inputs: { forecast } });
  }
}

/** The type of the next pool intake spills to: policy longerType, the rule the cluster plan forwards a pool's remainder by. */
export { longerType };

/**
 * Intake's dispatch to a pool found no leader to answer it (no responders, no reply in time: the leader dead,
 * its successor not serving yet, the pool's subjects not reachable from this server) and tries again until
 * `untilMs`. The request is held for that election: how long the caller waiting for its admission is told so
 * (TokenChunk.hold's forMs), while the pool has been without a reachable leader for less than `holdMs` since
 * `leaderlessSinceMs`; 0 past that (the caller's own budget decides).
 */
export function leaderlessHoldMs(leaderlessSinceMs: number, now: number, untilMs: number, holdMs: number): number {
  return now - leaderlessSinceMs < holdMs ? Math.max(0, Math.round(untilMs - now)) : 0;
}

/**
 * The pools intake tries for a request of type t, in order: the pool of t, then the pools serving longer
 * requests (a pool that refuses as overloaded spills to the next). A retired (merged) pool serves nothing;
 * a pool without a ready instance (just granted servers) is skipped while a longer pool has one, and a pool whose
 * ready instances are all silent past suspectAfterMs (`heard` false: a partition) while a longer pool has one heard
 * (policy suspect.ts; with none heard anywhere, the dispatcher's own loop stalled, the live ready ones count).
 */
export function intakePools(s: Pick<ClusterMachineState, 'route' | 'assignments'>, t: RequestType, hasReady: (pool: string) => boolean, heard?: (pool: string) => boolean): string[] {
  return routePools(s.route, (p) => s.assignments.get(p)?.state === 'retired', t, hasReady, heard);
}

/** intakePools over a routing table (type -> pool) and a retired test: the gateway's routing runs it too (machines/router.ts). `heard` implies `hasReady`. */
export function routePools(route: ReadonlyMap<RequestType, string>, retired: (pool: string) => boolean, t: RequestType, hasReady: (pool: string) => boolean, heard?: (pool: string) => boolean): string[] {
  const candidates: string[] = [];
  for (let x: RequestType | undefined = t; x; x = longerType(x)) {
    const p = route.get(x);
    if (p && !candidates.includes(p) && !retired(p)) candidates.push(p);
  }
  const ready = heard && candidates.some(heard) ? heard : hasReady;
  const anyReady = candidates.some(ready);
  return anyReady ? candidates.filter(ready) : candidates;
}

/**
 * The offers intake (and the gateway's routing, and the simulator) make along a chain of pools (routePools): each
 * pool with `spill` (InferenceRequest.spill: a pool whose every instance is at its SLO cap refuses the request as
 * overloaded, and the next pool takes it, as the cluster plan forwards the load above a pool's floor(D) servers to
 * the next pool, sized for it), then, every pool having refused, the chain again without it (the request's own
 * pool takes it at its cap: its least-loaded instance, whose emergency ladder acts; a pool whose instances refuse
 * it, full, spills it to the next). A chain of one pool is one offer without `spill`.
 */
export function spillPasses(pools: readonly string[]): { pool: string; spill: boolean }[] {
  const plain = pools.map((pool) => ({ pool, spill: false }));
  return pools.length < 2 ? plain : [...pools.map((pool) => ({ pool, spill: true })), ...plain];
}

/** One offer of intake's walk along a chain (spillPasses): the pool, and whether it may pass the request on at its SLO cap. */
export interface SpillOffer<P = string> {
  pool: P;
  spill: boolean;
}

/** A pool's answer to an offer, as far as the walk reads it. */
export interface SpillAnswer {
  ok: boolean;
  error?: { code: string };
}

/** Where intake's walk along its offers stands: the offers left, the last pool's refusal as overloaded. */
export interface SpillWalk<P = string, A extends SpillAnswer = SpillAnswer> {
  readonly offers: readonly SpillOffer<P>[];
  readonly last?: A;
}

/** The walk's next move: an offer to make (then spillNext with its answer), or its end with the answer to give (none: no pool answered). */
export type SpillMove<P = string, A extends SpillAnswer = SpillAnswer> = { kind: 'offer'; offer: SpillOffer<P>; walk: SpillWalk<P, A> } | { kind: 'end'; answer?: A };

/**
 * Intake's walk along its offers (spillPasses), the rule the cluster manager's intake, the gateway's routing and the
 * simulator all run: an admission, or a refusal other than 'overloaded', ends it with that answer; a refusal as
 * overloaded, or no answer at all (the pool had no instance to ask), goes on to the next offer; past the last offer
 * the walk ends with the last overloaded refusal. Begin with spillNext({ offers }), no answer.
 */
export function spillNext<P, A extends SpillAnswer>(w: SpillWalk<P, A>, answer?: A): SpillMove<P, A> {
  if (answer && (answer.ok || answer.error?.code !== 'overloaded')) return { kind: 'end', answer };
  const last = answer ?? w.last;
  const [offer, ...offers] = w.offers;
  if (!offer) return last ? { kind: 'end', answer: last } : { kind: 'end' };
  return { kind: 'offer', offer, walk: last ? { offers, last } : { offers } };
}

function round3(o: Partial<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round((v ?? 0) * 1000) / 1000]));
}

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}
