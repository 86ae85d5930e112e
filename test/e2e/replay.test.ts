/**
 * End to end: `dynamollm up --config deploy/replay-ci.yaml` (real nats-server, managers, 2 emulated H100s
 * with token coalescing), then `dynamollm replay` of the first 60 s of the shipped conversation trace at
 * --speed 10 (the CLI, as a user runs it). Asserts every request is accounted for (the gateway answered as
 * many as the client sent), no request hung (no client timeout, no cut stream), and that Ctrl-C leaves no process behind. The per-type
 * SLO result is NOT asserted: on 2 shared cores it depends on the other load (docs/REPLAY.md).
 */
import { startUpCluster, type UpCluster } from '../helpers/cluster.ts';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplaySummary } from '../../src/telemetry/replay.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';

let cluster: UpCluster;
let base: string;


beforeAll(async () => {
  cluster = await startUpCluster({ config: 'deploy/replay-ci.yaml', readyTimeoutS: 60, runDirPrefix: 'dyn-replay-e2e-' });
  base = cluster.base;
}, 70_000);

afterAll(async () => {
  await cluster?.stop();
  expect(cluster.output()).toContain('dynamollm: stopped');
  // nothing of this cluster is left: no engine, actor or nats-server naming its gateway port / run dir
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid,args']);
  const port = new URL(base).port;
  expect(stdout.split('\n').filter((l) => l.includes('dyn-replay-e2e-') || l.includes(`port=${port}`))).toEqual([]);
}, 40_000);

/** The gateway's own count of answered /v1/completions requests, by HTTP status (its /metrics). */
async function completionsAnswered(base: string): Promise<Map<string, number>> {
  const fams = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
  const byCode = new Map<string, number>();
  for (const s of fams.get('dynamollm_gateway_http_requests_total')?.samples ?? []) {
    if (s.labels.route === '/v1/completions') byCode.set(s.labels.code!, (byCode.get(s.labels.code!) ?? 0) + s.value);
  }
  return byCode;
}
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('dynamollm replay at --speed 10 (CI-sized)', () => {
  it('accounts for every request and none hung', async () => {
    const json = join(mkdtempSync(join(tmpdir(), 'dyn-replay-out-')), 'replay.json');
    const before = await completionsAnswered(base);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['bin/dynamollm.js', 'replay', '--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--url', base, '--speed', '10', '--duration', '60', '--out', json],
      { timeout: 80_000, maxBuffer: 1 << 22 },
    );
    const s = JSON.parse(readFileSync(json, 'utf8')) as ReplaySummary;
    console.log(stdout);
    expect(s.sent).toBeGreaterThan(100);
    // accounted for on both sides: the gateway answered every request the client sent (none was dropped on the
    // client's in-flight bound, which would be an error below), and with 200 at least those the client counts
    // ok (the client's own ok + rejected + failed = sent holds by construction)
    const after = await completionsAnswered(base);
    expect(total(after) - total(before)).toBe(s.sent);
    expect((after.get('200') ?? 0) - (before.get('200') ?? 0)).toBeGreaterThanOrEqual(s.ok);
    expect(s.errors.client_timeout ?? 0).toBe(0);
    expect(s.errors.stream_incomplete ?? 0).toBe(0);
    expect(s.ok).toBeGreaterThan(0);
    expect(stdout).toMatch(/requests: sent \d+ = ok \d+ \+ rejected \d+ \+ failed \d+/);
    expect(s.clusterEnergySources).toContain('modelled');
  }, 85_000);
});
