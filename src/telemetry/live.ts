/**
 * The live view of the cluster for the dashboard: latest state of every instance, power and cumulative
 * energy over time, the SinglePool baseline (the same load served at TP8 / max clock on all GPUs, from the
 * profile), SLO attainment per request type and the latest decisions. Fed by the same telemetry messages as
 * the Prometheus metrics; `snapshot()` is what the WebSocket stream sends once a second.
 *
 * Energy truth: the cluster figure is the sum of the instances' own counters (measured or modelled, as
 * they say); the baseline is always modelled (profile interpolation), and the snapshot says so.
 *
 * An instance whose GPU read failed (InstanceTelemetry.gpuStaleMs) shows its last successful reading marked with
 * its age (`gpuStaleMs` in the snapshot's instance), and that reading's part of the cluster's power is said apart
 * (`stalePowerW`); its repeated energy counter adds nothing, and its next good reading adds what was spent meanwhile.
 *
 * The requests by outcome and the SLO attainment are the instances' request counts (InstanceTelemetry.requests,
 * src/telemetry/request-counts.ts), as the Prometheus series: each instance process's from its start, read from
 * its telemetry (no RequestRecord); a leg a gateway estimated (its instance died) is in no count, its next leg is.
 */
import type { DecisionEvent, InstanceTelemetry, NodeTelemetry } from '../../protocols/messages.ts';
import { RequestCountDeltas } from './request-counts.ts';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { idlePowerOf, interpolate } from '../model/profile.ts';
import { powerSum, staleOf } from './power-sum.ts';

export interface LiveOptions {
  /** profile for the SinglePool baseline; without it the baseline is not drawn. */
  profile?: Profile;
  /** GPUs of the whole cluster (the baseline runs GPUs/8 TP8 instances). Default: GPUs seen in telemetry. */
  clusterGpus?: number;
  /** points kept in the time series (one per tick). Default 600. */
  maxPoints?: number;
  /** decision events kept. Default 50. */
  maxEvents?: number;
  /**
   * emulated engines' time-scale (cluster config engine.timeScale): their energy counters advance in model
   * time, so the baseline integrates power over wall time x timeScale to compare like with like. Default 1.
   */
  timeScale?: number;
  /** an instance silent this long is dropped from the view, ms. Default 15000. */
  staleAfterMs?: number;
}

export interface SeriesPoint {
  tMs: number;
  powerW: number;
  energyJ: number;
  baselinePowerW: number | null;
  baselineEnergyJ: number | null;
}

export interface LiveSnapshot {
  v: 1;
  atMs: number;
  pools: { id: string; instances: (Pick<InstanceTelemetry, 'id' | 'tp' | 'gpus' | 'clockMhz' | 'maxClockMhz' | 'powerW' | 'queued' | 'running' | 'state' | 'node' | 'gpuStaleMs'> & { energyJ: number })[] }[];
  /** the cluster's GPUs: the instances and the GPUs no instance holds, W. */
  powerW: number;
  /** of powerW, the instances whose last GPU read failed (their last successful reading), W. */
  stalePowerW: number;
  /** of powerW, the GPUs no instance holds, W. */
  unallocatedPowerW: number;
  /** the cluster's GPU energy since this gateway watched, J (instances and unallocated GPUs). */
  energyJ: number;
  energySource: 'measured' | 'modelled' | 'mixed' | 'none';
  baselineEnergyJ: number | null;
  baselineSource: string | null;
  series: SeriesPoint[];
  slo: Record<string, { total: number; met: number }>;
  requests: { ok: number; rejected: number; failed: number; cancelled: number; timed_out: number };
  events: { atMs: number; kind: string; actor: string; summary: string }[];
}

interface Inst {
  t: InstanceTelemetry;
  seenMs: number;
  lastEnergyJ: number;
}

export class LiveState {
  private readonly inst = new Map<string, Inst>();
  /** node -> its unallocated GPUs' latest power and energy counter (one entry per server). */
  private readonly nodes = new Map<string, { powerW: number; seenMs: number; lastEnergyJ: number }>();
  private readonly series: SeriesPoint[] = [];
  private readonly events: LiveSnapshot['events'] = [];
  private readonly slo: Record<string, { total: number; met: number }> = {};
  private readonly requests = { ok: 0, rejected: 0, failed: 0, cancelled: 0, timed_out: 0 };
  /** the instances' request counts taken so far. */
  private readonly counted = new RequestCountDeltas();
  private energyJ = 0;
  private baselineEnergyJ = 0;
  private lastTickMs: number | null = null;
  private readonly maxPoints: number;
  private readonly maxEvents: number;
  private readonly staleAfterMs: number;

  constructor(private readonly opts: LiveOptions = {}) {
    this.maxPoints = opts.maxPoints ?? 600;
    this.maxEvents = opts.maxEvents ?? 50;
    this.staleAfterMs = opts.staleAfterMs ?? 15_000;
    for (const t of REQUEST_TYPES) this.slo[t] = { total: 0, met: 0 };
  }

  onInstance(t: InstanceTelemetry, nowMs = Date.now()): void {
    const prev = this.inst.get(t.id);
    if (prev) {
      // cumulative counter per manager; a drop means the manager restarted and counts from zero again
      this.energyJ += t.energyJ >= prev.lastEnergyJ ? t.energyJ - prev.lastEnergyJ : t.energyJ;
    }
    // the first message of an instance only sets its reference: energy before we watched is not ours
    this.inst.set(t.id, { t, seenMs: nowMs, lastEnergyJ: t.energyJ });
    if (!t.requests) return;
    for (const d of this.counted.take(t.id, t.requests)) {
      for (const o of Object.keys(this.requests) as (keyof LiveSnapshot['requests'])[]) this.requests[o] += d.outcomes[o];
      const s = this.slo[d.type]!;
      s.total += d.outcomes.ok;
      s.met += Math.max(0, d.outcomes.ok - d.sloMissed);
    }
  }

  /** A node's GPUs that no instance holds: their power and energy count in the cluster's. */
  onNode(t: NodeTelemetry, nowMs = Date.now()): void {
    const prev = this.nodes.get(t.node);
    if (prev) this.energyJ += t.energyJ >= prev.lastEnergyJ ? t.energyJ - prev.lastEnergyJ : t.energyJ;
    this.nodes.set(t.node, { powerW: t.powerW, seenMs: nowMs, lastEnergyJ: t.energyJ });
  }

  /** power of the GPUs no instance holds, over the nodes not yet stale, W. */
  private unallocatedPowerW(nowMs: number): number {
    let w = 0;
    for (const n of this.nodes.values()) if (nowMs - n.seenMs <= this.staleAfterMs) w += n.powerW;
    return w;
  }

  onEvent(e: DecisionEvent): void {
    this.events.unshift({ atMs: e.atMs, kind: e.kind, actor: e.actor, summary: e.summary });
    if (this.events.length > this.maxEvents) this.events.length = this.maxEvents;
  }

  private live(nowMs: number): Inst[] {
    const out: Inst[] = [];
    for (const [id, i] of this.inst) {
      if (nowMs - i.seenMs > this.staleAfterMs) this.inst.delete(id);
      else out.push(i);
    }
    return out;
  }

  /**
   * SinglePool baseline power (W): all load on GPUs/8 TP8 instances at max clock (smaller clusters: largest TP that fits), load split evenly;
   * an instance's power is its idle power plus, per type, the profile's power above idle at that type's
   * share of the load (loads beyond the profiled grid are clamped to its edge: the baseline is then a floor).
   */
  baselinePowerW(insts: Inst[]): number | null {
    const p = this.opts.profile;
    if (!p) return null;
    const gpus = this.opts.clusterGpus ?? insts.reduce((s, i) => s + i.t.gpus.length, 0);
    // TP8 as in the paper; a cluster smaller than 8 GPUs uses its largest profiled TP that fits
    const tp = this.baselineTp(gpus);
    if (tp === null) return null;
    const n = Math.floor(gpus / tp);
    const maxClock = p.clocksMhz[p.clocksMhz.length - 1]!;
    const idle = idlePowerOf(p, tp, maxClock);
    const load: Partial<Record<RequestType, number>> = {};
    for (const i of insts) for (const [t, l] of Object.entries(i.t.loadByType)) load[t as RequestType] = (load[t as RequestType] ?? 0) + (l ?? 0);
    let per = idle;
    for (const [t, l] of Object.entries(load) as [RequestType, number][]) {
      const grid = p.loads[t];
      if (!grid || l <= 0) continue;
      const x = Math.min(l / n, grid[grid.length - 1]!);
      try {
        per += Math.max(0, interpolate(p, t, tp, maxClock, x).powerW - idle);
      } catch {
        // type not profiled at TP8: contributes nothing rather than breaking the dashboard
      }
    }
    return per * n;
  }

  private baselineTp(gpus: number): number | null {
    const fits = (this.opts.profile?.tpDegrees ?? []).filter((t) => t <= 8 && t <= gpus);
    return fits.length ? Math.max(...fits) : null;
  }

  /** Appends one point to the series (call once a second). */
  tick(nowMs = Date.now()): SeriesPoint {
    const insts = this.live(nowMs);
    const powerW = insts.reduce((s, i) => s + i.t.powerW, 0) + this.unallocatedPowerW(nowMs);
    const bp = this.baselinePowerW(insts);
    if (bp !== null && this.lastTickMs !== null) this.baselineEnergyJ += (bp * Math.max(0, nowMs - this.lastTickMs) * (this.opts.timeScale ?? 1)) / 1000;
    this.lastTickMs = nowMs;
    const pt: SeriesPoint = {
      tMs: nowMs,
      powerW,
      energyJ: this.energyJ,
      baselinePowerW: bp,
      baselineEnergyJ: bp === null ? null : this.baselineEnergyJ,
    };
    this.series.push(pt);
    if (this.series.length > this.maxPoints) this.series.splice(0, this.series.length - this.maxPoints);
    return pt;
  }

  snapshot(nowMs = Date.now(), points = 300): LiveSnapshot {
    const insts = this.live(nowMs);
    const pools = new Map<string, LiveSnapshot['pools'][number]>();
    const sources = new Set<string>();
    for (const { t } of insts) {
      sources.add(t.energySource);
      let p = pools.get(t.pool);
      if (!p) pools.set(t.pool, (p = { id: t.pool, instances: [] }));
      p.instances.push({ id: t.id, tp: t.tp, gpus: t.gpus, clockMhz: t.clockMhz, maxClockMhz: t.maxClockMhz, powerW: t.powerW, queued: t.queued, running: t.running, state: t.state, node: t.node, energyJ: t.energyJ, ...staleOf(t) });
    }
    for (const p of pools.values()) p.instances.sort((a, b) => a.id.localeCompare(b.id));
    const last = this.series[this.series.length - 1];
    const power = powerSum(insts.map((i) => i.t));
    return {
      v: 1,
      atMs: nowMs,
      pools: [...pools.values()].sort((a, b) => a.id.localeCompare(b.id)),
      powerW: power.powerW + this.unallocatedPowerW(nowMs),
      stalePowerW: power.stalePowerW,
      unallocatedPowerW: this.unallocatedPowerW(nowMs),
      energyJ: this.energyJ,
      energySource: sources.size === 0 ? 'none' : sources.size > 1 ? 'mixed' : (([...sources][0]) as 'measured' | 'modelled'),
      baselineEnergyJ: last?.baselineEnergyJ ?? null,
      baselineSource: this.opts.profile ? `modelled: SinglePool TP${this.baselineTp(this.opts.clusterGpus ?? insts.reduce((s, i) => s + i.t.gpus.length, 0)) ?? 8} at max clock from profile ${this.opts.profile.model}/${this.opts.profile.gpu} (${this.opts.profile.source.kind})` : null,
      series: this.series.slice(-points),
      slo: structuredClone(this.slo),
      requests: { ...this.requests },
      events: this.events.slice(0, 20),
    };
  }
}
