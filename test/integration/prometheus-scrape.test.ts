/**
 * The shipped Prometheus job of the Kubernetes gateways (deploy/prometheus/k8s-gateways-scrape.yaml) scrapes /metrics with
 * the read-only metrics token the gateways read from the Secret dynamollm-secrets: promtool accepts it, and a real
 * Prometheus running the job (its pod discovery swapped for the gateway's address) scrapes a gateway with API keys
 * (up 1) where the same job without the token gets 401 (up 0). The gateway pods carry no scrape annotation (an
 * annotation-driven job sends no token) and get the token from the Secret.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { freePort } from '../helpers/net.ts';

type Obj = Record<string, any>;
const PROMETHEUS = process.env.PROMETHEUS ?? 'prometheus';
const TOKEN = 'metrics-token-0123456789abcdef';
const job = (parse(readFileSync('deploy/prometheus/k8s-gateways-scrape.yaml', 'utf8')) as { scrape_configs: Obj[] }).scrape_configs[0]!;
const dir = mkdtempSync(join(tmpdir(), 'prom-scrape-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, TOKEN);

let gw: GatewayServer;
let target: string;
let prom: ChildProcess | undefined;
let promUrl: string;

const noBackend: GatewayBackend = { submit: () => Promise.reject(new Error('no cluster in this test')) };

beforeAll(async () => {
  gw = new GatewayServer({
    backend: noBackend, port: 0, apiKeys: ['sk-0123456789abcdef'], metricsToken: TOKEN, models: ['m1'],
    metrics: new TelemetryMetrics({ processMetrics: false }), live: new LiveState(),
  });
  target = `127.0.0.1:${await gw.listen()}`;
  // the shipped job with its pod discovery (and the relabelling of its pod labels) swapped for the gateway's address
  const { kubernetes_sd_configs: _sd, relabel_configs: _rl, ...rest } = job;
  const withToken = { ...rest, authorization: { ...job.authorization, credentials_file: tokenFile }, static_configs: [{ targets: [target] }] };
  const withoutToken = { ...rest, job_name: 'no-token', authorization: undefined, static_configs: [{ targets: [target] }] };
  delete withoutToken.authorization;
  writeFileSync(join(dir, 'prometheus.yml'), stringify({ global: { scrape_interval: '1s', scrape_timeout: '1s' }, scrape_configs: [withToken, withoutToken] }));
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
}, 30_000);

afterAll(async () => {
  prom?.kill('SIGTERM');
  await gw?.close(100);
});

/** `up` of each job once both have scraped (within 20 s). */
async function ups(): Promise<Record<string, string>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await fetch(`${promUrl}/api/v1/query?query=up`).then((x) => x.json() as Promise<Obj>, () => undefined);
    const res = (r?.data?.result ?? []) as { metric: { job: string }; value: [number, string] }[];
    if (res.length === 2 || Date.now() > deadline) return Object.fromEntries(res.map((x) => [x.metric.job, x.value[1]]));
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

describe('deploy/prometheus/k8s-gateways-scrape.yaml', () => {
  it('promtool accepts the job (its token file present)', () => {
    const check = (j: Obj) => {
      const cfg = join(dir, 'check.yml');
      writeFileSync(cfg, stringify({ scrape_configs: [{ ...j, authorization: { ...j.authorization, credentials_file: tokenFile } }] }));
      return spawnSync('promtool', ['check', 'config', cfg], { encoding: 'utf8' });
    };
    let r = check(job);
    // Debian's Prometheus is built without the Kubernetes service discovery: there the rest of the job is checked
    if (/field kubernetes_sd_configs not found/.test(r.stdout + r.stderr)) {
      const { kubernetes_sd_configs: _sd, ...rest } = job;
      r = check({ ...rest, static_configs: [{ targets: ['gateway-0:8000'] }] });
    }
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(job.authorization).toEqual({ type: 'Bearer', credentials_file: '/etc/prometheus/secrets/dynamollm-metrics-token/token' });
  });

  it('a real Prometheus scrapes a gateway with API keys through the job (up 1); without the token it gets 401 (up 0)', async () => {
    expect(await ups()).toEqual({ 'dynamollm-gateway': '1', 'no-token': '0' });
  }, 30_000);

  it('the gateway pods get the token from the Secret and carry no tokenless scrape annotation', () => {
    const rendered = execFileSync('kubectl', ['kustomize', 'deploy/k8s'], { encoding: 'utf8' });
    const objs = parseAllDocuments(rendered).map((d) => d.toJSON() as Obj).filter(Boolean);
    const sts = objs.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'gateway')!;
    const env = sts.spec.template.spec.containers[0].env as Obj[];
    expect(env.find((e) => e.name === 'DYNAMOLLM_METRICS_TOKEN')?.valueFrom).toEqual({ secretKeyRef: { name: 'dynamollm-secrets', key: 'DYNAMOLLM_METRICS_TOKEN' } });
    const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === 'gateway')!;
    for (const o of [sts.spec.template, svc]) expect(o.metadata.annotations?.['prometheus.io/scrape']).toBeUndefined();
  });
});
