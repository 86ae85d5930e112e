/**
 * The production back ends end to end: `dynamollm up` with test/e2e/real-backends.e2e.yaml runs instance
 * managers with `engine.kind: vllm` (the real VllmEngine process management and HTTP streaming, against the
 * fake `vllm` executable test/fixtures/fake-vllm) and `gpuBackend: nvml` (the real koffi NVML code, against
 * the fake libnvidia-ml.so.1 compiled from test/fixtures/fake-nvml with gcc). Per-request energy is then
 * measured: taken from the (fake) NVML energy counter, whose power is known (100 W + 600 W x (clock/1980)^2
 * per GPU), so the figure each request reports can be bounded by what the counter can have integrated.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpCluster, type UpCluster } from '../helpers/cluster.ts';
import { buildFakeNvml } from '../fixtures/fake-nvml/build.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { freePort } from '../helpers/net.ts';
import { promtoolProblems } from '../helpers/promtool.ts';

const KEY = 'sk-e2e-test-key';
/** the fake GPU's power bounds per GPU, W (fake_nvml.c) */
const P_MIN_W = 100;
const P_MAX_W = 700;
/** the instance manager reads the energy counter every second (its telemetry tick) */
const TICK_S = 1;
const TOKEN_MS = 20;
/** one TP2 instance (test/e2e/real-backends.e2e.yaml): its energy is both GPUs' */
const TP = 2;
const hasGcc = existsSync('/usr/bin/gcc') || existsSync('/usr/bin/cc');

let cluster: UpCluster;
let nvmlLog = '';
let metricsPort = 0;
let argsFile = '';

beforeAll(async () => {
  if (!hasGcc) return;
  const { dir, libPath } = buildFakeNvml();
  nvmlLog = join(dir, 'calls.log');
  argsFile = join(dir, 'vllm-args.jsonl');
  // the shipped test config plus the instance managers' /metrics ports (a free base: the instance's first GPU is 0)
  metricsPort = await freePort();
  const config = join(dir, 'real-backends.yaml');
  writeFileSync(config, `${readFileSync('test/e2e/real-backends.e2e.yaml', 'utf8')}\ninstanceMetricsPortBase: ${metricsPort}\n`);
  cluster = await startUpCluster({
    config,
    readyTimeoutS: 80,
    runDirPrefix: 'dyn-real-',
    env: { DYNAMOLLM_NVML_LIB: libPath, FAKE_NVML_LOG: nvmlLog, FAKE_NVML_DEVICE_COUNT: '2', FAKE_VLLM_TOKEN_MS: String(TOKEN_MS), FAKE_VLLM_ARGS_FILE: argsFile },
  });
}, 100_000);

afterAll(async () => {
  await cluster?.stop();
}, 40_000);

async function complete(maxTokens: number, stream: boolean): Promise<{ ms: number; usage: { completion_tokens: number; energy_joules: number; energy_source: string } }> {
  const t0 = Date.now();
  const res = await fetch(`${cluster.base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: 'llama3.1-8b', prompt: 'measure the energy of this request', max_tokens: maxTokens, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) }),
  });
  expect(res.status).toBe(200);
  const text = await res.text();
  const ms = Date.now() - t0;
  if (!stream) return { ms, usage: (JSON.parse(text) as { usage: never }).usage };
  const events = text.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)) as { usage?: never });
  const u = events.find((e) => e.usage)?.usage;
  expect(u, text.slice(-500)).toBeDefined();
  return { ms, usage: u! };
}

describe.skipIf(!hasGcc)('real back ends (vllm engine, NVML) against their stand-ins', () => {
  it('the fake vllm served the request through the real engine path, with energy measured from the NVML counter', async () => {
    // long enough to span at least one energy reading: 100 tokens x 20 ms = 2 s
    // the engine was started the way README "Running against real vLLM and GPUs" says
    const starts = readFileSync(argsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { argv: string[]; cudaVisibleDevices: string });
    expect(starts[0]!.argv.slice(0, 4)).toEqual(['serve', 'meta-llama/Llama-3.1-8B-Instruct', '--tensor-parallel-size', '2']);
    expect(starts[0]!.argv.join(' ')).toMatch(/--served-model-name llama3\.1-8b .*--max-num-seqs 64$/);
    expect(starts[0]!.cudaVisibleDevices).toBe('0,1');
    const { ms, usage } = await complete(100, false);
    console.log(`measured energy: ${usage.energy_joules.toFixed(1)} J for a 100-token request of ${ms} ms on a TP${TP} instance (fake NVML counter)`);
    expect(usage.completion_tokens).toBe(100);
    expect(usage.energy_source).toBe('measured');
    // alone on the instance for >= 1 full tick: at least the floor power of its GPUs over one tick; at most their
    // peak power over the request plus one tick (the reading that closes it)
    expect(usage.energy_joules).toBeGreaterThanOrEqual(P_MIN_W * TP * TICK_S * 0.9);
    expect(usage.energy_joules).toBeLessThanOrEqual(P_MAX_W * TP * (ms / 1000 + TICK_S) * 1.05);
    const calls = readFileSync(nvmlLog, 'utf8');
    expect(calls).toContain('nvmlInit_v2');
    expect(calls).toContain('nvmlDeviceResetGpuLockedClocks');
    expect(calls).toContain('nvmlDeviceGetTotalEnergyConsumption');
    expect(calls).toContain('nvmlDeviceGetPowerUsage');
  });

  it('streamed: the usage chunk carries the measured energy too; the gateway counts it as measured', async () => {
    const { ms, usage } = await complete(80, true);
    expect(usage.completion_tokens).toBe(80);
    expect(usage.energy_source).toBe('measured');
    expect(usage.energy_joules).toBeGreaterThan(0);
    expect(usage.energy_joules).toBeLessThanOrEqual(P_MAX_W * TP * (ms / 1000 + TICK_S) * 1.05);
    const fams = parsePrometheusText(await (await fetch(`${cluster.base}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text());
    const sources = new Set((fams.get('dynamollm_energy_joules_total')?.samples ?? []).filter((s) => s.value > 0).map((s) => s.labels.source));
    expect([...sources]).toContain('measured');
    expect([...sources]).not.toContain('modelled');
  });

  it("the instance manager's own /metrics: promtool-clean, energy from the NVML counter, its requests and tokens", async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(promtoolProblems(text)).toEqual([]);
    const fams = parsePrometheusText(text);
    const one = (name: string, labels: Record<string, string> = {}) => {
      const s = (fams.get(name)?.samples ?? []).find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
      expect(s, `${name} ${JSON.stringify(labels)}`).toBeDefined();
      return s!;
    };
    const energy = one('dynamollm_instance_energy_joules_total', { source: 'measured' });
    expect(energy.labels).toMatchObject({ model_name: 'llama3.1-8b', pool: 'pool-all' });
    expect(energy.labels.instance_id).toMatch(/^pool-all-n0-g0x2$/);
    expect(energy.value).toBeGreaterThan(0);
    // the previous tests' two requests, 100 + 80 tokens
    expect(one('dynamollm_instance_requests_total', { outcome: 'ok' }).value).toBeGreaterThanOrEqual(2);
    expect(one('dynamollm_instance_generation_tokens_total').value).toBeGreaterThanOrEqual(180);
    expect(one('dynamollm_instance_tensor_parallelism').value).toBe(TP);
    const power = one('dynamollm_instance_power_watts', { source: 'measured' }).value;
    expect(power).toBeGreaterThanOrEqual(P_MIN_W * TP);
    expect(power).toBeLessThanOrEqual(P_MAX_W * TP);
    expect(one('dynamollm_instance_sm_clock_hertz').value).toBeGreaterThan(0);
  });
});
