/**
 * `dynamollm chaos` as a user runs it (issue 13 items 5 and 6, the CI-sized run): a local cluster (deploy/chaos.yaml,
 * two instances, NATS as 3 clustered servers, 2 gateway replicas) under load while engines, instance managers, node
 * agents (the instance managers serve on, adopted by the agent's successor), pool and cluster managers, gateway
 * replicas and NATS servers are SIGKILLed every 2.5 s. Every request must complete:
 * none failed, none hung, no stream with a token lost or repeated (the harness checks each stream's words against
 * its max_tokens and its event ids); every killed process must come back, and the report must say what happened.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliArgs, REPO_ROOT } from '../../src/runtime/code-path.ts';

const KINDS = ['engine', 'instance', 'node', 'pool', 'cluster', 'gateway', 'nats'];

describe('dynamollm chaos', () => {
  it('kills every kind of process under load; every request completes, its stream whole, every process comes back', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dyn-chaos-test-')), 'report.json');
    const args = [...cliArgs(), 'chaos', '--config', 'deploy/chaos.yaml', '--duration', '40', '--rps', '2', '--kill-every', '2.5', '--kinds', KINDS.join(','),
      '--nats-nodes', '3', '--gateway-replicas', '2', '--seed', '3', '--settle', '45', '--out', out];
    const t0 = Date.now();
    await new Promise<void>((resolve) => execFile(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' }, maxBuffer: 1 << 24 }, () => resolve()));
    const r = JSON.parse(readFileSync(out, 'utf8')) as {
      sent: number; ok: number; failed: number; hung: number; lostOrDuplicated: number; errorCodes: Record<string, number>; failures: unknown[]; loadAverage: unknown;
      kills: { total: number; byKind: Record<string, number> }; timeToRestartMs: { n: number }; timeToLeaveGatewayMs: { n: number; maxMs: number | null };
      timeToLeavePoolMs: { n: number; maxMs: number | null }; viewReads: { answers: number } | null; migrated: number; resumed: { resumes: number };
      retried: number | null; counterScrapes: { scrapes: number; missed: number; restarts: number };
    };
    console.log(`chaos (${Date.now() - t0} ms): ${JSON.stringify({ sent: r.sent, ok: r.ok, failed: r.failed, hung: r.hung, lostOrDuplicated: r.lostOrDuplicated, errorCodes: r.errorCodes, kills: r.kills, migrated: r.migrated, retried: r.retried, counterScrapes: r.counterScrapes, resumed: r.resumed, load: r.loadAverage, gateway: r.timeToLeaveGatewayMs, pool: r.timeToLeavePoolMs })}`);
    expect(r.kills.total).toBeGreaterThanOrEqual(10);
    // the schedule reached most kinds (seed 3)
    expect(Object.keys(r.kills.byKind).filter((k) => KINDS.includes(k)).length, JSON.stringify(r.kills.byKind)).toBeGreaterThanOrEqual(4);
    expect(r.timeToRestartMs.n).toBe(r.kills.total);
    // the gateway's and the pool leader's own dispatch views, read as the observer (subjects.dispatchView), timed the leaves
    expect(r.viewReads?.answers ?? 0).toBeGreaterThan(0);
    // the gateways' counters were read through the run (every replica about every second), not only at its end
    expect(r.counterScrapes.scrapes, JSON.stringify(r.counterScrapes)).toBeGreaterThanOrEqual(40);
    expect(r.retried).not.toBeNull();
    expect(r.sent).toBeGreaterThan(50);
    // every request completed, each stream whole
    expect(r.hung).toBe(0);
    expect(r.lostOrDuplicated).toBe(0);
    expect(r.failures, JSON.stringify(r.failures.slice(0, 10))).toEqual([]);
    expect(r.ok).toBe(r.sent);
  }, 300_000);
});
