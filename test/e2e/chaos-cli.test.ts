/**
 * `dynamollm chaos` as a user runs it (issue 13 items 5 and 6, the CI-sized run): a local cluster (deploy/chaos.yaml,
 * two instances, NATS as 3 clustered servers, 2 gateway replicas) under load while engines, instance managers, node
 * agents (the instance managers serve on, adopted by the agent's successor), pool and cluster managers, gateway
 * replicas and NATS servers are SIGKILLed every 2.5 s. Every request must complete:
 * none failed, none hung, no stream with a token lost or repeated (the harness checks each stream's words against
 * its max_tokens and its event ids); every killed process must come back, and the report must say what happened.
 * With --mix (OpenAI SDK clients beside the resumable streams: streamed and not, completions and chat, retried only
 * before a response began) under engine and instance manager kills, the report counts each kind and gives each failure
 * its cause; none hangs or loses a token.
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

  it('--mix: what OpenAI SDKs send beside resumable streams, under engine and instance manager kills: the report per kind, each failure with its cause, none hung, no token lost or repeated', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dyn-chaos-mix-test-')), 'report.json');
    const args = [...cliArgs(), 'chaos', '--config', 'deploy/chaos.yaml', '--duration', '40', '--rps', '2', '--kill-every', '2.5', '--kinds', 'engine,instance',
      '--gateway-replicas', '2', '--mix', 'resumable=0.4,stream=0.2,chat=0.2,nonstream=0.1,chat-nonstream=0.1', '--seed', '3', '--settle', '45', '--out', out];
    await new Promise<void>((resolve) => execFile(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' }, maxBuffer: 1 << 24 }, () => resolve()));
    const r = JSON.parse(readFileSync(out, 'utf8')) as {
      sent: number; ok: number; failed: number; hung: number; lostOrDuplicated: number; kills: { total: number }; failedUnavoidable: number; failedBySystem: number;
      requestKinds: Record<string, { sent: number; ok: number; failed: number; hung: number; unavoidable: number }>;
      failures: { kind: string; cause: string; unavoidable: boolean }[];
    };
    console.log(`chaos --mix: ${JSON.stringify({ sent: r.sent, ok: r.ok, requestKinds: r.requestKinds, failedUnavoidable: r.failedUnavoidable, failedBySystem: r.failedBySystem, kills: r.kills })}`);
    expect(r.kills.total).toBeGreaterThanOrEqual(10);
    // every kind was sent (seed 3), and the kinds add up to the whole
    expect(Object.keys(r.requestKinds).sort()).toEqual(['chat', 'chat-nonstream', 'nonstream', 'resumable', 'stream']);
    expect(Object.values(r.requestKinds).reduce((n, k) => n + k.sent, 0)).toBe(r.sent);
    expect(Object.values(r.requestKinds).reduce((n, k) => n + k.ok, 0)).toBe(r.ok);
    expect(r.sent).toBeGreaterThan(50);
    // none hung, no token lost or repeated; every failure has its cause, and with no gateway killed none is one no
    // server can avoid (a failure here is the system's: the 0-failure target is the first test's, on resumable streams)
    expect(r.hung).toBe(0);
    expect(r.lostOrDuplicated).toBe(0);
    expect(r.failedUnavoidable).toBe(0);
    expect(r.failedBySystem).toBe(r.failed);
    expect(r.failures.length).toBe(r.failed);
    expect(r.failures.every((f) => !f.unavoidable && f.cause.length > 0 && Object.keys(r.requestKinds).includes(f.kind))).toBe(true);
  }, 300_000);
});
