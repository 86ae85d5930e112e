/**
 * Prometheus metrics of a dynamollm cluster (prom-client), fed from the telemetry the actors publish on
 * NATS (InstanceTelemetry, NodeTelemetry, DecisionEvent) and from the gateway's own HTTP layer. The cluster's
 * request series (requests by outcome, rejections, SLO violations, the instances' TTFT histogram, request energy)
 * come from the request counts each instance carries in its telemetry (InstanceTelemetry.requests,
 * src/telemetry/request-counts.ts): a gateway reads no RequestRecord, and every replica, started whenever, exports
 * the same cumulative values (an instance's process counted from its start; a restarted one added from 0; a silent
 * one's counts stay). The energy a gateway estimated for a leg whose instance died (the record it publishes) is in
 * its own dynamollm_gateway_estimated_leg_energy_joules_total, not in the cluster-wide request energy.
 *
 * Names follow Prometheus conventions: base units (seconds, joules, watts, hertz), `_total` for counters.
 * Every energy series has a `source` label: 'measured' (GPU counter) or 'modelled' (emulated GPU); request
 * series have `model_name` (the served model, as vLLM's).
 *
 * An instance whose GPU read failed (InstanceTelemetry.gpuStaleMs: its engine restarting, a driver error) keeps
 * its last successful reading in dynamollm_gpu_power_watts and in the cluster's power, and says how old it is:
 * dynamollm_instance_gpu_reading_age_seconds (0 while its reads succeed) and, of the cluster's power, the part
 * from such readings, dynamollm_cluster_stale_power_watts. Its energy counter repeats while its reads fail (the
 * counter adds nothing) and the next good reading adds the energy spent meanwhile, once.
 *
 * Two kinds of series, and how to aggregate them over several gateway replicas:
 * - per replica (`dynamollm_gateway_*`): what this replica served; each request is counted by exactly one
 *   replica, so `sum` across replicas. The client-facing latencies are here: dynamollm_gateway_ttft_seconds
 *   and dynamollm_gateway_tbt_seconds (one observation per token gap, as the replica relayed them).
 * - cluster-wide (every other dynamollm_* series): every replica aggregates the same NATS telemetry, so all
 *   replicas export the same values: take `max by (<the series' own labels>)` across replicas, then sum.
 * deploy/grafana/dynamollm.json follows this (test/integration/grafana-prometheus.test.ts checks it against
 * a real Prometheus scraping two replicas).
 *
 * A replica run as worker processes (`gateway.workers`, src/runtime/workers.ts) answers /metrics for all of
 * them together (aggregateWorkerMetrics): its per-replica series summed over the workers, the cluster-wide
 * ones (every worker aggregates the same NATS telemetry) taken once (their max), the process series as
 * prom-client aggregates them (summed, or its own rule); so the replica looks as one process would.
 */
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { TokenHistogram } from './token-histogram.ts';
import { REQUEST_TTFT_BUCKETS_S, type DecisionEvent, type InstanceTelemetry, type NodeTelemetry } from '../../protocols/messages.ts';
import { reconfigurationOf } from './reconfiguration.ts';
import { RequestCountDeltas, type RequestCountDelta } from './request-counts.ts';

/** TTFT buckets, seconds: 10 ms .. 30 s (SLOs are 250 ms / 400 ms / 2 s); the instances count their requests' in the same. */
const TTFT_BUCKETS = REQUEST_TTFT_BUCKETS_S;
/** TBT buckets, seconds: 1 ms .. 2 s (SLO 100 ms). */
/** prom-client default gauges named `_total` (a counter's suffix; promtool refuses them on a gauge). */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
/** the process metrics' event-loop lag sampling period, ms. */
export const EVENT_LOOP_SAMPLE_MS = 100;
const TBT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2];


export interface TelemetryMetricsOptions {
  /** also export Node process metrics (CPU, memory, event loop). Default true. */
  processMetrics?: boolean;
  /** an instance silent this long loses its gauges (it was stopped or re-sharded away), ms. Default 30000. */
  staleAfterMs?: number;
}

interface InstanceSeen {
  pool: string;
  gpus: number[];
  energyJ: number;
  source: string;
  seenMs: number;
}

export class TelemetryMetrics {
  readonly registry = new Registry();
  private readonly staleAfterMs: number;
  private readonly seen = new Map<string, InstanceSeen>();

  readonly requests: Counter<'model_name' | 'type' | 'pool' | 'outcome'>;
  /** the instances' request TTFTs, added by bucket from their counts (a TokenHistogram: prom-client's takes one observation at a time). */
  readonly ttft: TokenHistogram<'model_name' | 'type' | 'pool'>;
  /** one observation per request: a TokenHistogram, as gatewayTbt (prom-client's validates and hashes the labels on every one). */
  readonly gatewayTtft: TokenHistogram<'model_name' | 'type' | 'pool'>;
  /** one observation per token: a TokenHistogram (prom-client's validates and hashes the labels on every one). */
  readonly gatewayTbt: TokenHistogram<'model_name' | 'type' | 'pool'>;
  readonly sloViolations: Counter<'model_name' | 'type' | 'pool'>;
  readonly rejections: Counter<'model_name' | 'type' | 'pool'>;
  readonly requestEnergy: Counter<'model_name' | 'type' | 'pool' | 'source'>;
  readonly energy: Counter<'pool' | 'instance' | 'source'>;
  readonly gpuPower: Gauge<'pool' | 'instance' | 'gpu'>;
  readonly gpuClock: Gauge<'pool' | 'instance' | 'gpu'>;
  readonly instanceQueued: Gauge<'pool' | 'instance'>;
  readonly instanceRunning: Gauge<'pool' | 'instance'>;
  readonly instanceTp: Gauge<'pool' | 'instance'>;
  readonly gpuReadingAge: Gauge<'pool' | 'instance'>;
  readonly clusterPower: Gauge;
  readonly clusterStalePower: Gauge;
  readonly unallocatedEnergy: Counter<'node' | 'source'>;
  readonly unallocatedGpus: Gauge<'node'>;
  readonly unallocatedPower: Gauge<'node'>;
  readonly reconfigurations: Counter<'kind'>;
  readonly events: Counter<'kind'>;
  readonly httpRequests: Counter<'route' | 'code'>;
  readonly gatewayRejections: Counter<'reason'>;
  readonly gatewayIgnoredFields: Counter<'field'>;
  readonly gatewayInflight: Gauge;
  readonly gatewayJournalTimeouts: Counter<'wait'>;

  constructor(opts: TelemetryMetricsOptions = {}) {
    this.staleAfterMs = opts.staleAfterMs ?? 30_000;
    const registers = [this.registry];
    if (opts.processMetrics ?? true) {
      // the event-loop lag histogram samples every 100 ms (prom-client's default, 10 ms, wakes the process 100 times
      // a second: ~5 ms of CPU per second on this project's 2-core VM, a third of an idle gateway's)
      collectDefaultMetrics({ register: this.registry, prefix: 'dynamollm_process_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      for (const n of MISNAMED_DEFAULTS) this.registry.removeSingleMetric(`dynamollm_process_${n}`);
    }
    this.requests = new Counter({ name: 'dynamollm_requests_total', help: 'Finished requests by model, request type, pool and outcome (ok, rejected, failed, cancelled); cluster-wide.', labelNames: ['model_name', 'type', 'pool', 'outcome'], registers });
    this.ttft = new TokenHistogram('dynamollm_request_ttft_seconds', 'Time to first token of finished requests as their instance measured it, seconds; cluster-wide.', ['model_name', 'type', 'pool'], TTFT_BUCKETS, registers);
    this.gatewayTtft = new TokenHistogram('dynamollm_gateway_ttft_seconds', 'Time from accepting a request to relaying its first token, at this gateway replica, seconds.', ['model_name', 'type', 'pool'], TTFT_BUCKETS, registers);
    this.gatewayTbt = new TokenHistogram('dynamollm_gateway_tbt_seconds', 'Time between consecutive tokens relayed by this gateway replica, one observation per token, seconds.', ['model_name', 'type', 'pool'], TBT_BUCKETS, registers);
    this.sloViolations = new Counter({ name: 'dynamollm_slo_violations_total', help: 'Finished requests that missed their TTFT or TBT SLO; cluster-wide.', labelNames: ['model_name', 'type', 'pool'], registers });
    this.rejections = new Counter({ name: 'dynamollm_rejections_total', help: 'Requests the cluster refused (admission control / emergency step 4); cluster-wide.', labelNames: ['model_name', 'type', 'pool'], registers });
    this.requestEnergy = new Counter({ name: 'dynamollm_request_energy_joules_total', help: 'GPU energy attributed to finished requests, joules (source: measured or modelled); cluster-wide.', labelNames: ['model_name', 'type', 'pool', 'source'], registers });
    this.energy = new Counter({ name: 'dynamollm_energy_joules_total', help: 'GPU energy of each instance since its manager started, joules (source: measured GPU counter or modelled).', labelNames: ['pool', 'instance', 'source'], registers });
    this.gpuPower = new Gauge({ name: 'dynamollm_gpu_power_watts', help: 'GPU power, watts (instance power split evenly over its GPUs).', labelNames: ['pool', 'instance', 'gpu'], registers });
    this.gpuClock = new Gauge({ name: 'dynamollm_gpu_sm_clock_hertz', help: 'Locked SM clock of each GPU, hertz.', labelNames: ['pool', 'instance', 'gpu'], registers });
    this.instanceQueued = new Gauge({ name: 'dynamollm_instance_queued_requests', help: 'Requests waiting in the engine queue of an instance.', labelNames: ['pool', 'instance'], registers });
    this.instanceRunning = new Gauge({ name: 'dynamollm_instance_running_requests', help: 'Requests in the running batch of an instance.', labelNames: ['pool', 'instance'], registers });
    this.instanceTp = new Gauge({ name: 'dynamollm_instance_tensor_parallelism', help: 'Tensor parallelism (GPUs) of an instance.', labelNames: ['pool', 'instance'], registers });
    this.gpuReadingAge = new Gauge({ name: 'dynamollm_instance_gpu_reading_age_seconds', help: "Age of the power and energy in an instance's last telemetry, seconds: 0 when its GPUs were read for it; when the read failed, the age of the last successful reading, which its dynamollm_gpu_power_watts still shows.", labelNames: ['pool', 'instance'], registers });
    this.clusterStalePower = new Gauge({ name: 'dynamollm_cluster_stale_power_watts', help: 'Of dynamollm_cluster_power_watts, the instances whose last GPU read failed (their last successful reading), watts.', registers });
    this.clusterPower = new Gauge({ name: 'dynamollm_cluster_power_watts', help: "Power of the cluster's GPUs, watts: the live instances and the GPUs no instance holds.", registers });
    this.unallocatedEnergy = new Counter({ name: 'dynamollm_unallocated_gpu_energy_joules_total', help: 'Energy of GPUs while no instance held them, by node, joules (source: measured GPU counter or modelled idle power); the cluster energy is this plus dynamollm_energy_joules_total.', labelNames: ['node', 'source'], registers });
    this.unallocatedGpus = new Gauge({ name: 'dynamollm_unallocated_gpus', help: 'GPUs of a node that no instance holds.', labelNames: ['node'], registers });
    this.unallocatedPower = new Gauge({ name: 'dynamollm_unallocated_gpu_power_watts', help: 'Power of the GPUs of a node that no instance holds, watts.', labelNames: ['node'], registers });
    this.reconfigurations = new Counter({ name: 'dynamollm_reconfigurations_total', help: 'Reconfigurations decided, by kind: clock (a change), reshard (taken), instance_start, instance_stop, scale (a cluster epoch changing pools), merge, emergency (a ladder step).', labelNames: ['kind'], registers });
    this.events = new Counter({ name: 'dynamollm_decision_events_total', help: 'Decision events on the event stream, by kind.', labelNames: ['kind'], registers });
    this.httpRequests = new Counter({ name: 'dynamollm_gateway_http_requests_total', help: 'HTTP requests answered by this gateway replica, by route and status code.', labelNames: ['route', 'code'], registers });
    this.gatewayRejections = new Counter({ name: 'dynamollm_gateway_rejections_total', help: 'Requests this gateway refused before or at admission, by reason.', labelNames: ['reason'], registers });
    this.gatewayIgnoredFields = new Counter({ name: 'dynamollm_gateway_ignored_request_fields_total', help: "Request fields this gateway accepted and ignored, as vLLM ignores a field its request model does not define (named in the response header x-dynamollm-ignored-fields), by field: the name, or other past 64 characters or 32 distinct names.", labelNames: ['field'], registers });
    this.gatewayJournalTimeouts = new Counter({ name: 'dynamollm_gateway_journal_timeouts_total', help: "Resumable streams whose journal did not hold an entry within its bound (gateway.journal: a share of the request's SLO), by wait: head (served without resumption, x-dynamollm-resumable: 0), write (resumability ended mid-stream, event ids reset).", labelNames: ['wait'], registers });
    this.gatewayInflight = new Gauge({ name: 'dynamollm_gateway_inflight_requests', help: 'Requests in flight at this gateway replica.', registers });
  }

  /** gatewayInflight's update is scheduled (inflightSoon). */
  #inflightDue = false;

  /**
   * gatewayInflight set to `n()` once per event-loop turn (setImmediate), not in the turn a request starts in: the
   * gateway's HTTP layer calls it at each in-flight change, and the request's engine call goes first.
   */
  inflightSoon(n: () => number): void {
    if (this.#inflightDue) return;
    this.#inflightDue = true;
    setImmediate(() => {
      this.#inflightDue = false;
      this.gatewayInflight.set(n());
    });
  }

  onInstance(t: InstanceTelemetry, nowMs = Date.now()): void {
    const prev = this.seen.get(t.id);
    const labels = { pool: t.pool, instance: t.id, source: t.energySource };
    // energyJ is cumulative per manager; a smaller value means the manager restarted: count it from zero.
    const delta = prev && prev.source === t.energySource ? (t.energyJ >= prev.energyJ ? t.energyJ - prev.energyJ : t.energyJ) : t.energyJ;
    if (prev && (prev.pool !== t.pool || prev.gpus.join() !== t.gpus.join())) this.dropInstance(t.id, prev);
    if (delta > 0) this.energy.inc(labels, delta);
    else this.energy.inc(labels, 0);
    const n = Math.max(1, t.gpus.length);
    for (const g of t.gpus) {
      const gl = { pool: t.pool, instance: t.id, gpu: String(g) };
      this.gpuPower.set(gl, t.powerW / n);
      this.gpuClock.set(gl, t.clockMhz * 1e6);
    }
    const il = { pool: t.pool, instance: t.id };
    this.instanceQueued.set(il, t.queued);
    this.instanceRunning.set(il, t.running);
    this.instanceTp.set(il, t.tp);
    this.gpuReadingAge.set(il, (t.gpuStaleMs ?? 0) / 1000);
    this.seen.set(t.id, { pool: t.pool, gpus: [...t.gpus], energyJ: t.energyJ, source: t.energySource, seenMs: nowMs });
    if (t.requests) for (const d of this.counted.take(t.id, t.requests)) this.onRequests(t.pool, d);
    this.lastPower.set(t.id, { powerW: t.powerW, stale: t.gpuStaleMs !== undefined });
    this.updateClusterPower(nowMs);
  }

  /** A node's GPUs with no instance (NodeTelemetry): their energy counts in the cluster's. */
  onNode(t: NodeTelemetry, nowMs = Date.now()): void {
    const prev = this.nodes.get(t.node);
    // cumulative per node agent; a smaller value means the agent restarted: count it from zero
    const delta = prev && prev.source === t.energySource ? (t.energyJ >= prev.energyJ ? t.energyJ - prev.energyJ : t.energyJ) : t.energyJ;
    this.unallocatedEnergy.inc({ node: t.node, source: t.energySource }, Math.max(0, delta));
    this.unallocatedGpus.set({ node: t.node }, t.unallocated.length);
    this.unallocatedPower.set({ node: t.node }, t.powerW);
    this.nodes.set(t.node, { energyJ: t.energyJ, source: t.energySource, powerW: t.powerW, seenMs: nowMs });
    this.updateClusterPower(nowMs);
  }

  private readonly nodes = new Map<string, { energyJ: number; source: string; powerW: number; seenMs: number }>();
  /**
   * latest power per instance, W, and whether its GPU read failed (the figure is an older reading's); cluster
   * power sums the instances and nodes not silent for staleAfterMs.
   */
  private readonly lastPower = new Map<string, { powerW: number; stale: boolean }>();
  private updateClusterPower(nowMs: number): void {
    let sum = 0, stale = 0;
    for (const [id, s] of this.seen) {
      if (nowMs - s.seenMs > this.staleAfterMs) continue;
      const p = this.lastPower.get(id);
      sum += p?.powerW ?? 0;
      if (p?.stale) stale += p.powerW;
    }
    for (const n of this.nodes.values()) if (nowMs - n.seenMs <= this.staleAfterMs) sum += n.powerW;
    this.clusterPower.set(sum);
    this.clusterStalePower.set(stale);
  }

  private dropInstance(id: string, s: InstanceSeen): void {
    for (const g of s.gpus) {
      const gl = { pool: s.pool, instance: id, gpu: String(g) };
      this.gpuPower.remove(gl);
      this.gpuClock.remove(gl);
    }
    const il = { pool: s.pool, instance: id };
    this.instanceQueued.remove(il);
    this.instanceRunning.remove(il);
    this.instanceTp.remove(il);
    this.gpuReadingAge.remove(il);
  }

  /** Removes the gauges of instances silent for staleAfterMs (counters stay: they are cumulative). */
  sweep(nowMs = Date.now()): void {
    for (const [id, s] of this.seen) {
      if (nowMs - s.seenMs > this.staleAfterMs) {
        this.dropInstance(id, s);
        this.seen.delete(id);
        this.lastPower.delete(id);
      }
    }
    // a silent node's gauges go; its last counter stays (one entry per server), so that its agent's next
    // reading adds only what is new
    for (const [node, n] of this.nodes) {
      if (nowMs - n.seenMs > this.staleAfterMs) {
        this.unallocatedGpus.remove({ node });
        this.unallocatedPower.remove({ node });
      }
    }
    this.updateClusterPower(nowMs);
  }

  /** the instances' request counts taken so far (what each one's telemetry adds). */
  private readonly counted = new RequestCountDeltas();

  /** What an instance of `pool` recorded since its last counts: added to the cluster-wide request series. */
  private onRequests(pool: string, d: RequestCountDelta): void {
    const l = { model_name: d.model, type: d.type, pool };
    for (const [outcome, n] of Object.entries(d.outcomes)) if (n > 0) this.requests.inc({ ...l, outcome }, n);
    if (d.outcomes.rejected > 0) this.rejections.inc(l, d.outcomes.rejected);
    if (d.sloMissed > 0) this.sloViolations.inc(l, d.sloMissed);
    if (d.ttftCount > 0) this.ttft.add(l, d.ttft, d.ttftSumS);
    for (const source of ['measured', 'modelled'] as const) if (d.energyJ[source] > 0) this.requestEnergy.inc({ ...l, source }, d.energyJ[source]);
  }

  onEvent(e: DecisionEvent): void {
    this.events.inc({ kind: e.kind });
    const r = reconfigurationOf(e);
    if (r) this.reconfigurations.inc({ kind: r });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** The series of one worker process's registry (`registry.getMetricsAsJSON()`). */
export type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * One replica's metrics from its workers' registries, as Prometheus text: `dynamollm_gateway_*` (what each
 * worker served) summed, every other `dynamollm_*` series but the process ones (the same cluster-wide
 * telemetry in every worker; a restarted worker's counters start again) their max, the process series by
 * prom-client's own aggregator (CPU and memory summed).
 */
export async function aggregateWorkerMetrics(perWorker: readonly WorkerMetrics[]): Promise<string> {
  const ruled = perWorker.map((metrics) => metrics.map((m) => {
    const own = m.name.startsWith('dynamollm_gateway_') || m.name.startsWith('dynamollm_process_');
    return own ? m : { ...m, aggregator: 'max' as const };
  }));
  return AggregatorRegistry.aggregate(ruled).metrics();
}
