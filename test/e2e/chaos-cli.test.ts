/**
 * `dynamollm chaos` as a user runs it (issue 13 item 5, the CI-sized run): a local cluster (deploy/chaos.yaml,
 * two instances) under load while engines and instance managers are SIGKILLed every 2.5 s. No request may
 * hang, every failure must be an explicit HTTP refusal (429/503 with Retry-After), every killed process must
 * come back, and the report must say what happened. (With both instances killed this often, the cluster has
 * no ready instance for stretches: requests are refused then, so completion of all is not asserted here.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliArgs, REPO_ROOT } from '../../src/runtime/code-path.ts';

describe('dynamollm chaos', () => {
  it('kills engines and instance managers under load; no request hangs, every failure is explicit, every process comes back', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dyn-chaos-test-')), 'report.json');
    const args = [...cliArgs(), 'chaos', '--config', 'deploy/chaos.yaml', '--duration', '40', '--rps', '2', '--kill-every', '2.5', '--kinds', 'engine,instance', '--seed', '3', '--settle', '45', '--out', out];
    await new Promise<void>((resolve) => execFile(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' }, maxBuffer: 1 << 24 }, () => resolve()));
    const r = JSON.parse(readFileSync(out, 'utf8')) as { sent: number; ok: number; failed: number; hung: number; errors: Record<string, number>; errorCodes: Record<string, number>; kills: { total: number; byKind: Record<string, number> }; timeToRestartMs: { n: number }; timeToLeaveGatewayMs: { n: number; maxMs: number | null }; timeToLeavePoolMs: { n: number; maxMs: number | null }; viewReads: { answers: number } | null };
    console.log(`chaos: ${JSON.stringify({ sent: r.sent, ok: r.ok, failed: r.failed, hung: r.hung, errorCodes: r.errorCodes, kills: r.kills, gateway: r.timeToLeaveGatewayMs, pool: r.timeToLeavePoolMs })}`);
    expect(r.kills.total).toBeGreaterThanOrEqual(10);
    expect(r.timeToRestartMs.n).toBe(r.kills.total);
    // the gateway's and the pool leader's own dispatch views, read as the observer (subjects.dispatchView), timed the leaves
    expect(r.viewReads?.answers ?? 0).toBeGreaterThan(0);
    expect(r.timeToLeaveGatewayMs.n).toBeGreaterThan(0);
    expect(r.timeToLeavePoolMs.n).toBeGreaterThan(0);
    expect(r.sent).toBeGreaterThan(50);
    expect(r.hung).toBe(0);
    expect(Object.keys(r.errors).filter((e) => e !== 'http 429' && e !== 'http 503')).toEqual([]);
    expect(r.ok + r.failed).toBe(r.sent);
    expect(r.ok).toBeGreaterThan(0);
  }, 240_000);
});
