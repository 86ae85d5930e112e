/**
 * A pool hold that outlasts the gateway's intake budget (issue 13, "retries, not timeouts"), on a real
 * nats-server with the project's permissions and real actor processes (a cluster manager, two pool managers,
 * a node agent, its instance manager and emulated engine). The gateway is the real NatsBackend on a
 * gateway-role connection, with an intake budget (admitTimeoutMs) of 2 s: shorter than the engine's start
 * (startupDelayMs 6 s), so every request below is held by the pool for longer than that budget.
 *
 * - The engine is still loading: the pool holds the request (capacity is coming) and says so on the request's
 *   stream subject (TokenChunk.hold); the gateway keeps waiting past its 2 s and the request completes, every
 *   token once, admitted once the engine is ready.
 * - The instance manager is SIGKILLed (the node agent starts it again, its engine loads for 6 s), and the pool
 *   leader holding the request is SIGKILLed too: the standby pool manager takes the lead, holds the request
 *   again when the cluster's dispatch is retried, and the request completes.
 *
 * Without the hold notice each request fails after 2 s with the intake's timeout.
 *
 * The pool managers serve their /metrics on their health address: the leader counts each hold and how it
 * ended (dispatched), shows the request held while it waits, and the standby that took over counts its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { PoolStatus, controlSubjects } from '../../protocols/index.ts';
import { expectCompleted, submitTimed } from '../helpers/gateway-cluster.ts';
import { waitFor as until } from '../helpers/wait.ts';
import { freePort } from '../helpers/net.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { promtoolProblems } from '../helpers/promtool.ts';

const POOL = 'pool-all';
const STARTUP_MS = 6000;
const ADMIT_MS = 2000;
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
const leaders: string[] = [];
/** each pool manager's health address, where it serves its /metrics. */
const metricsPort = new Map<string, number>();

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: POOL, types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, startupDelayMs: STARTUP_MS, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  });
  h.bus.subscribe(controlSubjects.poolStatus(POOL), PoolStatus, (s) => {
    if (leaders.at(-1) !== s.leader) leaders.push(s.leader);
  }, { capacity: 256 });
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-hold'), name: 'gw-hold', log: silentLogger() });
  backend = new NatsBackend(gw, { admitTimeoutMs: ADMIT_MS, admitAttemptMs: 1000, chunkTimeoutMs: 30_000 });
  h.startActor('cluster', 'cm-0');
  for (const id of ['pm-0', 'pm-1']) {
    metricsPort.set(id, await freePort());
    h.startActor('pool', id, ['--health', `127.0.0.1:${metricsPort.get(id)}`]);
  }
  h.startActor('node', 'n0');
}, 60_000);

afterAll(async () => {
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

/** A pool manager's /metrics: its text and one sample's value (labels matched as given; absent: undefined). */
async function poolMetrics(id: string): Promise<{ text: string; value(name: string, labels?: Record<string, string>): number | undefined }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort.get(id)}/metrics`)).text();
  const fams = parsePrometheusText(text);
  return { text, value: (name, labels = {}) => fams.get(name)?.samples.find((x) => Object.entries({ pool: POOL, ...labels }).every(([k, v]) => x.labels[k] === v))?.value };
}

describe('a pool hold longer than the gateway intake budget', () => {
  it('the engine still loading: the request is held past admitTimeoutMs and completes', async () => {
    // the pool leads, its instance is starting (its engine loads for STARTUP_MS): send now
    await until(async () => (await h.status())?.pools.find((p) => p.id === POOL)?.instances.some((i) => i.state === 'starting') || undefined, 30_000, 'a starting instance');
    const r = await submitTimed(backend, 'load');
    expectCompleted(r);
    expect(r.admitMs).toBeGreaterThan(ADMIT_MS);
    expect(backend.counters.poolHolds).toBeGreaterThanOrEqual(1);
    // the leader counted the hold and its outcome; it holds nothing now; the standby counted nothing
    const leader = leaders.at(-1)!;
    const m = await poolMetrics(leader);
    expect(promtoolProblems(m.text)).toEqual([]);
    expect(m.value('dynamollm_pool_leader', { manager_id: leader })).toBe(1);
    expect(m.value('dynamollm_pool_held_requests_total')).toBeGreaterThanOrEqual(1);
    expect(m.value('dynamollm_pool_hold_outcomes_total', { outcome: 'dispatched' })).toBeGreaterThanOrEqual(1);
    expect(m.value('dynamollm_pool_hold_outcomes_total', { outcome: 'timed_out' })).toBe(0);
    expect(m.value('dynamollm_pool_held_requests')).toBe(0);
    const standby = await poolMetrics(leader === 'pm-0' ? 'pm-1' : 'pm-0');
    expect(standby.value('dynamollm_pool_leader')).toBe(0);
    expect(standby.value('dynamollm_pool_held_requests_total')).toBe(0);
  }, 60_000);

  it('the instance manager and then the pool leader holding the request SIGKILLed: the standby holds it again and it completes', async () => {
    await h.waitReady(1);
    const leader = await until(() => leaders.at(-1), 10_000, 'a pool leader');
    const pid = (await until(() => h.pidsOf('actor instance')[0], 5000, 'the instance manager'));
    process.kill(pid, 'SIGKILL');
    // the node agent starts it again under the same id: its engine loads for STARTUP_MS
    await until(async () => (await h.status())?.pools.find((p) => p.id === POOL)?.instances.some((i) => i.state !== 'ready') || undefined, 10_000, 'the instance not ready');
    const holds = backend.counters.poolHolds;
    const successor = leader === 'pm-0' ? 'pm-1' : 'pm-0';
    const before = (await poolMetrics(successor)).value('dynamollm_pool_hold_outcomes_total', { outcome: 'dispatched' }) ?? 0;
    const pending = submitTimed(backend, 'lead');
    await until(() => (backend.counters.poolHolds > holds ? true : undefined), 5000, 'the hold notice');
    // held now, as the leader's metrics show while the request waits
    expect((await poolMetrics(leader)).value('dynamollm_pool_held_requests')).toBeGreaterThanOrEqual(1);
    h.procs.get(leader)!.kill('SIGKILL');
    const r = await pending;
    expectCompleted(r);
    expect(r.admitMs).toBeGreaterThan(ADMIT_MS);
    // the request was held by the standby after the leader's death, and dispatched by it
    expect(leaders.at(-1)).toBe(successor);
    const m = await poolMetrics(successor);
    expect(m.value('dynamollm_pool_leader')).toBe(1);
    expect(m.value('dynamollm_pool_hold_outcomes_total', { outcome: 'dispatched' })).toBeGreaterThan(before);
  }, 90_000);
});
