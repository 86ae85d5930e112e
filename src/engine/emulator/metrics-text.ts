/**
 * The emulator's /metrics text: vLLM's metric names, HELP and TYPE (vllm/v1/metrics/loggers.py; a counter's family is
 * declared with its `_total` name, as prometheus_client writes it) and its labels (model_name, engine); latencies in
 * modelled seconds, i.e. on the GPU's timeline. The emulated GPU's own series are dynamollm_*.
 * `names` (the `name[]` query parameters, as prometheus_client's exposition reads them, so vLLM's /metrics too): only
 * the families with a sample of one of these names, with only those samples; absent or empty: every family.
 */
import type { LatencyHistogram, RealtimeDriver } from './driver.ts';

export function emulatorMetricsText(d: RealtimeDriver, servedModelName: string, successByReason: ReadonlyMap<string, number>, names?: readonly string[]): string {
  const only = names?.length ? new Set(names) : undefined;
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  const lbl = `engine="0",model_name="${esc(servedModelName)}"`;
  const st = d.core.stats();
  const kv = st.kvCapacityTokens > 0 ? st.kvUsedTokens / st.kvCapacityTokens : 0;
  const out: string[] = [];
  /** a family's HELP and TYPE lines, then its samples: those `only` names (every one without it), nothing when none is. */
  const family = (name: string, type: string, help: string, samples: [sample: string, line: string][]) => {
    const kept = only ? samples.filter(([s]) => only.has(s)) : samples;
    if (kept.length) out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...kept.map(([, l]) => l));
  };
  const gauge = (name: string, help: string, v: number) => family(name, 'gauge', help, [[name, `${name}{${lbl}} ${v}`]]);
  const counter = (name: string, help: string, v: number) => family(`${name}_total`, 'counter', help, [[`${name}_total`, `${name}_total{${lbl}} ${v}`]]);
  const hist = (name: string, help: string, h: LatencyHistogram) => {
    if (only && !only.has(`${name}_bucket`) && !only.has(`${name}_sum`) && !only.has(`${name}_count`)) return;
    family(name, 'histogram', help, [
      ...h.bounds.map((b, i): [string, string] => [`${name}_bucket`, `${name}_bucket{${lbl},le="${b}"} ${h.counts[i]}`]),
      [`${name}_bucket`, `${name}_bucket{${lbl},le="+Inf"} ${h.count}`], [`${name}_sum`, `${name}_sum{${lbl}} ${h.sum}`], [`${name}_count`, `${name}_count{${lbl}} ${h.count}`],
    ]);
  };
  gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', st.running);
  gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', st.waiting);
  gauge('vllm:gpu_cache_usage_perc', 'GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.', kv);
  gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', kv);
  counter('vllm:num_preemptions', 'Cumulative number of preemption from the engine.', d.core.preemptionCount());
  counter('vllm:prompt_tokens', 'Number of prefill tokens processed.', d.promptTokensTotal);
  counter('vllm:generation_tokens', 'Number of generation tokens processed.', d.generationTokensTotal);
  // vLLM v1's prefix-cache counters (tokens; 0 with caching off)
  const pc = d.core.prefixCacheTokens();
  counter('vllm:prefix_cache_queries', 'Prefix cache queries, in terms of number of queried tokens.', pc?.lookup ?? 0);
  counter('vllm:prefix_cache_hits', 'Prefix cache hits, in terms of number of cached tokens.', pc?.hit ?? 0);
  family('vllm:request_success_total', 'counter', 'Count of successfully processed requests.',
    ['stop', 'length', 'abort'].map((r) => ['vllm:request_success_total', `vllm:request_success_total{${lbl},finished_reason="${r}"} ${successByReason.get(r) ?? 0}`]));
  hist('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', d.promptTokensHist);
  hist('vllm:request_generation_tokens', 'Number of generation tokens processed.', d.generationTokensHist);
  hist('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', d.ttft);
  hist('vllm:time_per_output_token_seconds', 'Histogram of time per output token in seconds.', d.itl);
  hist('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', d.itl);
  hist('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', d.e2e);
  counter('dynamollm_emulator_energy_joules', 'Modelled cumulative energy of the instance (all GPUs), J.', d.energyJ());
  gauge('dynamollm_emulator_power_watts', 'Modelled instantaneous power of the instance (all GPUs), W.', d.powerW());
  gauge('dynamollm_emulator_sm_clock_mhz', 'SM clock the emulated GPUs run at, MHz.', st.clockMhz);
  return out.join('\n') + '\n';
}
