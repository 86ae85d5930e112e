/**
 * The trace-driven cluster simulator. One run = one policy over one trace on a virtual clock.
 *
 * Control plane: the cluster epoch (servers per pool, routing) is the live cluster manager's machine
 * (src/policy/machines/cluster.ts) given the simulator's forecast; each pool is run by one live pool machine for its
 * whole life (./pool-leader.ts): its assignment, reconciliation, re-shard epoch (on the timer it arms) and staggered
 * units, and at step fidelity its dispatch. The static baselines (single-pool, multi-pool) and the
 * oracle (Eq. 1 with the future known) are the paper's yardsticks, not live managers: their sizing is here.
 * Instances: at step fidelity each instance's manager IS the live instance machine
 * (src/policy/machines/instance.ts through ./instance-brain.ts): admission, queue, engine slots, the load
 * EWMA, the clock and its arbitration, the prefill floor, the emergency ladder and its moves; this file only
 * interprets its effects. Fluid has no per-request events: its clock is the machine's rule (epochLoad,
 * decideClock) on each instance's share of its pool's arrivals.
 * Reconfigurations are charged, not free: a new instance serves only after `instanceStartS` and its GPUs
 * draw loaded-idle power meanwhile; a re-shard's new instance serves after tau x Table VI + resync beside the ones
 * it replaces ('overlap'), or after an engine start ('units', as live); a clock change takes `clockChangeMs` at the old clock.
 * GPUs in no instance draw unloaded idle power (they are powered; the paper counts servers in use).
 *
 * Data plane:
 * - 'step': every instance is a BatchingCore (src/engine/core.ts) stepped on the virtual clock: exact
 *   batching, queueing, TTFT and per-token TBT (TBT kept in a 0.5%-bucket histogram).
 * - 'fluid': per tick, each instance's offered load by type is read against the profile (power and
 *   latency percentiles interpolated from profile cells): latency figures are profile-based estimates. The
 *   dispatch is modelled at the pool level: the SLO cap spills a pool's excess to the next longer pool
 *   (fluidSpill), and under least-outstanding dispatch an instance's busy fraction is the pool's
 *   (./fluid.ts), not the profile's independent-Poisson one.
 * Energy is modelled (src/model, with its calibration), never measured.
 *
 * The run is one object whose parts live in one file each, each part a layer over the one before:
 * - ./state.ts: the instances, pools and requests, the policies' knobs, the live managers' defaults;
 * - ./ledger.ts (SimLedger): the run's state, the load template, the energy accounting, the series, the result;
 * - ./control.ts (SimControl): instances start, drain and stop; pools installed; the pool machines' commands carried out; the oracle;
 * - ./clock-epochs.ts (SimClocks): the instance epoch's clocks;
 * - ./step-model.ts (SimStepModel): step fidelity, the instance and pool machines' effects interpreted;
 * - ./fluid-model.ts (SimFluidModel): fluid fidelity;
 * - this file (Simulation): the event loop on the virtual clock.
 */
import type { TraceRecord } from './trace.ts';
import type { SimResult } from './types.ts';
import { SimFluidModel } from './fluid-model.ts';
import { BRAIN_TICK_MS, PEER_STATUS_MS, type SimPool } from './state.ts';

export { DEFAULT_EPOCHS, DEFAULT_COSTS, POLICY_KNOBS, DEFAULT_CONTEXT_FLOOR, type PolicyKnobs, type LoadTemplate, type EngineInputs } from './state.ts';

export class Simulation extends SimFluidModel {
  protected initialPlan(): void {
    if (this.knobs.oracle) this.oracleEpoch(0);
    else if (this.knobs.dynamicInstances) this.clusterStart();
    else {
      const s = this.staticPools();
      this.installPools(s.wanted, s.routing, 0, true);
    }
    if (this.knobs.dynamicShards && !this.knobs.oracle && !this.o.asConfigured) for (const p of this.pools) this.reshard(p, 0, true);
    // with a phase, the instances hold their start-up clock until their first epoch (SimOptions.instanceEpochPhaseMs)
    if (this.o.instanceEpochPhaseMs === undefined) this.instanceEpoch(0);
  }

  /** The pools whose machines re-shard: their epochs run on the timers the machines arm. */
  protected get reshardingPools(): boolean {
    return this.knobs.dynamicShards && !this.knobs.oracle && this.machinePools;
  }

  /** When the next pool machine's re-shard epoch is due, ms. */
  protected nextPoolEpochMs(): number {
    let next = Infinity;
    if (this.reshardingPools) for (const p of this.pools) next = Math.min(next, p.leader?.nextEpochMs() ?? Infinity);
    return next;
  }

  /** The re-shard epochs due by `t`. */
  protected poolEpochsDue(t: number): void {
    for (const p of [...this.pools]) if ((p.leader?.nextEpochMs() ?? Infinity) <= t) this.reshard(p, t, false);
  }

  /**
   * Fluid: the arrivals routed to each pool in a tick, shared among its instances (their cumulative admissions, which
   * their statuses report), and every instance's status to its pool's machine.
   */
  protected fluidStatuses(counts: Map<SimPool, Float64Array>, t: number): void {
    for (const p of this.pools) {
      if (!p.leader) continue;
      const c = counts.get(p);
      const active = p.instances.filter((i) => i.state === 'active');
      const to = active.length ? active : p.instances.filter((i) => i.state !== 'stopped');
      if (c && to.length) for (const i of to) {
        const a = (i.admittedSum ??= new Float64Array(9));
        for (let k = 0; k < 9; k++) a[k] += c[k]! / to.length;
      }
      p.leader.sync(p.instances, t, 'all');
    }
  }

  async run(): Promise<SimResult> {
    const wall0 = performance.now();
    await this.buildTemplate();
    // the trace's window, or the span the caller counts over (SimOptions.untilMs) when it is longer
    const endMs = Math.max(this.template.durationMs, this.o.untilMs ?? 0);
    const poolMs = this.ep.poolS * 1000;
    const instMs = this.ep.instanceS * 1000;
    const sampleMs = (this.o.sampleS ?? (endMs > 6 * 3.6e6 ? 60 : 10)) * 1000;
    this.initialPlan();

    let nextCluster = this.cm?.nextMs() ?? Infinity, nextPool = this.knobs.oracle ? poolMs : Infinity, nextInst = this.o.instanceEpochPhaseMs === undefined ? instMs : Infinity, nextSample = sampleMs;
    let nextProgress = 0;
    const it = this.inp.records();
    const isAsync = Symbol.asyncIterator in it;
    const aiter = isAsync ? (it as AsyncIterable<TraceRecord>)[Symbol.asyncIterator]() : null;
    const siter = isAsync ? null : (it as Iterable<TraceRecord>)[Symbol.iterator]();
    let nextRec: TraceRecord | null = null;
    const pull = async () => {
      const r = aiter ? await aiter.next() : siter!.next();
      nextRec = r.done ? null : r.value;
    };
    await pull();
    const progress = (t: number) => {
      if (this.inp.onProgress && t >= nextProgress) {
        this.inp.onProgress(Math.min(1, t / endMs));
        nextProgress = t + endMs / 100;
      }
    };
    const cluster = (t: number) => {
      this.cm?.due(t);
      nextCluster = this.cm?.nextMs() ?? Infinity;
    };

    if (this.fidelity === 'fluid') {
      const tickMs = (this.o.fluidTickS ?? 5) * 1000;
      const counts = new Map<SimPool, Float64Array>();
      const hasActive = new Set<SimPool>();
      for (let t = 0; t < endMs; t += tickMs) {
        const tEnd = t + tickMs;
        hasActive.clear();
        for (const p of this.pools) if (p.instances.some((i) => i.state === 'active')) hasActive.add(p);
        counts.clear();
        if (siter) {
          while (nextRec && (nextRec as TraceRecord).tMs < tEnd) {
            this.arriveFluid(nextRec, counts, hasActive);
            const r = siter.next();
            nextRec = r.done ? null : r.value;
          }
        } else while (nextRec && (nextRec as TraceRecord).tMs < tEnd) {
          this.arriveFluid(nextRec, counts, hasActive);
          await pull();
        }
        if (this.reshardingPools) this.fluidStatuses(counts, tEnd);
        this.fluidSpill(tickMs / 1000, counts, hasActive);
        this.fluidTick(tickMs / 1000, counts);
        if (this.nextReadyMs <= tEnd) this.activateDue(tEnd);
        while (nextSample <= tEnd) {
          this.sample(nextSample <= tEnd ? tEnd : nextSample);
          nextSample += sampleMs;
        }
        if (nextInst <= tEnd) {
          this.instanceEpoch(tEnd);
          while (nextInst <= tEnd) nextInst += instMs;
        }
        if (nextPool <= tEnd) {
          this.oracleEpoch(tEnd);
          while (nextPool <= tEnd) nextPool += poolMs;
        }
        if (this.nextPoolEpochMs() <= tEnd) this.poolEpochsDue(tEnd);
        if (nextCluster <= tEnd) cluster(tEnd);
        progress(tEnd);
      }
      const end = Math.ceil(endMs / tickMs) * tickMs;
      this.sample(end);
      return this.result(end, performance.now() - wall0);
    }

    // the instance machines' tick: the emergency ladder, and the clock's load rise between epochs
    let nextEm = this.knobs.emergency || this.knobs.dynamicClock || this.useDispatchPolicy ? BRAIN_TICK_MS : Infinity;
    // without the policy dispatch (whose instances publish on their own status timers), the re-sharding pools'
    // machines get every instance's status at the live status interval (their burst windows and epoch counts)
    let nextStatus = this.reshardingPools && !this.useDispatchPolicy ? PEER_STATUS_MS : Infinity;
    // sleep mode's standby decisions (./sleep-standby.ts), at the live status interval
    let nextSleep = this.sleepStandbyOn ? PEER_STATUS_MS : Infinity;
    let lastT = 0;
    while (true) {
      // a request reaches the dispatch the data path's time after its client sent it (SimOptions.requestPathMs)
      const tArr = nextRec ? Math.max(lastT, (nextRec as TraceRecord).tMs + this.pathToEngineMs) : Infinity;
      const tStep = this.stepHeap.peekTime();
      const nextPoolEpoch = this.nextPoolEpochMs();
      const tHandoff = this.nextHandoffMs();
      const tTimer = Math.min(nextCluster, nextPool, nextPoolEpoch, nextInst, nextSample, nextEm, nextStatus, this.clockHeap.peekTime(), this.epochHeap.peekTime(), this.statusHeap.peekTime(), this.nextReadyMs, nextSleep, this.sleepDueMs);
      const t = Math.min(tArr, tStep, tHandoff, tTimer);
      if (t === Infinity || (t > endMs && !nextRec && this.stepHeap.size === 0 && tHandoff === Infinity)) break;
      if (t > endMs + 3.6e6) break; // safety: an hour past the last arrival
      lastT = t;
      if (tArr === t && nextRec) {
        this.arriveStep(nextRec, t);
        await pull();
        continue;
      }
      // a started request reaches its engine before the engine's step at the same time
      if (tHandoff === t) {
        this.handoffsDue(t);
        continue;
      }
      if (tStep === t && this.stepHeap.size) {
        this.runStep(this.stepHeap.pop(), t);
        continue;
      }
      if (this.nextReadyMs === t) {
        this.activateDue(t);
        continue;
      }
      if (this.clockHeap.peekTime() === t) {
        // the instance's oldest set_clock in flight (its chain's order: the heap does not order equal times)
        const inst = this.clockHeap.pop();
        const c = inst.clockChain!.shift()!;
        if (inst.state === 'active' || (inst.brain && inst.state === 'draining')) {
          this.setClockNow(inst, c.mhz, t);
          inst.brain?.clockApplied(c.mhz, c.why, c.inputs, t);
        }
        continue;
      }
      if (this.sleepDueMs === t) {
        this.sleepDue(t);
        continue;
      }
      if (nextSleep === t) {
        this.sleepStandbyTick(t);
        nextSleep += PEER_STATUS_MS;
        continue;
      }
      if (nextSample === t) {
        this.sample(t);
        nextSample += sampleMs;
        progress(t);
        continue;
      }
      if (nextEm === t) {
        this.brainTick(t);
        nextEm += BRAIN_TICK_MS;
        continue;
      }
      if (nextStatus === t) {
        for (const p of this.pools) p.leader?.sync(p.instances, t, 'all');
        nextStatus += PEER_STATUS_MS;
        continue;
      }
      if (this.statusHeap.peekTime() === t) {
        // an instance's status timer: its status to its pool leader, while it is not stopped
        const inst = this.statusHeap.pop();
        if (inst.state === 'stopped') continue;
        this.leaderOf(inst.pool, t).publish(inst, inst.pool.instances, t);
        this.statusHeap.push(t + (this.o.instanceStatusIntervalMs ?? PEER_STATUS_MS), inst);
        continue;
      }
      if (this.epochHeap.peekTime() === t) {
        // an instance's own epoch (SimOptions.instanceEpochPhaseMs), while it is not stopped
        const inst = this.epochHeap.pop();
        if (inst.state === 'active') inst.brain?.step({ type: 'epoch' }, t);
        if (inst.state !== 'stopped') this.epochHeap.push(t + instMs, inst);
        continue;
      }
      if (nextInst === t) {
        this.instanceEpoch(t);
        nextInst += instMs;
        continue;
      }
      if (nextPool === t) {
        this.oracleEpoch(t);
        nextPool += poolMs;
        continue;
      }
      if (nextPoolEpoch === t) {
        this.poolEpochsDue(t);
        continue;
      }
      if (nextCluster === t) {
        cluster(t);
        continue;
      }
      break;
    }
    const end = Math.max(endMs, lastT, this.lastSampleMs); // to the last event served, the last request's end
    this.sample(end);
    return this.withSleepStandby(this.result(end, performance.now() - wall0), end);
  }
}
