/**
 * The trace-driven cluster simulator. One run = one policy over one trace on a virtual clock.
 *
 * Control plane (both fidelities): the cluster epoch (instances per pool), the pool epoch (TP mix), the
 * instance epoch (SM clock) and the emergency path, each decision one call into ./decide.ts (src/policy).
 * Reconfigurations are charged, not free: a new instance serves only after `instanceStartS` and its GPUs
 * draw loaded-idle power meanwhile; a re-shard makes the new instances ready after tau x Table VI + resync
 * (old instances drain meanwhile); a clock change takes `clockChangeMs` at the old clock.
 * GPUs in no instance draw unloaded idle power (they are powered; the paper counts servers in use).
 *
 * Data plane:
 * - 'step': every instance is a BatchingCore (src/engine/core.ts) stepped on the virtual clock: exact
 *   batching, queueing, TTFT and per-token TBT (TBT kept in a 0.5%-bucket histogram).
 * - 'fluid': per tick, each instance's offered load by type is read against the profile (power and
 *   latency percentiles interpolated from profile cells): latency figures are profile-based estimates.
 * Energy is modelled (src/model, with its calibration), never measured.
 */
import { REQUEST_TYPES, inputClassOf, outputClassOf, requestTypeOf, type RequestType, type LengthClass } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import type { PerfModel } from '../model/types.ts';
import { interpolate, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import { classifyLengths, TTFT_SLO_MS, TBT_SLO_MS } from '../model/request-types.ts';
import { BatchingCore } from '../engine/core.ts';
import type { InstanceConfig, InstanceView, LoadByType, TpDegree } from '../policy/types.ts';
import * as decide from './decide.ts';
import { LogHistogram, percentile } from './metrics.ts';
import { rng, type TraceRecord } from './trace.ts';
import type { Fidelity, PolicyName, SimCosts, SimEpochs, SimOptions, SimResult, LatencyStats } from './types.ts';

export const DEFAULT_EPOCHS: SimEpochs = { clusterS: 1800, poolS: 300, instanceS: 5 };
export const DEFAULT_COSTS: SimCosts = { instanceStartS: 300, tauMs: 50, resyncMs: 2000, clockChangeMs: 65 };

/** Which knobs a policy turns (the paper's baselines are MultiPool plus one knob). */
export interface PolicyKnobs {
  pools: 'single' | 'per-type';
  dynamicInstances: boolean;
  dynamicShards: boolean;
  dynamicClock: boolean;
  emergency: boolean;
  oracle: boolean;
}

export const POLICY_KNOBS: Record<PolicyName, PolicyKnobs> = {
  'single-pool': { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'multi-pool': { pools: 'per-type', dynamicInstances: false, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'scale-inst': { pools: 'per-type', dynamicInstances: true, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'scale-shard': { pools: 'per-type', dynamicInstances: false, dynamicShards: true, dynamicClock: false, emergency: false, oracle: false },
  'scale-freq': { pools: 'per-type', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: false, oracle: false },
  dynamollm: { pools: 'per-type', dynamicInstances: true, dynamicShards: true, dynamicClock: true, emergency: true, oracle: false },
  oracle: { pools: 'per-type', dynamicInstances: true, dynamicShards: true, dynamicClock: true, emergency: false, oracle: true },
};

/** Table VI (tau units), rows source / columns target, order TP2, 4xTP2, TP4, TP2+TP4, 2xTP4, TP8 (per 8 GPUs). */
const TABLE_VI = [
  [0, 4, 2, 2, 2, 1],
  [0, 0, 0, 0, 0, 0],
  [2, 2, 0, 2, 2, 1],
  [0, 2, 0, 0, 1, 1],
  [1, 1, 0, 1, 0, 0],
  [1, 1, 1, 1, 1, 0],
];
function tableViIndex(mix: InstanceConfig[]): number {
  const n = (tp: number) => mix.find((c) => c.tp === tp)?.count ?? 0;
  if (n(8) > 0) return 5;
  if (n(4) >= 2) return 4;
  if (n(4) >= 1 && n(2) >= 1) return 3;
  if (n(4) === 1) return 2;
  if (n(2) >= 4) return 1;
  return 0;
}
/** Re-shard cost, tau units: Table VI of the dominant per-server layouts (an approximation per pool). */
export function reshardTau(from: InstanceConfig[], to: InstanceConfig[]): number {
  return TABLE_VI[tableViIndex(from)][tableViIndex(to)];
}

const TYPE_INDEX = Object.fromEntries(REQUEST_TYPES.map((t, i) => [t, i])) as Record<RequestType, number>;

interface SimInstance {
  id: string;
  pool: SimPool;
  tp: TpDegree;
  clockMhz: number;
  state: 'starting' | 'active' | 'draining' | 'stopped';
  readyAtMs: number;
  createdMs: number;
  core?: BatchingCore;
  inHeap: boolean;
  /** arrivals by predicted type since the last instance epoch, and the EWMA rate (req/s). */
  arrivals: Float64Array;
  rate: Float64Array;
  outstanding: number;
  view: InstanceView;
  /** fluid: energy J. */
  energyJ: number;
}

interface SimPool {
  id: string;
  types: RequestType[];
  gpus: number;
  instances: SimInstance[];
  /** arrivals by predicted type this tick (fluid) and by true type. */
  tickPred: Float64Array;
}

interface ReqState {
  arrivalMs: number;
  type: RequestType; // true type (reporting)
  pred: RequestType; // predicted type (routing)
  firstMs: number;
  lastMs: number;
  tbtSum: number;
  tbtN: number;
  inst: SimInstance;
}

/** Min-heap of (time, item). */
class Heap<T> {
  private t: number[] = [];
  private v: T[] = [];
  get size() {
    return this.t.length;
  }
  peekTime(): number {
    return this.t.length ? this.t[0] : Infinity;
  }
  push(time: number, item: T): void {
    const t = this.t, v = this.v;
    let i = t.length;
    t.push(time);
    v.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] <= time) break;
      t[i] = t[p];
      v[i] = v[p];
      i = p;
    }
    t[i] = time;
    v[i] = item;
  }
  pop(): T {
    const t = this.t, v = this.v;
    const top = v[0];
    const lt = t.pop()!;
    const lv = v.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && t[c + 1] < t[c]) c++;
        if (t[c] >= lt) break;
        t[i] = t[c];
        v[i] = v[c];
        i = c;
      }
      t[i] = lt;
      v[i] = lv;
    }
    return top;
  }
}

export interface LoadTemplate {
  /** per type, arrivals per minute bin (by predicted type). */
  perMin: Record<RequestType, Float64Array>;
  durationMs: number;
  count: number;
}

export interface EngineInputs {
  opts: SimOptions;
  profile: Profile;
  perf: PerfModel;
  /** a fresh iterator over the trace (already rate-scaled). */
  records: () => AsyncIterable<TraceRecord> | Iterable<TraceRecord>;
  /** carbon intensity gCO2/kWh at a time, s. */
  carbonAt: (tS: number) => number;
  onProgress?: (fraction: number) => void;
}

const OUT_CLASSES: LengthClass[] = ['S', 'M', 'L'];

export class Simulation {
  private readonly o: SimOptions;
  private readonly knobs: PolicyKnobs;
  private readonly p: Profile;
  private readonly perf: PerfModel;
  private readonly ep: SimEpochs;
  private readonly cost: SimCosts;
  private readonly fidelity: Fidelity;
  private readonly maxClock: number;
  private readonly totalGpus: number;
  private readonly gpusPerServer: number;
  private readonly sloScale: number;
  private readonly rand: () => number;
  private readonly overhead: ReturnType<typeof decide.overheadTable>;
  /** SLO throughput kept free by the clock and sharding choices (bursts within an epoch); default 0.2. */
  private readonly headroom: number;
  private pools: SimPool[] = [];
  private typeToPool = new Map<RequestType, SimPool>();
  private template!: LoadTemplate;
  private seq = 0;
  private nowMs = 0;
  private readonly reqs = new Map<string, ReqState>();
  private readonly stepHeap = new Heap<SimInstance>();
  private readonly ttft: Record<RequestType, number[]> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, []])) as unknown as Record<RequestType, number[]>;
  private readonly tbt = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  private readonly ttftHist = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  private readonly sloOk = new Float64Array(9);
  private readonly done = new Float64Array(9);
  private readonly reconf = { instanceStart: 0, instanceStop: 0, reshard: 0, clock: 0, emergency: 0 };
  private rejected = 0;
  private unservable = 0;
  private misclassified = 0;
  private requests = 0;
  /** energy outside instance cores: unallocated GPUs, starting instances, J. */
  private extraJ = 0;
  private extraAccMs = 0;
  private gpuMs = 0; // GPU-milliseconds allocated to instances (incl. starting)
  private readonly instances: SimInstance[] = [];
  private stoppedEnergyJ = 0;
  private readonly series = { tS: [] as number[], powerW: [] as number[], energyKWh: [] as number[], gpusByPool: {} as Record<string, number[]>, clockByPool: {} as Record<string, number[]> };
  private lastSampleJ = 0;
  private lastSampleMs = 0;
  private carbonG = 0;
  private readonly powerSamples: number[] = [];

  constructor(private readonly inp: EngineInputs) {
    this.o = inp.opts;
    this.knobs = POLICY_KNOBS[this.o.policy];
    this.p = inp.profile;
    this.perf = inp.perf;
    this.ep = { ...DEFAULT_EPOCHS, ...this.o.epochs };
    this.cost = { ...DEFAULT_COSTS, ...this.o.costs };
    this.fidelity = this.o.fidelity;
    this.maxClock = this.p.clocksMhz[this.p.clocksMhz.length - 1];
    this.gpusPerServer = this.perf.gpu.gpusPerServer;
    this.totalGpus = this.o.servers * this.gpusPerServer;
    this.sloScale = this.o.sloScale ?? 1;
    this.rand = rng(this.o.seed ?? 7);
    this.overhead = decide.overheadTable({ tauMs: this.cost.tauMs, resyncS: this.cost.resyncMs / 1000, instanceStartS: this.cost.instanceStartS, clockChangeMs: this.cost.clockChangeMs });
    this.headroom = this.o.headroom ?? 0.2;
  }

  // ---------------------------------------------------------------- classification & load template
  private classify(r: TraceRecord): { type: RequestType; pred: RequestType } | null {
    let type: RequestType;
    try {
      type = classifyLengths(r.inputTokens, r.outputTokens);
    } catch {
      return null;
    }
    // Output-length prediction: right with probability `acc`, else a neighbouring class (the proxy
    // classifier's errors are mostly off by one class). The policy sees only `pred`.
    const acc = this.o.predictorAccuracy ?? 0.81;
    let oc = outputClassOf(type);
    if (this.rand() >= acc) {
      const i = OUT_CLASSES.indexOf(oc);
      oc = i === 0 ? 'M' : i === 2 ? 'M' : this.rand() < 0.5 ? 'S' : 'L';
    }
    return { type, pred: requestTypeOf(inputClassOf(type), oc) };
  }

  /** Pre-pass over the trace: per-minute arrivals by predicted type (the "load template"). */
  private async buildTemplate(): Promise<void> {
    const perMin = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new Float64Array(16)])) as Record<RequestType, Float64Array>;
    const saved = this.rand;
    const r2 = rng((this.o.seed ?? 7) + 1);
    let last = 0;
    let count = 0;
    for await (const r of this.inp.records()) {
      let type: RequestType;
      try {
        type = classifyLengths(r.inputTokens, r.outputTokens);
      } catch {
        continue;
      }
      void r2;
      const b = Math.floor(r.tMs / 60000);
      if (b >= perMin.SS.length) {
        for (const t of REQUEST_TYPES) {
          const a = new Float64Array(Math.max(b + 1, perMin[t].length * 2));
          a.set(perMin[t]);
          perMin[t] = a;
        }
      }
      perMin[type][b]++;
      last = Math.max(last, r.tMs);
      count++;
    }
    void saved;
    this.template = { perMin, durationMs: last + 1, count };
  }

  /** Forecast peak load by type (req/s) over [t0, t1): max of the 5-minute moving average of the template. */
  private forecastPeak(t0Ms: number, t1Ms: number, predictorMix = true): LoadByType {
    const out: LoadByType = {};
    const b0 = Math.max(0, Math.floor(t0Ms / 60000));
    const b1 = Math.max(b0 + 1, Math.ceil(t1Ms / 60000));
    const W = 5;
    for (const t of REQUEST_TYPES) {
      const a = this.template.perMin[t];
      let peak = 0;
      for (let b = b0; b < b1 && b < a.length; b++) {
        let s = 0;
        let n = 0;
        for (let k = Math.max(0, b - W + 1); k <= b; k++, n++) s += a[k];
        peak = Math.max(peak, s / n / 60);
      }
      if (peak > 0) out[t] = peak;
    }
    if (!predictorMix) return out;
    return out;
  }

  // ---------------------------------------------------------------- instances and GPUs
  private allocatedGpus(): number {
    let g = 0;
    for (const p of this.pools) for (const i of p.instances) if (i.state !== 'stopped') g += i.tp;
    return g;
  }

  /** Account energy of unallocated GPUs and starting instances up to now. */
  private accountExtra(now: number): void {
    const dt = now - this.extraAccMs;
    if (dt <= 0) return;
    let alloc = 0;
    let startingW = 0;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped') continue;
        alloc += i.tp;
        if (i.state === 'starting') startingW += idlePowerOf(this.p, i.tp, this.maxClock);
      }
    const freeW = Math.max(0, this.totalGpus - alloc) * this.perf.idlePowerW(1, this.maxClock, false);
    this.extraJ += ((freeW + startingW) * dt) / 1000;
    this.gpuMs += alloc * dt;
    this.extraAccMs = now;
  }

  private newInstance(pool: SimPool, tp: TpDegree, now: number, delayMs: number, kind: 'start' | 'reshard' | 'init'): SimInstance {
    const id = `${pool.id}-i${this.seq++}`;
    const inst: SimInstance = {
      id, pool, tp, clockMhz: this.maxClock, state: delayMs > 0 ? 'starting' : 'active', readyAtMs: now + delayMs, createdMs: now,
      inHeap: false, arrivals: new Float64Array(9), rate: new Float64Array(9), outstanding: 0, energyJ: 0,
      view: { id, tp, clockMhz: this.maxClock, healthy: delayMs <= 0, load: {}, queued: 0, running: 0 },
    };
    if (delayMs <= 0) this.activate(inst, now);
    pool.instances.push(inst);
    this.instances.push(inst);
    if (kind === 'start') this.reconf.instanceStart++;
    return inst;
  }

  private activate(inst: SimInstance, now: number): void {
    inst.state = 'active';
    inst.view.healthy = true;
    if (this.fidelity === 'step') {
      inst.core = new BatchingCore({ perf: this.perf, tp: inst.tp, clockMhz: inst.clockMhz, maxWaiting: 1 << 20 });
      inst.core.idleUntil(now);
    }
  }

  private drain(inst: SimInstance, now: number): void {
    if (inst.state === 'starting') {
      inst.state = 'stopped';
      return;
    }
    if (inst.state !== 'active') return;
    inst.state = 'draining';
    inst.view.healthy = false;
    this.maybeStop(inst, now);
  }

  private maybeStop(inst: SimInstance, now: number): void {
    if (inst.state !== 'draining' || inst.outstanding > 0) return;
    this.accountExtra(now);
    inst.state = 'stopped';
    if (inst.core) {
      inst.core.idleUntil(now);
      this.stoppedEnergyJ += inst.core.stats().energyJ;
      inst.core = undefined;
    } else this.stoppedEnergyJ += inst.energyJ;
    inst.pool.instances = inst.pool.instances.filter((x) => x !== inst);
    this.reconf.instanceStop++;
  }

  private liveMix(pool: SimPool): InstanceConfig[] {
    const m = new Map<number, number>();
    for (const i of pool.instances) if (i.state === 'active' || i.state === 'starting') m.set(i.tp, (m.get(i.tp) ?? 0) + 1);
    return [...m.entries()].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp: tp as TpDegree, count }));
  }

  // ---------------------------------------------------------------- control plane
  private applyClusterPlan(peak: LoadByType, now: number, initial: boolean): void {
    this.accountExtra(now);
    let wanted: { id: string; types: RequestType[]; gpus: number }[];
    if (this.knobs.pools === 'single') {
      wanted = [{ id: 'pool-all', types: [...REQUEST_TYPES], gpus: this.totalGpus }];
    } else {
      const plan = decide.planCluster({ forecastPeak: peak, profile: this.p, totalServers: this.o.servers, gpusPerServer: this.gpusPerServer });
      wanted = plan.pools.map((x) => ({ id: x.pool.id, types: x.pool.types, gpus: x.servers * this.gpusPerServer }));
      if (wanted.length === 0) wanted = [{ id: 'pool-LL', types: [...REQUEST_TYPES], gpus: this.gpusPerServer }];
    }
    // types not named by any pool go to the pool serving the next longer type (the last pool as fallback)
    const byId = new Map(this.pools.map((p) => [p.id, p]));
    const next: SimPool[] = [];
    for (const w of wanted) {
      let pool = byId.get(w.id);
      if (!pool) pool = { id: w.id, types: w.types, gpus: 0, instances: [], tickPred: new Float64Array(9) };
      byId.delete(w.id);
      pool.types = w.types;
      this.resizePool(pool, w.gpus, now, initial);
      next.push(pool);
    }
    for (const gone of byId.values()) {
      for (const i of [...gone.instances]) this.drain(i, now);
      if (gone.instances.length) next.push(Object.assign(gone, { types: [] as RequestType[], gpus: 0 }));
    }
    this.pools = next;
    this.typeToPool.clear();
    for (const t of REQUEST_TYPES) {
      let pool = next.find((p) => p.types.includes(t));
      if (!pool) for (let k = TYPE_INDEX[t] + 1; k < 9 && !pool; k++) pool = next.find((p) => p.types.includes(REQUEST_TYPES[k]));
      this.typeToPool.set(t, pool ?? next.filter((p) => p.types.length > 0).at(-1) ?? next[0]);
    }
  }

  /** Grow with TP8 instances (starting: they pay the start cost) or shrink by draining the least busy. */
  private resizePool(pool: SimPool, gpus: number, now: number, initial: boolean): void {
    pool.gpus = gpus;
    let have = pool.instances.filter((i) => i.state === 'active' || i.state === 'starting').reduce((s, i) => s + i.tp, 0);
    while (have + 8 <= gpus) {
      this.newInstance(pool, 8, now, initial ? 0 : this.cost.instanceStartS * 1000, initial ? 'init' : 'start');
      have += 8;
    }
    if (have > gpus) {
      const live = pool.instances.filter((i) => i.state === 'active' || i.state === 'starting').sort((a, b) => (a.state === 'starting' ? -1 : 0) - (b.state === 'starting' ? -1 : 0) || a.outstanding - b.outstanding);
      for (const i of live) {
        if (have <= gpus) break;
        have -= i.tp;
        this.drain(i, now);
      }
    }
  }

  private poolLoad(pool: SimPool, now: number): LoadByType {
    const f = this.forecastPeak(now, now + this.ep.poolS * 1000);
    const l: LoadByType = {};
    for (const t of pool.types) if (f[t]) l[t] = f[t];
    // load of types whose pools were merged into this one
    for (const [t, p] of this.typeToPool) if (p === pool && f[t] && !pool.types.includes(t)) l[t] = f[t];
    return l;
  }

  private reshard(pool: SimPool, now: number): void {
    const load = this.poolLoad(pool, now);
    const current = this.liveMix(pool);
    if (current.length === 0 || pool.gpus === 0) return;
    const gpus = current.reduce((s, c) => s + c.tp * c.count, 0);
    const tauPreview = 2; // J estimate of the overhead: pool idle power x (2 tau + resync)
    const overheadJ = idlePowerOf(this.p, 8, this.maxClock) * (gpus / 8) * ((tauPreview * this.cost.tauMs + this.cost.resyncMs) / 1000);
    void overheadJ;
    const plan = decide.planSharding({ profile: this.p, loadByType: load, gpus, current, epochS: this.ep.poolS, overhead: this.overhead, headroom: this.headroom });
    if (!plan.take) return;
    const delay = reshardTau(current, plan.target) * this.cost.tauMs + this.cost.resyncMs;
    this.accountExtra(now);
    for (const i of [...pool.instances]) if (i.state === 'active' || i.state === 'starting') this.drain(i, now);
    for (const c of plan.target) for (let k = 0; k < c.count; k++) this.newInstance(pool, c.tp, now, delay, 'reshard');
    this.reconf.reshard++;
  }

  private oracleEpoch(now: number): void {
    // Eq. 1 with the future load of the coming pool epoch known, per type pool, no reconfiguration lag.
    this.accountExtra(now);
    const f = this.forecastPeak(now, now + this.ep.poolS * 1000);
    let left = this.totalGpus;
    const plans: { t: RequestType; sol: ReturnType<typeof decide.solveEq1> }[] = [];
    for (const t of [...REQUEST_TYPES].reverse()) {
      const load = f[t] ?? 0;
      if (load <= 0) continue;
      const sol = decide.solveEq1({ profile: this.p, loadByType: { [t]: load }, gpus: left });
      const used = sol.mix.reduce((s, c) => s + c.tp * c.count, 0);
      left -= Math.min(left, used);
      plans.push({ t, sol });
    }
    for (const pool of this.pools) for (const i of [...pool.instances]) this.drain(i, now);
    const next: SimPool[] = this.pools.filter((p) => p.instances.length > 0).map((p) => Object.assign(p, { types: [] as RequestType[] }));
    this.typeToPool.clear();
    for (const { t, sol } of plans) {
      const pool: SimPool = { id: `pool-${t}`, types: [t], gpus: 0, instances: [], tickPred: new Float64Array(9) };
      for (const c of sol.mix) for (let k = 0; k < c.count; k++) {
        const inst = this.newInstance(pool, c.tp, now, 0, 'init');
        this.setClockNow(inst, sol.clockMhz);
      }
      pool.gpus = sol.mix.reduce((s, c) => s + c.tp * c.count, 0);
      next.push(pool);
      this.typeToPool.set(t, pool);
    }
    const fallback = next.find((p) => p.types.length > 0) ?? next[0];
    for (const t of REQUEST_TYPES) if (!this.typeToPool.has(t) && fallback) this.typeToPool.set(t, fallback);
    this.pools = next;
  }

  private setClockNow(inst: SimInstance, mhz: number): void {
    inst.clockMhz = mhz;
    inst.view.clockMhz = mhz;
    inst.core?.setClock(mhz);
  }

  private instanceEpoch(now: number): void {
    const alpha = 1 - Math.exp(-this.ep.instanceS / 30);
    for (const pool of this.pools)
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        const load: LoadByType = {};
        for (let k = 0; k < 9; k++) {
          inst.rate[k] += alpha * (inst.arrivals[k] / this.ep.instanceS - inst.rate[k]);
          inst.arrivals[k] = 0;
          if (inst.rate[k] > 1e-6) load[REQUEST_TYPES[k]] = inst.rate[k];
        }
        inst.view.load = load;
        if (!this.knobs.dynamicClock || this.knobs.oracle) continue;
        if (this.knobs.emergency && this.emergency(inst, now)) continue;
        const d = decide.chooseClock({ profile: this.p, tp: inst.tp, loadByType: load, sloScale: this.sloScale, headroom: this.headroom });
        if (d.clockMhz !== inst.clockMhz) this.scheduleClock(inst, d.clockMhz, now);
      }
  }

  private pendingClock: { at: number; inst: SimInstance; mhz: number }[] = [];
  private scheduleClock(inst: SimInstance, mhz: number, now: number): void {
    this.pendingClock.push({ at: now + this.cost.clockChangeMs, inst, mhz });
    this.reconf.clock++;
  }

  /**
   * Emergency path (step fidelity): a queued request past half its TTFT SLO triggers, in the paper's order,
   * reorder (earliest deadline first), max clock, move never-started requests to a pool peer with less
   * work, and squash requests waiting past 10x their SLO (the client is told to retry). True if it acted.
   */
  private emergency(inst: SimInstance, now: number): boolean {
    const core = inst.core;
    if (!core) return false;
    const waiting = core.waiting();
    if (waiting.length === 0) return false;
    const late = waiting.filter((r) => now - r.arrivalMs > 0.5 * (r.ttftDeadlineMs! - r.arrivalMs));
    if (late.length === 0) return false;
    this.reconf.emergency++;
    core.reorderWaiting((a, b) => (a.ttftDeadlineMs ?? 0) - (b.ttftDeadlineMs ?? 0));
    if (inst.clockMhz !== this.maxClock) this.scheduleClock(inst, this.maxClock, now);
    const peers = inst.pool.instances.filter((x) => x !== inst && x.state === 'active' && x.core && x.core.stats().waiting === 0);
    if (peers.length > 0 && waiting.length > 1) {
      const moved = core.takeWaiting(waiting.slice(Math.ceil(waiting.length / 2)).map((r) => r.id));
      moved.forEach((r, k) => {
        const peer = peers[k % peers.length];
        const st = this.reqs.get(r.id)!;
        inst.outstanding--;
        st.inst = peer;
        peer.outstanding++;
        peer.core!.submit(r);
        this.wake(peer, now);
      });
    }
    const squash = core.waiting().filter((r) => now - r.arrivalMs > 10 * (r.ttftDeadlineMs! - r.arrivalMs)).map((r) => r.id);
    if (squash.length) {
      const gone = core.takeWaiting(squash);
      for (const r of gone) {
        this.reqs.delete(r.id);
        inst.outstanding--;
        this.rejected++;
      }
    }
    return true;
  }

  // ---------------------------------------------------------------- data plane: step
  private wake(inst: SimInstance, now: number): void {
    if (inst.inHeap || !inst.core) return;
    inst.inHeap = true;
    this.stepHeap.push(now, inst);
  }

  private dispatch(pool: SimPool, pred: RequestType): SimInstance | null {
    const views: InstanceView[] = [];
    const byId = new Map<string, SimInstance>();
    for (const i of pool.instances) {
      if (i.state !== 'active') continue;
      if (i.core) {
        const s = i.core.stats();
        i.view.queued = s.waiting;
        i.view.running = s.running;
      } else {
        i.view.queued = 0;
        i.view.running = 0;
      }
      views.push(i.view);
      byId.set(i.id, i);
    }
    const id = decide.chooseInstance({ type: pred }, views, this.p);
    return id ? byId.get(id)! : null;
  }

  private arriveStep(r: TraceRecord, now: number): void {
    const c = this.classify(r);
    this.requests++;
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    const pool = this.typeToPool.get(c.pred);
    let inst = pool ? this.dispatch(pool, c.pred) : null;
    if (!inst) {
      // the pool has nothing ready (all starting or drained): spill to any active instance
      for (const p of this.pools) if ((inst = this.dispatch(p, c.pred))) break;
    }
    if (!inst || !inst.core) {
      this.rejected++;
      return;
    }
    const id = `r${this.requests}`;
    const slo = TTFT_SLO_MS[inputClassOf(c.type)] * this.sloScale;
    try {
      inst.core.submit({ id, arrivalMs: now, promptTokens: Math.max(1, r.inputTokens), outputTokens: Math.max(1, r.outputTokens), type: c.pred, ttftDeadlineMs: now + slo });
    } catch {
      this.unservable++;
      return;
    }
    this.reqs.set(id, { arrivalMs: now, type: c.type, pred: c.pred, firstMs: -1, lastMs: -1, tbtSum: 0, tbtN: 0, inst });
    inst.arrivals[TYPE_INDEX[c.pred]]++;
    inst.outstanding++;
    this.wake(inst, now);
  }

  private runStep(inst: SimInstance, now: number): void {
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
      if (e.kind === 'first_token') {
        st.firstMs = e.atMs;
        st.lastMs = e.atMs;
      } else if (e.kind === 'token') {
        const g = e.atMs - st.lastMs;
        this.tbt[st.type].add(g);
        st.tbtSum += g;
        st.tbtN++;
        st.lastMs = e.atMs;
      } else if (e.kind === 'finished') {
        this.finish(e.id, st);
      }
    }
    if (core.hasWork()) {
      inst.inHeap = true;
      this.stepHeap.push(res.durationMs > 0 ? end : end + 1, inst);
    }
    if (inst.state === 'draining') this.maybeStop(inst, end);
  }

  private finish(id: string, st: ReqState): void {
    const k = TYPE_INDEX[st.type];
    const ttft = st.firstMs - st.arrivalMs;
    this.ttft[st.type].push(ttft);
    const meanTbt = st.tbtN ? st.tbtSum / st.tbtN : 0;
    this.done[k]++;
    if (ttft <= TTFT_SLO_MS[inputClassOf(st.type)] * this.sloScale && meanTbt <= TBT_SLO_MS * this.sloScale) this.sloOk[k]++;
    st.inst.outstanding--;
    this.reqs.delete(id);
  }

  // ---------------------------------------------------------------- energy and series
  private instancesEnergyJ(now: number): number {
    let e = this.stoppedEnergyJ;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting') continue;
        if (i.core) {
          if (!i.inHeap) i.core.idleUntil(now);
          e += i.core.stats().energyJ;
        } else e += i.energyJ;
      }
    return e;
  }

  private totalEnergyJ(now: number): number {
    this.accountExtra(now);
    return this.instancesEnergyJ(now) + this.extraJ;
  }

  private sample(now: number): void {
    const e = this.totalEnergyJ(now);
    const dt = (now - this.lastSampleMs) / 1000;
    if (dt <= 0) return;
    const w = (e - this.lastSampleJ) / dt;
    this.carbonG += ((e - this.lastSampleJ) / 3.6e6) * this.inp.carbonAt(now / 1000);
    this.lastSampleJ = e;
    this.lastSampleMs = now;
    this.powerSamples.push(w);
    const s = this.series;
    s.tS.push(now / 1000);
    s.powerW.push(Math.round(w));
    s.energyKWh.push(e / 3.6e6);
    const n = s.tS.length;
    for (const p of this.pools) {
      const live = p.instances.filter((i) => i.state !== 'stopped');
      (s.gpusByPool[p.id] ??= new Array(n - 1).fill(0)).push(live.reduce((a, i) => a + i.tp, 0));
      const act = live.filter((i) => i.state === 'active');
      (s.clockByPool[p.id] ??= new Array(n - 1).fill(0)).push(act.length ? Math.round(act.reduce((a, i) => a + i.clockMhz, 0) / act.length) : 0);
    }
    for (const k of Object.keys(s.gpusByPool)) if (s.gpusByPool[k].length < n) s.gpusByPool[k].push(0);
    for (const k of Object.keys(s.clockByPool)) if (s.clockByPool[k].length < n) s.clockByPool[k].push(0);
  }

  // ---------------------------------------------------------------- data plane: fluid
  /** Advance every instance over [t, t+dt) with the tick's arrivals. */
  private fluidTick(now: number, dtS: number, byPoolTrue: Map<SimPool, Float64Array>): void {
    for (const pool of this.pools) {
      const act = pool.instances.filter((i) => i.state === 'active');
      const counts = byPoolTrue.get(pool);
      // SLO capacity per instance for the pool's traffic mix: dispatch shares load in proportion to it
      let total = 0;
      if (counts) for (let k = 0; k < 9; k++) total += counts[k];
      const caps = act.map((i) => {
        if (!counts || total === 0) return 1;
        let u = 0;
        for (let k = 0; k < 9; k++) if (counts[k] > 0) u += counts[k] / total / Math.max(1e-9, maxLoadOf(this.p, REQUEST_TYPES[k], i.tp, this.maxClock));
        return 1 / u;
      });
      const capSum = caps.reduce((a, b) => a + b, 0);
      act.forEach((inst, j) => {
        const share = capSum > 0 ? caps[j] / capSum : 0;
        const load: LoadByType = {};
        if (counts) for (let k = 0; k < 9; k++) if (counts[k] > 0) load[REQUEST_TYPES[k]] = (counts[k] * share) / dtS;
        if (counts) for (let k = 0; k < 9; k++) inst.arrivals[k] += counts[k] * share;
        const w = decide.mixedPowerW(this.p, inst.tp, inst.clockMhz, load);
        inst.energyJ += w * dtS;
        if (!counts || total === 0) return;
        // latency: each type read at the instance's utilisation mapped onto that type's load axis
        const u = decide.utilisation(this.p, inst.tp, inst.clockMhz, load);
        for (let k = 0; k < 9; k++) {
          const n = counts[k] * share;
          if (n <= 0) continue;
          const t = REQUEST_TYPES[k];
          const grid = this.p.loads[t]!;
          const m = maxLoadOf(this.p, t, inst.tp, inst.clockMhz);
          const leq = Math.min(grid[grid.length - 1], Number.isFinite(u) && m > 0 ? u * m : grid[grid.length - 1]);
          const c = interpolate(this.p, t, inst.tp, inst.clockMhz, leq);
          // profile percentiles spread over the requests: 50% at p50, 49% between, 1% at p99
          const over = Number.isFinite(u) && u > 1 ? u : 1; // past SLO capacity the queue grows: scale
          this.ttftHist[t].add(c.ttftP50Ms * over, 0.5 * n);
          this.ttftHist[t].add(((c.ttftP50Ms + c.ttftP99Ms) / 2) * over, 0.49 * n);
          this.ttftHist[t].add(c.ttftP99Ms * over, 0.01 * n);
          const outTok = Math.max(1, this.p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100);
          this.tbt[t].add(c.tbtP50Ms, 0.5 * n * outTok);
          this.tbt[t].add((c.tbtP50Ms + c.tbtP99Ms) / 2, 0.49 * n * outTok);
          this.tbt[t].add(c.tbtP99Ms, 0.01 * n * outTok);
          this.done[k] += n;
          const ok = (u <= 1 ? 1 : 1 / u) * (c.ttftP99Ms <= TTFT_SLO_MS[inputClassOf(t)] * this.sloScale ? 1 : 0.5);
          this.sloOk[k] += n * ok;
        }
      });
    }
  }

  // ---------------------------------------------------------------- main loop
  async run(): Promise<SimResult> {
    const wall0 = performance.now();
    await this.buildTemplate();
    const endMs = this.template.durationMs;
    const peakAll = this.forecastPeak(0, endMs);
    const clusterMs = this.ep.clusterS * 1000;
    const poolMs = this.ep.poolS * 1000;
    const instMs = this.ep.instanceS * 1000;
    const sampleMs = (this.o.sampleS ?? (endMs > 6 * 3.6e6 ? 60 : 10)) * 1000;
    const leadMs = this.cost.instanceStartS * 1000;

    if (this.knobs.oracle) {
      this.applyClusterPlan(peakAll, 0, true);
      this.oracleEpoch(0);
    } else this.applyClusterPlan(this.knobs.dynamicInstances ? this.forecastPeak(0, clusterMs + leadMs) : peakAll, 0, true);
    if (this.knobs.dynamicShards && !this.knobs.oracle) for (const p of this.pools) this.reshardInitial(p);

    let nextCluster = clusterMs, nextPool = poolMs, nextInst = instMs, nextSample = sampleMs;
    let nextProgress = 0;
    const it = this.inp.records();
    const iter = (Symbol.asyncIterator in it ? (it as AsyncIterable<TraceRecord>)[Symbol.asyncIterator]() : (it as Iterable<TraceRecord>)[Symbol.iterator]()) as AsyncIterator<TraceRecord> | Iterator<TraceRecord>;
    let nextRec: TraceRecord | null = null;
    const pull = async () => {
      const r = await iter.next();
      nextRec = r.done ? null : r.value;
    };
    await pull();
    const tickMs = (this.o.fluidTickS ?? 5) * 1000;
    let nextTick = tickMs;
    const tickCounts = new Map<SimPool, Float64Array>();

    const timers = () => Math.min(nextCluster, nextPool, nextInst, nextSample, this.pendingClock.length ? Math.min(...this.pendingClock.map((c) => c.at)) : Infinity, this.nextReady());
    let lastT = 0;
    while (true) {
      const tArr = nextRec ? Math.max(lastT, (nextRec as TraceRecord).tMs) : Infinity;
      const tStep = this.fidelity === 'step' ? this.stepHeap.peekTime() : nextTick;
      const tTimer = timers();
      const t = Math.min(tArr, tStep, tTimer);
      if (t === Infinity || (t > endMs && !nextRec && (this.fidelity === 'fluid' || this.stepHeap.size === 0))) break;
      if (t > endMs + 3.6e6) break; // safety: an hour past the last arrival
      this.nowMs = t;
      lastT = t;
      if (tArr === t && nextRec) {
        const r = nextRec as TraceRecord;
        if (this.fidelity === 'step') this.arriveStep(r, t);
        else this.arriveFluid(r, tickCounts);
        await pull();
        continue;
      }
      if (tStep === t && this.fidelity === 'step' && this.stepHeap.size) {
        this.runStep(this.stepHeap.pop(), t);
        continue;
      }
      if (tStep === t && this.fidelity === 'fluid') {
        this.fluidTick(t, tickMs / 1000, tickCounts);
        tickCounts.clear();
        nextTick += tickMs;
        continue;
      }
      // timers
      if (this.nextReady() === t) {
        this.accountExtra(t);
        for (const p of this.pools) for (const i of p.instances) if (i.state === 'starting' && i.readyAtMs <= t) this.activate(i, t);
        continue;
      }
      if (this.pendingClock.length && this.pendingClock.some((c) => c.at <= t)) {
        const due = this.pendingClock.filter((c) => c.at <= t);
        this.pendingClock = this.pendingClock.filter((c) => c.at > t);
        for (const c of due) if (c.inst.state === 'active') {
          c.inst.core?.idleUntil(t);
          this.setClockNow(c.inst, c.mhz);
        }
        continue;
      }
      if (nextSample === t) {
        this.sample(t);
        nextSample += sampleMs;
        if (this.inp.onProgress && t >= nextProgress) {
          this.inp.onProgress(Math.min(1, t / endMs));
          nextProgress = t + endMs / 100;
        }
        continue;
      }
      if (nextInst === t) {
        this.instanceEpoch(t);
        nextInst += instMs;
        continue;
      }
      if (nextPool === t) {
        if (this.knobs.oracle) this.oracleEpoch(t);
        else if (this.knobs.dynamicShards) for (const p of [...this.pools]) this.reshard(p, t);
        nextPool += poolMs;
        continue;
      }
      if (nextCluster === t) {
        if (this.knobs.dynamicInstances && !this.knobs.oracle) this.applyClusterPlan(this.forecastPeak(t + leadMs, t + clusterMs + leadMs), t, false);
        nextCluster += clusterMs;
        continue;
      }
      break;
    }
    const end = Math.max(endMs, this.lastSampleMs);
    this.sample(end);
    return this.result(end, performance.now() - wall0);
  }

  private reshardInitial(pool: SimPool): void {
    // at t=0 the pool starts in its planned TP mix (no transition cost: the trace starts warm)
    const load = this.poolLoad(pool, 0);
    const current = this.liveMix(pool);
    const gpus = current.reduce((s, c) => s + c.tp * c.count, 0);
    if (gpus === 0) return;
    const plan = decide.planSharding({ profile: this.p, loadByType: load, gpus, current, epochS: this.ep.poolS, overhead: this.overhead, headroom: this.headroom });
    plan.take = plan.take || JSON.stringify(plan.target) !== JSON.stringify(current);
    if (!plan.take) return;
    for (const i of [...pool.instances]) {
      i.state = 'stopped';
      pool.instances = pool.instances.filter((x) => x !== i);
    }
    for (const c of plan.target) for (let k = 0; k < c.count; k++) this.newInstance(pool, c.tp, 0, 0, 'init');
  }

  private nextReady(): number {
    let m = Infinity;
    for (const p of this.pools) for (const i of p.instances) if (i.state === 'starting' && i.readyAtMs < m) m = i.readyAtMs;
    return m;
  }

  private arriveFluid(r: TraceRecord, tickCounts: Map<SimPool, Float64Array>): void {
    const c = this.classify(r);
    this.requests++;
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    let pool = this.typeToPool.get(c.pred);
    if (!pool || !pool.instances.some((i) => i.state === 'active')) pool = this.pools.find((p) => p.instances.some((i) => i.state === 'active'));
    if (!pool) {
      this.rejected++;
      return;
    }
    let a = tickCounts.get(pool);
    if (!a) tickCounts.set(pool, (a = new Float64Array(9)));
    a[TYPE_INDEX[c.type]]++;
  }

  private result(endMs: number, wallMs: number): SimResult {
    const energyJ = this.totalEnergyJ(endMs);
    const durationS = endMs / 1000;
    const gpuHours = this.gpuMs / 3.6e6;
    const stats = (types: RequestType[]): LatencyStats => {
      const tb = new LogHistogram();
      for (const t of types) tb.merge(this.tbt[t]);
      let requests = 0;
      for (const t of types) requests += this.done[TYPE_INDEX[t]];
      if (this.fidelity === 'step') {
        const all: number[] = [];
        for (const t of types) for (const v of this.ttft[t]) all.push(v);
        return { ttftP50Ms: percentile(all, 0.5), ttftP99Ms: percentile(all, 0.99), tbtP50Ms: tb.quantile(0.5), tbtP99Ms: tb.quantile(0.99), requests };
      }
      const th = new LogHistogram();
      for (const t of types) th.merge(this.ttftHist[t]);
      return { ttftP50Ms: th.quantile(0.5), ttftP99Ms: th.quantile(0.99), tbtP50Ms: tb.quantile(0.5), tbtP99Ms: tb.quantile(0.99), requests: Math.round(requests) };
    };
    const byType: Partial<Record<RequestType, LatencyStats>> = {};
    const slo: Partial<Record<RequestType, number>> = {};
    let within = true;
    for (const t of REQUEST_TYPES) {
      const k = TYPE_INDEX[t];
      if (this.done[k] <= 0) continue;
      const s = stats([t]);
      byType[t] = s;
      slo[t] = this.sloOk[k] / this.done[k];
      // a type with a handful of requests has no meaningful p99; judge types with >= 100 requests
      if (this.done[k] >= 100 && (s.ttftP99Ms > TTFT_SLO_MS[inputClassOf(t)] * this.sloScale || s.tbtP99Ms > TBT_SLO_MS * this.sloScale)) within = false;
    }
    const allTtft = new LogHistogram();
    if (this.fidelity === 'step') for (const t of REQUEST_TYPES) for (const v of this.ttft[t]) allTtft.add(v);
    else for (const t of REQUEST_TYPES) allTtft.merge(this.ttftHist[t]);
    const allTbt = new LogHistogram();
    for (const t of REQUEST_TYPES) allTbt.merge(this.tbt[t]);
    const price = this.o.gpuHourPrice ?? 2.5;
    const notes: string[] = [];
    if (this.fidelity === 'fluid') notes.push('fluid fidelity: latency percentiles are profile-based estimates (interpolated profile cells), not simulated per request');
    notes.push(`SLO attainment: share of requests with TTFT <= SLO and mean TBT <= SLO (x${this.sloScale}); p99WithinSlo judges types with >= 100 requests`);
    const totalCarbon = this.carbonG / 1000;
    return {
      policy: this.o.policy,
      fidelity: this.fidelity,
      energySource: { kind: 'modelled', profile: `${this.p.model}.${this.p.gpu} (${this.p.source.kind}, ${this.p.source.generatedBy})`, calibration: this.p.source.calibration ?? 'n/a' },
      durationS,
      requests: this.requests,
      energyKWh: energyJ / 3.6e6,
      avgPowerW: energyJ / durationS,
      p99PowerW: percentile(this.powerSamples, 0.99),
      gpuHours,
      costUsd: gpuHours * price,
      carbonKg: totalCarbon,
      latency: { ...stats([...REQUEST_TYPES]), byType },
      sloAttainment: slo,
      p99WithinSlo: within,
      reconfigurations: { ...this.reconf },
      rejected: this.rejected,
      unservable: this.unservable,
      misclassified: this.misclassified,
      wallS: wallMs / 1000,
      series: this.series,
      cdf: { ttft: allTtft.cdf(100), tbt: allTbt.cdf(100) },
      notes,
    };
  }
}
