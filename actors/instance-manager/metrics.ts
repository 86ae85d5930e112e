/**
 * The instance manager's own Prometheus /metrics (served on its health address, `dynamollm actor instance
 * --health HOST:PORT`; the node agent gives each instance manager `instanceMetricsPortBase` + its first GPU
 * index): its GPUs' clock and power, the reads of them that failed, the energy counter since it started
 * (measured from NVML, or modelled on emulated GPUs: the `source` label says which), its queue and batch, and its
 * finished requests and tokens.
 * Values are read from the instance manager at scrape time; names follow Prometheus conventions (units,
 * `_total` counters) and pass `promtool check metrics`.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { RequestRecord } from '../../protocols/index.ts';

/** The instance's state at a /metrics scrape. */
export interface InstanceMetricsSnapshot {
  clockMhz: number;
  maxClockMhz: number;
  powerW: number;
  /** GPU reads that failed (their telemetry marked stale). */
  gpuReadFailures: number;
  /** GPU energy since the instance started, J (the NVML counter's delta; modelled on emulated GPUs). */
  energyJ: number;
  energySource: 'measured' | 'modelled';
  queued: number;
  running: number;
  outcomes: Partial<Record<RequestRecord['outcome'], number>>;
  promptTokens: number;
  completionTokens: number;
}

export interface InstanceIdentity {
  instance: string;
  pool: string;
  model: string;
  tp: number;
}

const OUTCOMES = ['ok', 'rejected', 'failed', 'cancelled', 'timed_out'] as const;

export function instanceMetrics(id: InstanceIdentity, snapshot: () => InstanceMetricsSnapshot | undefined): { registry: Registry; text(): Promise<string> } {
  const registry = new Registry();
  const registers = [registry];
  registry.setDefaultLabels({ instance_id: id.instance, pool: id.pool, model_name: id.model });
  const snap = () => snapshot();
  new Gauge({
    name: 'dynamollm_instance_tensor_parallelism', help: 'GPUs of this instance (tensor parallelism).', registers,
    collect() {
      this.set(id.tp);
    },
  });
  new Gauge({
    name: 'dynamollm_instance_sm_clock_hertz', help: 'SM clock the instance manager set on its GPUs, hertz.', registers,
    collect() {
      const s = snap();
      if (s) this.set(s.clockMhz * 1e6);
    },
  });
  new Gauge({
    name: 'dynamollm_instance_max_sm_clock_hertz', help: "Highest SM clock the instance's GPUs support, hertz.", registers,
    collect() {
      const s = snap();
      if (s) this.set(s.maxClockMhz * 1e6);
    },
  });
  new Gauge({
    name: 'dynamollm_instance_power_watts', help: "Power of the instance's GPUs at the last reading, watts (source: measured or modelled).", labelNames: ['source'], registers,
    collect() {
      const s = snap();
      if (s) this.set({ source: s.energySource }, s.powerW);
    },
  });
  new Counter({
    name: 'dynamollm_instance_gpu_read_failures_total', help: "Reads of the instance's GPUs (power and energy) that failed; the telemetry of each reports the last reading, marked stale.", registers,
    collect() {
      const s = snap();
      if (!s) return;
      this.reset();
      this.inc(s.gpuReadFailures);
    },
  });
  new Counter({
    name: 'dynamollm_instance_energy_joules_total', help: "Energy of the instance's GPUs since the instance manager started, joules (source: measured NVML counter or modelled).", labelNames: ['source'], registers,
    collect() {
      const s = snap();
      if (!s) return;
      this.reset();
      this.inc({ source: s.energySource }, s.energyJ);
    },
  });
  new Gauge({
    name: 'dynamollm_instance_queued_requests', help: "Requests admitted to the instance and not yet in the engine's batch.", registers,
    collect() {
      const s = snap();
      if (s) this.set(s.queued);
    },
  });
  new Gauge({
    name: 'dynamollm_instance_running_requests', help: 'Requests in the engine (running batch).', registers,
    collect() {
      const s = snap();
      if (s) this.set(s.running);
    },
  });
  new Counter({
    name: 'dynamollm_instance_requests_total', help: 'Requests the instance finished, by outcome (ok, rejected, failed, cancelled, timed_out).', labelNames: ['outcome'], registers,
    collect() {
      const s = snap();
      if (!s) return;
      this.reset();
      for (const o of OUTCOMES) this.inc({ outcome: o }, s.outcomes[o] ?? 0);
    },
  });
  new Counter({
    name: 'dynamollm_instance_prompt_tokens_total', help: 'Prompt tokens of the requests the instance finished.', registers,
    collect() {
      const s = snap();
      if (!s) return;
      this.reset();
      this.inc(s.promptTokens);
    },
  });
  new Counter({
    name: 'dynamollm_instance_generation_tokens_total', help: 'Tokens the instance generated for the requests it finished.', registers,
    collect() {
      const s = snap();
      if (!s) return;
      this.reset();
      this.inc(s.completionTokens);
    },
  });
  return { registry, text: () => registry.metrics() };
}
