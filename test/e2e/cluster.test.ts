/**
 * End to end: `dynamollm up` (real nats-server, cluster/pool managers, a node agent, instance managers,
 * emulated engines, gateway) on a small config (test/e2e/cluster.e2e.yaml: 2 emulated H100s,
 * Llama-3.1-8B TP1, time-scale 4), then the official `openai` client, error codes, API keys, /metrics,
 * `dynamollm status`, a short trace replay, and the dashboard in headless Chromium (screenshot saved to
 * test/artifacts/dashboard.png). Chromium tests skip with a message when /usr/bin/chromium is absent.
 */
import { startUpCluster, type UpCluster } from '../helpers/cluster.ts';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { replayTrace } from '../../src/telemetry/replay.ts';

const KEY = 'sk-e2e-test-key';
const CHROMIUM = '/usr/bin/chromium';
let cluster: UpCluster;
let base: string;
let natsUrl: string;


beforeAll(async () => {
  cluster = await startUpCluster({ config: 'test/e2e/cluster.e2e.yaml', readyTimeoutS: 80, runDirPrefix: 'dyn-e2e-' });
  base = cluster.base;
  natsUrl = cluster.natsUrl;
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
  expect(cluster.output()).toContain('dynamollm: stopped');
}, 40_000);

const client = (apiKey = KEY) => new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0, timeout: 30_000 });

/** The gateway's own count of answered /v1/completions requests, by HTTP status (its /metrics). */
async function completionsAnswered(base: string): Promise<Map<string, number>> {
  const fams = parsePrometheusText(await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text());
  const byCode = new Map<string, number>();
  for (const s of fams.get('dynamollm_gateway_http_requests_total')?.samples ?? []) {
    if (s.labels.route === '/v1/completions') byCode.set(s.labels.code!, (byCode.get(s.labels.code!) ?? 0) + s.value);
  }
  return byCode;
}
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('dynamollm up + openai client', () => {
  it('completions and chat completions, streaming and not, with energy in usage', async () => {
    const c = client();
    const models = await c.models.list();
    const model = models.data[0]!.id;
    const r = await c.completions.create({ model, prompt: 'The energy of one request is', max_tokens: 12 });
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    const u = r.usage as unknown as { energy_joules: number; energy_source: string };
    expect(u.energy_joules).toBeGreaterThan(0);
    expect(u.energy_source).toBe('modelled');
    const s = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: { completion_tokens: number; energy_joules?: number } | undefined;
    for await (const ch of s) {
      text += ch.choices[0]?.delta.content ?? '';
      if (ch.usage) usage = ch.usage as typeof usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage!.energy_joules).toBeGreaterThan(0);
    const chat = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(chat.choices[0]!.message.role).toBe('assistant');
    const sc = await c.completions.create({ model, prompt: 'stream me', max_tokens: 5, stream: true });
    let n = 0;
    for await (const ch of sc) if (ch.choices[0]?.text) n++;
    expect(n).toBeGreaterThan(0);
  });

  it('the gateway is live and ready (the cluster has a ready instance), without an API key', async () => {
    const live = await fetch(`${base}/livez`);
    expect(live.status).toBe(200);
    let ready = await fetch(`${base}/readyz`);
    for (let i = 0; i < 20 && ready.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 250));
      ready = await fetch(`${base}/readyz`);
    }
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ live: true, ready: true, nats: 'connected', kind: 'gateway' });
  });

  it('refuses bad requests and bad keys with the right codes', async () => {
    const model = (await client().models.list()).data[0]!.id;
    await expect(client('sk-not-a-valid-key').completions.create({ model, prompt: 'x' })).rejects.toMatchObject({ status: 401 });
    const noKey = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: 'x' }) });
    expect(noKey.status).toBe(401);
    await expect(client().completions.create({ model, prompt: 'x', max_tokens: -5 })).rejects.toMatchObject({ status: 400 });
    await expect(client().chat.completions.create({ model, messages: [] })).rejects.toMatchObject({ status: 400 });
    await expect(client().completions.create({ model: 'no-such-model', prompt: 'x' })).rejects.toMatchObject({ status: 404 });
    const big = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model, prompt: 'x'.repeat(2 << 20) }) });
    expect(big.status).toBe(413);
  });

  it('/metrics parses and has the families', async () => {
    // instances publish telemetry once a second, their request counts in it: wait (bounded) until it reached the gateway
    let fams = parsePrometheusText(await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text());
    for (let i = 0; i < 50 && !(fams.get('dynamollm_gpu_power_watts')?.samples.length && fams.get('dynamollm_requests_total')?.samples.length); i++) {
      await new Promise((r) => setTimeout(r, 200));
      fams = parsePrometheusText(await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text());
    }
    for (const f of ['dynamollm_requests_total', 'dynamollm_request_ttft_seconds', 'dynamollm_gateway_ttft_seconds', 'dynamollm_gateway_tbt_seconds', 'dynamollm_slo_violations_total', 'dynamollm_rejections_total', 'dynamollm_energy_joules_total', 'dynamollm_gpu_power_watts', 'dynamollm_gpu_sm_clock_hertz', 'dynamollm_reconfigurations_total']) {
      expect(fams.has(f), f).toBe(true);
    }
    expect(fams.get('dynamollm_gpu_power_watts')!.samples.length).toBeGreaterThan(0);
    expect(fams.get('dynamollm_requests_total')!.samples.reduce((a, s) => a + s.value, 0)).toBeGreaterThan(0);
  });

  it('dynamollm status shows the instances', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/dynamollm.js', 'status', '--nats', natsUrl, '--nkey', cluster.observerNkey], { timeout: 20_000 });
    expect(stdout).toMatch(/cluster leader/);
    expect(stdout).toMatch(/pool-all/);
  });

  it('a short trace replay accounts for every request', async () => {
    const before = await completionsAnswered(base);
    const s = await replayTrace({ trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', url: base, apiKey: KEY, speed: 20, limit: 25, timeScale: 4, requestTimeoutMs: 30_000 });
    const after = await completionsAnswered(base);
    expect(s.sent).toBe(25 - s.skipped);
    // accounted for on both sides: the gateway answered every request the client sent, and at least the ones
    // the client counts ok with 200 (the client's ok + rejected + failed = sent holds by construction)
    expect(total(after) - total(before)).toBe(s.sent);
    expect((after.get('200') ?? 0) - (before.get('200') ?? 0)).toBeGreaterThanOrEqual(s.ok);
    expect(s.ok).toBeGreaterThan(0);
    expect(s.clusterEnergyJ).toBeGreaterThan(0);
  });
});

if (!existsSync(CHROMIUM)) console.warn(`browser e2e skipped: ${CHROMIUM} not found (Debian: apt-get install -y chromium)`);

describe('dashboard in a real browser', () => {
  it.skipIf(!existsSync(CHROMIUM))('shows live values that change under load (screenshot saved)', async () => {
    const { chromium } = await import('playwright-core');
    // a fresh profile dir per run (playwright wants it as launchPersistentContext's argument, not a flag)
    const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'dyn-chromium-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    try {
      const page = await browser.newPage();
      // with API keys the dashboard needs one: its login form (POST /login) sets its cookie once
      await page.goto(`${base}/`);
      await page.fill('input[name=key]', KEY);
      await page.click('button[type=submit]');
      await page.waitForSelector('#conn', { timeout: 10_000 }); // the dashboard, not the login form
      await page.waitForFunction(() => document.getElementById('conn')?.textContent === 'live', null, { timeout: 10_000 });
      await page.waitForFunction(() => (document.querySelectorAll('#instances tbody tr td').length ?? 0) > 3, null, { timeout: 10_000 });
      const energy0 = await page.textContent('#energy-now');
      const reqs0 = await page.textContent('#requests');
      // load: a handful of concurrent requests
      const c = client();
      const model = (await c.models.list()).data[0]!.id;
      await Promise.all(Array.from({ length: 6 }, (_, i) => c.completions.create({ model, prompt: `load ${i}`, max_tokens: 30 })));
      await page.waitForFunction((r0) => document.getElementById('requests')?.textContent !== r0, reqs0, { timeout: 10_000 });
      await page.waitForFunction((e0) => document.getElementById('energy-now')?.textContent !== e0, energy0, { timeout: 10_000 });
      expect(await page.textContent('#power-now')).toMatch(/W/);
      expect(await page.locator('#chart-power polyline').count()).toBeGreaterThan(0);
      mkdirSync('test/artifacts', { recursive: true });
      await page.screenshot({ path: 'test/artifacts/dashboard.png', fullPage: true });
      expect(existsSync('test/artifacts/dashboard.png')).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
