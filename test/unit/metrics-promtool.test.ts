/**
 * Every /metrics text passes `promtool check metrics`: the gateway's (TelemetryMetrics, with data in every
 * family), the pool manager's (its holds) and the emulator's, whose vllm:* families carry vLLM's names, HELP, TYPE and labels
 * (vllm/v1/metrics/loggers.py: a counter declared under its `_total` name, model_name and engine labels).
 */
import { describe, expect, it } from 'vitest';
import { RequestTally } from '../../src/telemetry/request-counts.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { promtoolProblems } from '../helpers/promtool.ts';
import { poolManagerMetrics } from '../../actors/pool-manager/metrics.ts';

/** vLLM's families: name as exposed -> [TYPE, HELP]. */
const VLLM: Record<string, [string, string]> = {
  'vllm:num_requests_running': ['gauge', 'Number of requests in model execution batches.'],
  'vllm:num_requests_waiting': ['gauge', 'Number of requests waiting to be processed.'],
  'vllm:gpu_cache_usage_perc': ['gauge', 'GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.'],
  'vllm:kv_cache_usage_perc': ['gauge', 'KV-cache usage. 1 means 100 percent usage.'],
  'vllm:num_preemptions_total': ['counter', 'Cumulative number of preemption from the engine.'],
  'vllm:prompt_tokens_total': ['counter', 'Number of prefill tokens processed.'],
  'vllm:generation_tokens_total': ['counter', 'Number of generation tokens processed.'],
  'vllm:request_success_total': ['counter', 'Count of successfully processed requests.'],
  'vllm:request_prompt_tokens': ['histogram', 'Number of prefill tokens processed.'],
  'vllm:request_generation_tokens': ['histogram', 'Number of generation tokens processed.'],
  'vllm:time_to_first_token_seconds': ['histogram', 'Histogram of time to first token in seconds.'],
  'vllm:time_per_output_token_seconds': ['histogram', 'Histogram of time per output token in seconds.'],
  'vllm:inter_token_latency_seconds': ['histogram', 'Histogram of inter-token latency in seconds.'],
  'vllm:e2e_request_latency_seconds': ['histogram', 'Histogram of e2e request latency in seconds.'],
};

describe('promtool check metrics', () => {
  it('is clean on the gateway /metrics', async () => {
    const m = new TelemetryMetrics();
    const tally = new RequestTally();
    tally.add({ v: 1, id: 'r', type: 'SS', pool: 'p', model: 'm', outcome: 'ok', promptTokens: 1, completionTokens: 2, ttftMs: 10, energyJ: 1, energySource: 'modelled', sloMet: false, finishedMs: 1 });
    m.onInstance({ v: 1, id: 'i1', pool: 'p', tp: 1, gpus: [0], clockMhz: 1200, maxClockMhz: 1980, powerW: 300, energyJ: 10, energySource: 'modelled', queued: 0, running: 1, loadByType: {}, state: 'running', sentMs: 0, requests: tally.counts(1) });
    m.onEvent({ v: 1, kind: 'clock', actor: 'a', atMs: 1, summary: 's', decision: {}, inputs: {} });
    m.gatewayTtft.observe({ model_name: 'm', type: 'SS', pool: 'p' }, 0.1);
    m.gatewayTbt.observe({ model_name: 'm', type: 'SS', pool: 'p' }, 0.02);
    m.httpRequests.inc({ route: '/v1/completions', code: '200' });
    m.gatewayRejections.inc({ reason: 'context_length' });
    expect(promtoolProblems(await m.text())).toEqual([]);
  });

  it("is clean on the pool manager's /metrics, which reads its leaders' holds at scrape time", async () => {
    const holds = { held: 5, dispatched: 3, refused: 1, timed_out: 0 };
    let held = 1;
    const views = [
      { pool: 'pool-SS', isLeader: () => true, heldNow: () => held, holds },
      // a standby counts what it held while it led, and holds nothing now
      { pool: 'pool-LL', isLeader: () => false, heldNow: () => 7, holds: { held: 2, dispatched: 2, refused: 0, timed_out: 0 } },
    ];
    const m = poolManagerMetrics('pm-0', () => views);
    const text = await m.text();
    expect(promtoolProblems(text)).toEqual([]);
    const value = (t: string, name: string, labels: Record<string, string>) =>
      parsePrometheusText(t).get(name)?.samples.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;
    expect(value(text, 'dynamollm_pool_leader', { pool: 'pool-SS', manager_id: 'pm-0' })).toBe(1);
    expect(value(text, 'dynamollm_pool_leader', { pool: 'pool-LL' })).toBe(0);
    expect(value(text, 'dynamollm_pool_held_requests', { pool: 'pool-SS' })).toBe(1);
    expect(value(text, 'dynamollm_pool_held_requests', { pool: 'pool-LL' })).toBe(0);
    expect(value(text, 'dynamollm_pool_held_requests_total', { pool: 'pool-SS' })).toBe(5);
    expect(value(text, 'dynamollm_pool_hold_outcomes_total', { pool: 'pool-SS', outcome: 'dispatched' })).toBe(3);
    expect(value(text, 'dynamollm_pool_hold_outcomes_total', { pool: 'pool-SS', outcome: 'refused' })).toBe(1);
    expect(value(text, 'dynamollm_pool_hold_outcomes_total', { pool: 'pool-SS', outcome: 'timed_out' })).toBe(0);
    expect(value(text, 'dynamollm_pool_hold_outcomes_total', { pool: 'pool-LL', outcome: 'dispatched' })).toBe(2);
    // read at scrape time: the next scrape sees the new counts, not a sum with the previous ones
    held = 0;
    holds.held = 6;
    holds.dispatched = 5;
    const next = await m.text();
    expect(value(next, 'dynamollm_pool_held_requests', { pool: 'pool-SS' })).toBe(0);
    expect(value(next, 'dynamollm_pool_held_requests_total', { pool: 'pool-SS' })).toBe(6);
    expect(value(next, 'dynamollm_pool_hold_outcomes_total', { pool: 'pool-SS', outcome: 'dispatched' })).toBe(5);
  });

  it("is clean on the emulator's /metrics, whose vllm:* families are vLLM's", async () => {
    const em = new EmulatorServer({ perf: createPerfModel('llama2-70b', 'h100'), tp: 4, zeroDelay: true, servedModelName: 'meta-llama/Llama-2-70b-hf' });
    const port = await em.listen(0);
    try {
      for (const stream of [false, true]) {
        const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'meta-llama/Llama-2-70b-hf', prompt: 'hello', max_tokens: 6, ignore_eos: true, stream }) });
        await r.text();
      }
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(promtoolProblems(text)).toEqual([]);
      for (const [name, [type, help]] of Object.entries(VLLM)) {
        expect(text, name).toContain(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`);
      }
      const fams = parsePrometheusText(text);
      // TBT is observed per token: 2 requests x 5 gaps
      const itl = fams.get('vllm:inter_token_latency_seconds')!.samples.find((s) => s.name.endsWith('_count'))!;
      expect(itl.value).toBe(10);
      expect(itl.labels).toMatchObject({ model_name: 'meta-llama/Llama-2-70b-hf', engine: '0' });
      expect(fams.get('vllm:request_success_total')!.samples.find((s) => s.labels.finished_reason === 'length')!.value).toBe(2);
    } finally {
      await em.close();
    }
  });
});
