/**
 * The Grafana dashboard is correct with several gateway replicas: a real Prometheus (Debian `prometheus`)
 * scrapes two gateway actors on a real nats-server, fed by one scripted cluster (intake, tokenizer and
 * telemetry on NATS, its instances' request counts in it). Every panel query of deploy/grafana/dynamollm.json is rendered; cluster-wide series read
 * the same through both replicas as through one (no double counting), per-replica series add up over the
 * replicas; the naive sums the dashboard avoids would double count (so the check can fail).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, DecisionEvent, InferenceRequest, InstanceTelemetry, RequestRecord, TokenChunk, TokenizeReply, TokenizeRequest, type Admission as AdmissionT, type RequestRecord as RequestRecordT } from '../../protocols/messages.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';
import { GatewayActor } from '../../actors/gateway/main.ts';
import { splitConfig } from '../../actors/gateway/config.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';

const PROMETHEUS = process.env.PROMETHEUS ?? 'prometheus';
const MODEL = 'llama2-70b';
const TOKENS = 4;
/** the scripted cluster: two instances, one GPU each, at these powers (W) */
const POWER = { 'i-a': 300, 'i-b': 500 };

let nats: TestNats;
let cluster: Bus;
const gws: GatewayActor[] = [];
let prom: ChildProcess;
let promUrl: string;
let targets: string[];
let telemetry: NodeJS.Timeout;
let energyJ = 0;

async function query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await r.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`${q}: ${body.error}`);
  return body.data.result;
}
const scalar = async (q: string) => (await query(q)).reduce((a, s) => a + Number(s.value[1]), 0);
/** the query over one replica's series only: every dynamollm_* selector gets a matcher on the scrape target */
const onlyTarget = (q: string, target: string) =>
  q.replace(/(dynamollm_[a-z_]+)(\{([^}]*)\})?/g, (_m, name: string, _b, inner: string | undefined) => `${name}{${inner ? `${inner},` : ''}instance="${target}"}`);

beforeAll(async () => {
  nats = await startNatsServer();
  const log = silentLogger();
  cluster = await Bus.connect({ servers: nats.url, name: 'fake-cluster', ...nats.creds('admin'), log });
  const tokenize = localTokenizer(4096);
  cluster.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => tokenize(req), { queue: TOKENIZER_QUEUE });
  let n = 0;
  const tallies = new Map(Object.keys(POWER).map((id) => [id, new RequestTally()]));
  const started = Date.now();
  cluster.serve(subjects.clusterIntake(), InferenceRequest, Admission, async (req): Promise<AdmissionT> => {
    const inst = n++ % 2 === 0 ? 'i-a' : 'i-b';
    setTimeout(() => {
      for (let i = 0; i < TOKENS; i++) cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: i, text: ` t${i}`, tokens: 1, pool: 'pool-SS', type: 'SS' });
      cluster.publish(req.streamSubject, TokenChunk, {
        v: 1, id: req.id, seq: TOKENS, text: '', tokens: 0, done: true, finishReason: 'length', pool: 'pool-SS', type: 'SS',
        usage: { promptTokens: req.inputTokens, completionTokens: TOKENS, energyJ: 2, energySource: 'modelled' },
      });
      // the record goes out as an instance's does (for the records' consumers), and into the instance's request counts,
      // which its telemetry carries: what the gateways read
      const rec: RequestRecordT = {
        v: 1, id: req.id, type: 'SS', pool: 'pool-SS', instance: inst, model: req.model, outcome: 'ok', promptTokens: req.inputTokens,
        completionTokens: TOKENS, ttftMs: 50, energyJ: 2, energySource: 'modelled', sloMet: true, finishedMs: Date.now(),
      };
      cluster.publish(subjects.telRequest('pool-SS'), RequestRecord, rec);
      tallies.get(inst)!.add(rec);
    }, 5);
    return { v: 1, id: req.id, ok: true, type: 'SS', pool: 'pool-SS', instance: inst };
  }, { queue: CLUSTER_INTAKE_QUEUE });
  const publishTelemetry = () => {
    energyJ += 100;
    for (const [id, powerW] of Object.entries(POWER)) {
      cluster.publish(subjects.telInstance(id), InstanceTelemetry, {
        v: 1, id, pool: 'pool-SS', tp: 1, gpus: [id === 'i-a' ? 0 : 1], clockMhz: 1980, maxClockMhz: 1980, powerW, energyJ,
        energySource: 'modelled', queued: 1, running: 2, loadByType: { SS: 1 }, state: 'running', sentMs: Date.now(), requests: tallies.get(id)!.counts(started),
      });
    }
  };
  telemetry = setInterval(publishTelemetry, 250);
  for (const id of ['gw-a', 'gw-b']) {
    const { cluster: cc, gateway } = splitConfig({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0, host: '127.0.0.1' } });
    const gw = new GatewayActor({ id, cluster: cc, settings: gateway, servers: nats.url, ...nats.creds('gateway'), log });
    await gw.start();
    gws.push(gw);
  }
  targets = gws.map((g) => `127.0.0.1:${g.port}`);
  const dir = mkdtempSync(join(tmpdir(), 'dyn-prom-'));
  writeFileSync(join(dir, 'prometheus.yml'), `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: gw\n    static_configs: [{ targets: [${targets.map((t) => `"${t}"`).join(', ')}] }]\n`);
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
  prom.on('error', (e) => console.error(`prometheus could not start (apt-get install prometheus): ${e.message}`));
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${promUrl}/-/ready`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}, 60_000);

afterAll(async () => {
  clearInterval(telemetry);
  prom?.kill('SIGTERM');
  for (const g of gws) await g.stop();
  await cluster?.close();
  await nats?.stop();
});

describe('Grafana dashboard over two gateway replicas', () => {
  it('renders every panel, without double counting cluster-wide series, and adds up per-replica ones', async () => {
    // 3 requests through replica A, 5 through B
    const sent = [3, 5];
    for (const [i, k] of sent.entries()) {
      const c = new OpenAI({ apiKey: 'none', baseURL: `http://${targets[i]}/v1`, maxRetries: 0 });
      for (let j = 0; j < k; j++) await c.completions.create({ model: MODEL, prompt: `hello ${j}`, max_tokens: TOKENS });
    }
    const total = sent[0]! + sent[1]!;
    cluster.publish(subjects.event('clock', 'pool-SS'), DecisionEvent, { v: 1, kind: 'clock', actor: 'pool-SS', atMs: Date.now(), summary: 'i-a: 1980 -> 1600 MHz', decision: {}, inputs: {} });

    // until Prometheus holds a few scrapes of both replicas after the load
    let seen = 0;
    for (let i = 0; i < 100 && seen < total; i++) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await scalar('sum(dynamollm_gateway_http_requests_total{route="/v1/completions"})');
    }
    expect(seen).toBe(total);
    await new Promise((r) => setTimeout(r, 3000));

    const dash = JSON.parse(readFileSync('deploy/grafana/dynamollm.json', 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr.replaceAll('$__range', '1m') })));
    expect(exprs.length).toBeGreaterThan(10);
    const perReplica = (e: string) => e.includes('dynamollm_gateway_');
    for (const { title, expr } of exprs) {
      const all = await query(expr);
      expect(all.length, `${title}: ${expr}`).toBeGreaterThan(0);
      if (perReplica(expr)) continue;
      // a cluster-wide series reads through both replicas as through one: the same series, and a value between
      // what each replica alone gives (rates over these young series differ by the replicas' scrape times; a
      // double count would read their sum, about twice as much)
      const sum = (r: typeof all) => r.reduce((a, s) => a + Number(s.value[1]), 0);
      const ones = await Promise.all(targets.map((t) => query(onlyTarget(expr, t))));
      for (const one of ones) expect(all.length, `${title}: series`).toBe(one.length);
      const [a, b] = ones.map(sum) as [number, number];
      const msg = `${title}: ${expr} = ${sum(all)}; through one replica ${a}, ${b}`;
      expect(sum(all), msg).toBeLessThanOrEqual(1.25 * Math.max(a, b) + 1e-9);
      expect(sum(all), msg).toBeGreaterThanOrEqual(0.8 * Math.min(a, b) - 1e-9);
    }

    // cluster-wide truth: 2 GPUs at 300 W and 500 W, `total` finished requests
    const gpuPower = exprs.find((e) => e.title === 'GPU power per GPU')!.expr;
    expect(await scalar(`sum(${gpuPower})`)).toBe(800);
    expect(await scalar('sum(dynamollm_gpu_power_watts)')).toBe(1600); // what a plain sum over replicas would show
    expect(await scalar('sum(max by (model_name, type, pool, outcome) (dynamollm_requests_total))')).toBe(total);
    expect(await scalar('sum(dynamollm_requests_total)')).toBe(2 * total);
    // per replica, adding up: each request once, TTFT once per request, TBT once per token gap
    expect(await scalar('sum(dynamollm_gateway_ttft_seconds_count)')).toBe(total);
    expect(await scalar('sum(dynamollm_gateway_tbt_seconds_count)')).toBe(total * (TOKENS - 1));
    const perTarget = await query('sum by (instance) (dynamollm_gateway_http_requests_total{route="/v1/completions"})');
    expect(Object.fromEntries(perTarget.map((s) => [s.metric.instance, Number(s.value[1])]))).toEqual({ [targets[0]!]: 3, [targets[1]!]: 5 });
  }, 60_000);
});
