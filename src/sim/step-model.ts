/**
 * Step fidelity (./engine.ts): every instance is a BatchingCore (src/engine/core.ts) stepped on the virtual clock,
 * its manager the live instance machine (./instance-brain.ts), its pool's dispatch the live pool machine
 * (./pool-leader.ts); this file interprets their effects: admission, engine steps, tokens, moves, clock changes.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import { requestSloOf } from '../policy/slo.ts';
import * as decide from './decide.ts';
import { InstanceBrain, LIVE_INSTANCE_DEFAULTS } from './instance-brain.ts';
import type { PoolMachineConfig } from './pool-leader.ts';
import { reconfigurationOf } from '../telemetry/reconfiguration.ts';
import { routePools, spillNext, spillPasses } from '../policy/machines/cluster.ts';
import type { InstanceEffect, InstanceEvent, InstanceMachineConfig } from '../policy/machines/instance.ts';
import type { CoreRequest } from '../engine/core-types.ts';
import { simRequest } from './pool-leader.ts';
import { canServe, leastLoadedUnderCap, leastOutstanding } from './baseline-dispatch.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import { overContext, type TraceRecord } from './trace.ts';
import { SimClocks } from './clock-epochs.ts';
import { migrateDraining } from './drain-migration.ts';
import { TYPE_INDEX, LOAD_WINDOW_S, MACHINE_TIME, BRAIN_TICK_MS, PEER_STATUS_MS, type SimInstance, type SimPool, type ReqState } from './state.ts';

export abstract class SimStepModel extends SimClocks {
  /**
   * Step fidelity: each instance's manager is the live instance machine (./instance-brain.ts). Its effects
   * act on the simulated instance: start a request in the batching core, fail one, change the clock (after
   * clockChangeMs), move queued requests to pool peers (the pool's placement: dispatch among the peers with
   * room, as the pool machine's move does).
   */
  protected newBrain(inst: SimInstance, now: number, windowStartMs = now, priorEpochMs?: number): InstanceBrain {
    const k = this.knobs;
    const cfg: InstanceMachineConfig = {
      tp: inst.tp, headroom: this.headroom, epochMs: this.ep.instanceS * 1000, tickMs: BRAIN_TICK_MS, timeScale: MACHINE_TIME.timeScale,
      maxInEngine: this.limits.maxInEngine, maxQueued: this.limits.maxQueued, deadAfterMs: this.o.deadAfterMs ?? LIVE_INSTANCE_DEFAULTS.deadAfterMs,
      moveQueueAbove: this.limits.moveQueueAbove, rejectAfterMs: this.limits.rejectAfterMs, retryAfterS: this.limits.retryAfterS,
      // the clock is the machine's with a dynamic-clock policy; the oracle sets it (pool set_clock); else max clock
      ...(k.dynamicClock && !k.oracle ? { profile: this.p } : {}),
      emergency: k.emergency,
    };
    return new InstanceBrain(cfg, {
      start: (id, t) => {
        const r = this.admitted.get(id);
        this.admitted.delete(id);
        if (!r || !inst.core) return;
        // the engine takes it the data path's time after the start (SimOptions.requestPathMs.startToEngineMs)
        if (this.pathStartToEngineMs > 0) this.handoffs.push({ atMs: Math.max(t + this.pathStartToEngineMs, this.handoffs.at(-1)?.atMs ?? 0), inst, r });
        else this.toEngine(inst, r, t);
      },
      fail: (id, _outcome, t) => {
        this.admitted.delete(id);
        if (this.dropRequest(id, t)) this.rejected++;
      },
      setClock: (mhz, why, inputs, t) => {
        // the GPU takes its set_clocks one after another, as the live actor's chain applies them: each starts when
        // the one before it took effect, and changes the clock the GPU will have then (a change in flight, else now)
        const chain = (inst.clockChain ??= []);
        const change = mhz !== (chain.at(-1)?.mhz ?? inst.clockMhz);
        const from = chain.length ? Math.max(t, inst.clockFreeAtMs ?? t) : t;
        if (change && !chain.length && inst.core && !inst.inHeap) {
          // an idle engine: the change (clockChangeMs) comes before its next step (a prompt the raise is for)
          this.setClockNow(inst, mhz, t);
          inst.inHeap = true;
          this.stepHeap.push(t + this.cost.clockChangeMs, inst);
        }
        // a change takes clockChangeMs at the old clock; the machine hears back when it took effect
        inst.clockFreeAtMs = from + (change ? this.cost.clockChangeMs : 0);
        chain.push({ mhz, why, inputs });
        this.clockHeap.push(inst.clockFreeAtMs, inst);
      },
      move: (ids, t) => this.moveToPeers(inst, ids, t), engine: (e, t) => this.engineSleepMode(inst, e, t), prefixCache: () => inst.core?.prefixCacheTokens(), // the engine's counters, as the live manager scrapes them
      // counted as the live cluster counts them (dynamollm_reconfigurations_total, src/telemetry reconfigurationOf)
      event: (e) => {
        const r = reconfigurationOf({ kind: e.event, decision: e.decision });
        if (r === 'emergency') this.reconf.emergency++;
        else if (r === 'clock') this.reconf.clock++;
      },
      ...(this.inp.onInstanceStep ? { tap: (ev: InstanceEvent, t: number, fx: InstanceEffect[]) => this.inp.onInstanceStep?.(inst.id, cfg, ev, t, fx) } : {}),
    }, now, this.p.clocksMhz, windowStartMs, priorEpochMs);
  }

  /** A request leaves the simulation without being served; false if it had left already. */
  protected dropRequest(id: string, now: number): boolean {
    const st = this.reqs.get(id);
    this.classifier.forget(id);
    if (!st) return false;
    this.reqs.delete(id);
    st.inst.outstanding--;
    st.inst.pool.leader?.record(id, st.inst.id, now);
    if (st.inst.state === 'draining') this.maybeStop(st.inst, now);
    return true;
  }

  /** SimOptions.drainMigration: the draining instance's long requests continue on its pool's peers (./drain-migration.ts). */
  protected override migrateOnDrain(inst: SimInstance, now: number): void {
    if (this.o.drainMigration) migrateDraining(inst, now, { reqs: this.reqs, admitted: this.admitted, leaderOf: (p, t) => this.leaderOf(p, t) }, this.o.drainMigration, this.drainLog);
  }

  /** Sleep mode's engine calls (the instance machine's engine_sleep / engine_wake): carried out by ./sleep-standby.ts. */
  protected engineSleepMode(_inst: SimInstance, _e: Extract<InstanceEffect, { kind: 'engine_sleep' | 'engine_wake' }>, _now: number): void {}

  /** Emergency step 3: the pool leader's machine places the moved requests on peers with room (its 'move'). */
  protected moveToPeers(from: SimInstance, ids: string[], now: number): string[] {
    const reqs: InferenceRequest[] = [];
    for (const id of ids) {
      const st = this.reqs.get(id);
      const r = this.admitted.get(id);
      if (st && r) reqs.push(simRequest(r, st.pred, st.moves + 1));
    }
    if (!reqs.length) return [];
    return this.leaderOf(from.pool, now).move(from.id, reqs, from.pool.instances, now).map((p) => p.id);
  }

  /** Prefix routing (SimOptions.prefixRouting): the pool machine's dispatch prefers the instance whose cache holds the most of the prompt. */
  protected override dispatchPreference(pool: SimPool): Pick<PoolMachineConfig, 'prefer'> {
    if (!this.o.prefixRouting) return {};
    return { prefer: (req: InferenceRequest, ids: string[]) => this.preferPrefix(ids.map((x) => pool.instances.find((i) => i.id === x)!), (this.arriving.get(req.id)?.r ?? this.admitted.get(req.id))?.prefixHashes, req.inputTokens, this.leaderNow) };
  }

  /**
   * A pool leader's 'admit' to an instance: the instance machine's admission (a KV cache that cannot hold the
   * request refuses it as overloaded). A new request is counted on its instance; a moved one leaves its old one.
   */
  protected override leaderAdmit(inst: SimInstance, m: InferenceRequest, now: number): Admission {
    const arr = this.arriving.get(m.id);
    const r = arr?.r ?? this.admitted.get(m.id);
    const old = arr ? undefined : this.reqs.get(m.id);
    const refuse = (code: 'overloaded' | 'unavailable', message: string): Admission => ({ v: 1, id: m.id, ok: false, error: { code, message, retryable: true, retryAfterS: this.limits.retryAfterS } });
    if (!r || (!arr && !old)) return refuse('unavailable', 'request gone');
    if (!inst.core?.canHold(r.promptTokens + r.outputTokens)) return refuse('overloaded', 'KV cache cannot hold the request');
    const st: ReqState = old ?? { arrivalMs: r.arrivalMs, ttftSloMs: arr!.slo, type: arr!.c.type, pred: arr!.c.pred, predTokens: arr!.c.predTokens, firstMs: -1, lastMs: -1, tbtSum: 0, tbtN: 0, inst, moves: 0 };
    const from = old?.inst;
    const moves = st.moves;
    st.inst = inst;
    st.moves = m.moves ?? 0;
    if (from) from.outstanding--;
    inst.outstanding++;
    this.reqs.set(m.id, st);
    const no = this.admitTo(inst, r, st, now);
    if (no) {
      st.moves = moves;
      inst.outstanding--;
      if (from) {
        st.inst = from;
        from.outstanding++;
      } else {
        this.reqs.delete(m.id);
        this.admitted.delete(m.id);
      }
      return refuse(no.code, no.message);
    }
    if (arr) this.arriving.delete(m.id);
    return { v: 1, id: m.id, ok: true, instance: inst.id };
  }

  /**
   * Walk an arrival along its offers (policy spillNext, as intake and the gateway's routing): `answer` the refusal or
   * admission of the offer made last (a held dispatch's, answered()); the walk ends admitted, or refused (counted).
   */
  protected offer(id: string, now: number, answer?: Admission): void {
    const a = this.arriving.get(id);
    if (!a) return;
    for (let move = spillNext(a.walk, answer); ; ) {
      if (move.kind === 'end') {
        if (move.answer?.ok) return;
        break;
      }
      a.walk = move.walk;
      const { pool: p, spill } = move.offer;
      const adm = this.leaderOf(p, now).dispatch(spill ? { ...a.msg, spill: true } : a.msg, p.instances, now);
      if (!adm) return; // held: answered()
      move = spillNext(a.walk, adm);
    }
    this.arriving.delete(id);
    this.rejected++;
  }

  /** A held dispatch's answer: admitted (counted by leaderAdmit), or refused (the walk goes on, as offer). */
  protected override answered(id: string, a: Admission, now: number): void {
    this.offer(id, now, a);
  }

  /** Offer a request to an instance's machine; its refusal, undefined when admitted. */
  protected admitTo(inst: SimInstance, r: CoreRequest, st: ReqState, now: number): { code: 'overloaded' | 'unavailable'; message: string } | undefined {
    if (!inst.brain) return { code: 'unavailable', message: 'no engine' };
    // the backpressure check reads the peers (an engine full, a request not moved before)
    if (st.moves === 0 && inst.brain.s.running.size >= inst.brain.config.maxInEngine) this.peersFor(inst, now);
    this.admitted.set(r.id, r);
    const ttftSloMs = (r.ttftDeadlineMs ?? now) - r.arrivalMs;
    const fx = inst.brain.step({ type: 'admit', req: { id: r.id, type: st.pred, inputTokens: r.promptTokens, arrivalMs: r.arrivalMs, ttftDeadlineMs: r.ttftDeadlineMs ?? now, ttftSloMs, moves: st.moves } }, now);
    for (const e of fx) if (e.kind === 'refused' && e.id === r.id) return e;
    return undefined;
  }

  /**
   * Peers' statuses reach an instance machine every PEER_STATUS_MS (the live status interval), handed over
   * when the machine reads them: before a tick with something to do, before an admission to a full engine.
   */
  protected peersFor(inst: SimInstance, now: number): void {
    const b = inst.brain;
    if (!b || inst.peersAtMs !== undefined && now - inst.peersAtMs < PEER_STATUS_MS) return;
    inst.peersAtMs = now;
    const peers: { id: string; queued: number; running: number; state: string }[] = [];
    for (const i of inst.pool.instances) {
      if (i === inst || i.state !== 'active' || !i.brain || !i.core || i.brain.s.lifecycle === 'sleeping') continue;
      const st = i.core.stats();
      peers.push({ id: i.id, queued: i.brain.s.queue.length + st.waiting, running: st.running, state: 'ready' });
    }
    if (peers.length) b.step({ type: 'peer_statuses', peers }, now);
  }

  /** The machines' tick (emergency ladder, load rise) on instances with something to do; pool leaders holding requests. */
  protected brainTick(now: number): void {
    for (const pool of this.pools) {
      if (pool.leader?.holding()) this.leaderOf(pool, now).tick(pool.instances, now);
      for (const inst of pool.instances) {
        if ((inst.state !== 'active' && inst.state !== 'draining') || !inst.brain || inst.brain.idle()) continue;
        this.peersFor(inst, now);
        inst.brain.step({ type: 'tick' }, now);
      }
    }
  }

  // ---------------------------------------------------------------- data plane: step
  /** A started request into its instance's engine (one the engine cannot take fails, as the live engine's 400). */
  protected toEngine(inst: SimInstance, r: CoreRequest, t: number): void {
    if (!inst.core) return;
    try {
      inst.core.submit(r);
    } catch {
      this.unservable++;
      this.dropRequest(r.id, t);
      inst.brain?.step({ type: 'finished', id: r.id, ok: false }, t);
      return;
    }
    this.wake(inst, t);
  }

  /** When the next started request reaches its engine (SimOptions.requestPathMs.startToEngineMs); Infinity when none is on its way. */
  protected nextHandoffMs(): number {
    return this.handoffs[this.handoffHead]?.atMs ?? Infinity;
  }

  /** The started requests due at `t` into their engines. */
  protected handoffsDue(t: number): void {
    while (this.handoffHead < this.handoffs.length && this.handoffs[this.handoffHead]!.atMs <= t) {
      const h = this.handoffs[this.handoffHead++]!;
      this.toEngine(h.inst, h.r, t);
    }
    if (this.handoffHead === this.handoffs.length) {
      this.handoffs.length = 0;
      this.handoffHead = 0;
    }
  }

  protected wake(inst: SimInstance, now: number): void {
    if (inst.inHeap || !inst.core) return;
    inst.inHeap = true;
    this.stepHeap.push(now, inst);
  }

  /** The baselines' dispatch within a pool (./baseline-dispatch.ts) under the SLO throughput cap; null when none (the caller spills upward). */
  protected dispatch(pool: SimPool, pred: RequestType, now: number, r: TraceRecord, only?: (i: SimInstance) => boolean): SimInstance | null {
    return leastLoadedUnderCap(pool.instances, r.inputTokens + r.outputTokens, (i) => {
      if (only && !only(i)) return false;
      this.decayLoad(i, now);
      let u = 0;
      for (let k = 0; k < 9; k++) if (i.load[k] > 0) u += i.load[k] / Math.max(1e-9, maxLoadOf(this.p, REQUEST_TYPES[k], i.tp, this.maxClock));
      return u + 1 / LOAD_WINDOW_S / Math.max(1e-9, maxLoadOf(this.p, pred, i.tp, this.maxClock)) <= 1 - this.headroom + 1e-9;
    }, (eligible) => this.preferPrefix(eligible, r.hashIds, r.inputTokens, now));
  }

  /** src/policy preferPrefixHolder over these instances (SimOptions.prefixRouting and a row with hash_ids), else undefined. */
  protected preferPrefix(insts: SimInstance[], hashIds: readonly number[] | undefined, inputTokens: number, now: number): string | undefined {
    if (!this.o.prefixRouting || !hashIds?.length) return undefined;
    // what the live gateway reads: the prompts awaiting prefill as the instance's status counts them (whole) and
    // its engine's measured prefix-cache hit share
    return decide.preferPrefixHolder(inputTokens, insts.filter((i) => i.core).map((i) => ({
      id: i.id, tp: i.tp, cachedPrefixTokens: i.core!.cachedPrefixTokens(hashIds, inputTokens),
      pendingPrefillTokens: i.brain ? i.brain.pendingPrefillTokens() : i.core!.pendingPrefillTokens(now), cachedShare: decide.prefixHitShare(i.core!.prefixCacheTokens()),
    })));
  }

  protected arriveStep(r: TraceRecord, now: number): void {
    this.requests++;
    if (overContext(r, this.maxContext)) {
      this.refusedOverContext++;
      return;
    }
    const id = `r${this.requests}`;
    const c = this.classifier.classify(r, id);
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    const home = this.route.get(c.pred);
    // the SLO and TTFT deadline the live intake's withSlo sets (policy requestSloOf), under the cluster's SLOs x sloScale
    const slo = requestSloOf(c.pred, r.inputTokens, this.sloSettings).ttftMs;
    // its arrival is the client's send, the data path's time (SimOptions.requestPathMs) before the dispatch now
    const arrivalMs = now - this.pathToEngineMs;
    const req: CoreRequest = { id, arrivalMs, promptTokens: Math.max(1, r.inputTokens), outputTokens: Math.max(1, r.outputTokens), type: c.pred, ttftDeadlineMs: arrivalMs + slo, prefixHashes: r.hashIds };
    if (this.useDispatchPolicy) {
      // the pools intake tries (policy routePools, as the live intake and gateway: the type's, then the pools of the
      // longer types in its chain, those with a ready instance when any has one), each dispatching through its
      // leader's machine; an overloaded pool, or one at its SLO cap (spillPasses), spills to the next
      const byId = new Map(this.pools.map((p) => [p.id, p]));
      const ids = routePools(new Map([...this.route].map(([t, p]) => [t, p.id])), (p) => !byId.get(p)?.types.length, c.pred, (p) => byId.get(p)!.instances.some((i) => i.state === 'active' && !!i.brain && i.brain.s.lifecycle !== 'sleeping'));
      this.arriving.set(id, { r: req, c, slo, walk: { offers: spillPasses(ids).map((o) => ({ pool: byId.get(o.pool)!, spill: o.spill })) }, msg: simRequest(req, c.pred, 0) });
      this.offer(id, now);
      return;
    }
    let inst = home ? this.dispatch(home, c.pred, now, r) : null;
    // overload goes upward: the next longer pools (they meet the shorter types' SLOs)
    if (!inst) for (const p of this.pools) if (p !== home && p.order > (home?.order ?? -1) && p.types.length && (inst = this.dispatch(p, c.pred, now, r))) break;
    if (!inst) {
      // everything at capacity: queue on the least-loaded active instance of the home pool (its emergency path
      // then acts), else of the nearest longer pool with one, else of any pool: what the live cluster manager does
      // (the type's pool, then longer pools only)
      const pick = (ps: SimPool[]) => leastOutstanding(ps.flatMap((p) => p.instances), r.inputTokens + r.outputTokens);
      // cache-aware routing at capacity too: the least prefill before the first token among the home pool's instances
      const homeAct = this.o.prefixRouting && home ? home.instances.filter((i) => canServe(i, r.inputTokens + r.outputTokens)) : [];
      const held = homeAct.length ? this.preferPrefix(homeAct, r.hashIds, r.inputTokens, now) : undefined;
      inst = (held && homeAct.find((i) => i.id === held)) || (home && pick([home])) || null;
      for (const p of this.pools) if (!inst && p !== home && p.order > (home?.order ?? -1) && p.types.length) inst = pick([p]);
      inst ??= pick(this.pools);
    }
    if (!inst || !inst.core) {
      this.rejected++;
      return;
    }
    let at: SimInstance = inst;
    const st: ReqState = { arrivalMs, ttftSloMs: slo, type: c.type, pred: c.pred, predTokens: c.predTokens, firstMs: -1, lastMs: -1, tbtSum: 0, tbtN: 0, inst: at, moves: 0 };
    this.reqs.set(id, st);
    at.outstanding++;
    // the instance machine may refuse (backpressure, a full queue): the next instance of the pool, at most 4 tries
    const tried = new Set<SimInstance>();
    while (this.admitTo(at, req, st, now)) {
      tried.add(at);
      const next: SimInstance | null = tried.size < 4 ? this.dispatch(at.pool, c.pred, now, r, (i) => !tried.has(i)) : null;
      if (!next) {
        this.admitted.delete(id);
        this.dropRequest(id, now);
        this.rejected++;
        return;
      }
      at.outstanding--;
      next.outstanding++;
      st.inst = at = next;
    }
    this.counted(at, c.pred, now);
  }

  /** The baselines' dispatch cap's offered-load estimate of an instance takes one request of `pred` (./baseline-dispatch.ts: no live manager runs it). */
  protected counted(at: SimInstance, pred: RequestType, now: number): void {
    this.decayLoad(at, now);
    at.load[TYPE_INDEX[pred]] += 1 / LOAD_WINDOW_S;
  }

  /** The baselines' estimate decayed to `now`. */
  protected decayLoad(inst: SimInstance, now: number): void {
    const dt = now - inst.loadAtMs;
    if (dt <= 0) return;
    const f = Math.exp(-dt / (LOAD_WINDOW_S * 1000));
    for (let k = 0; k < 9; k++) inst.load[k] *= f;
    inst.loadAtMs = now;
  }

  /** src/policy prefillClockFloor on an instance's prefill backlog (step fidelity; the min clock otherwise). */
  protected prefillFloor(inst: SimInstance, now: number): number {
    const core = inst.core;
    if (!core) return this.p.clocksMhz[0]!;
    const backlog = core.prefillBacklog();
    if (!backlog.length) return this.p.clocksMhz[0]!;
    const busy = core.busyUntilMs(now);
    return decide.prefillClockFloor(this.p, inst.tp, backlog.map((b) => ({ tokens: b.tokens, slackMs: (b.deadlineMs ?? Infinity) - now })), busy === null ? 0 : busy - now);
  }

  protected runStep(inst: SimInstance, now: number): void {
    inst.inHeap = false;
    const core = inst.core;
    if (!core) return;
    const res = core.step(now);
    if (!res) return;
    const end = res.startMs + res.durationMs;
    for (const e of res.events) {
      if (e.kind === 'preempted') continue;
      const st = this.reqs.get(e.id);
      if (!st) continue;
      if (e.kind === 'first_token' && st.firstMs >= 0) {
        // a migrated request's first token on its peer: the client's stream goes on, the gap is one of its TBTs
        const g = Math.max(0, e.atMs - st.lastMs);
        this.tbt[st.type].add(g);
        this.inp.onTokenGap?.({ arrivalMs: st.arrivalMs, type: st.type, gapMs: g });
        st.tbtSum += g;
        st.tbtN++;
        st.lastMs = Math.max(st.lastMs, e.atMs);
        inst.brain?.step({ type: 'first_token', id: e.id }, e.atMs);
      } else if (e.kind === 'first_token') {
        st.firstMs = e.atMs;
        st.lastMs = e.atMs;
        inst.brain?.step({ type: 'first_token', id: e.id }, e.atMs);
      } else if (e.kind === 'token') {
        const g = e.atMs - st.lastMs;
        this.tbt[st.type].add(g);
        this.inp.onTokenGap?.({ arrivalMs: st.arrivalMs, type: st.type, gapMs: g });
        st.tbtSum += g;
        st.tbtN++;
        st.lastMs = e.atMs;
      } else if (e.kind === 'finished') {
        this.finish(e.id, st);
        inst.brain?.step({ type: 'finished', id: e.id, ok: true }, e.atMs);
      }
    }
    if (core.hasWork()) {
      inst.inHeap = true;
      this.stepHeap.push(res.durationMs > 0 ? end : end + 1, inst);
    }
    if (inst.state === 'draining') this.maybeStop(inst, end);
  }

  protected finish(id: string, st: ReqState): void {
    const k = TYPE_INDEX[st.type];
    // the client's: the first token reaches it the data path's time after the engine emitted it (SimOptions.requestPathMs)
    const ttft = st.firstMs + this.pathToClientMs - st.arrivalMs;
    this.ttft[st.type].push(ttft);
    this.ttftOverSlo[st.type].push(ttft / st.ttftSloMs);
    this.inp.onRequest?.({ arrivalMs: st.arrivalMs, type: st.type, ttftMs: ttft });
    const meanTbt = st.tbtN ? st.tbtSum / st.tbtN : 0;
    this.done[k]++;
    this.classifier.completed(id);
    if (ttft <= st.ttftSloMs && meanTbt <= this.sloSettings.slo.tbtMs) this.sloOk[k]++;
    st.inst.outstanding--;
    this.reqs.delete(id);
    st.inst.pool.leader?.record(id, st.inst.id, st.lastMs);
    if (st.inst.state === 'draining') this.maybeStop(st.inst, st.lastMs);
  }
}
