/**
 * A request sent while a pool's leader election is under way (issue 13, "retries, not timeouts"), on a real
 * nats-server with the project's permissions and real actor processes (a cluster manager, two pool managers, a
 * node agent, its instance manager and emulated engine). The gateway is the real NatsBackend on a gateway-role
 * connection, sending through the cluster intake, with an intake budget (admitTimeoutMs) of 2 s and the
 * gateway's election watch (actors/gateway/elections.ts) on the managers' heartbeats.
 *
 * The lease TTL is 6 s: after the pool leader is SIGKILLed the standby leads only once the dead leader's lease
 * has lapsed, 4-8 s later. A request sent right after the kill waits on that election: the cluster's dispatch
 * finds no pool leader (no responders) and keeps retrying, and no pool can announce a hold. The gateway sees
 * the pool without a live leader and waits for the intake's answer past its 2-s budget: the request completes
 * once the standby leads, every token once. The cluster's intake also tells the gateway it holds the request
 * for that election (a hold notice on its stream subject); without either it fails after 2 s with the intake's
 * timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { ElectionWatch } from '../../actors/gateway/elections.ts';
import { PoolStatus, controlSubjects } from '../../protocols/index.ts';
import { expectCompleted, submitTimed } from '../helpers/gateway-cluster.ts';
import { waitFor as until } from '../helpers/wait.ts';

const POOL = 'pool-all';
const ADMIT_MS = 2000;
const DEAD_AFTER_MS = 1500;
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
let watch: ElectionWatch;
const leaders: { leader: string; atMs: number }[] = [];

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: POOL, types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 6000 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  });
  h.bus.subscribe(controlSubjects.poolStatus(POOL), PoolStatus, (s) => {
    if (leaders.at(-1)?.leader !== s.leader) leaders.push({ leader: s.leader, atMs: Date.now() });
  }, { capacity: 256 });
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-elect'), name: 'gw-elect', log: silentLogger() });
  watch = new ElectionWatch(gw, DEAD_AFTER_MS, 60_000);
  watch.start();
  backend = new NatsBackend(gw, { admitTimeoutMs: ADMIT_MS, admitAttemptMs: 1000, chunkTimeoutMs: 30_000, elections: watch });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('pool', 'pm-1');
  h.startActor('node', 'n0');
}, 60_000);

afterAll(async () => {
  watch?.stop();
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

describe('a request sent during a pool leader election', () => {
  it('is waited for past the intake budget and completes once the standby leads', async () => {
    await h.waitReady(1);
    const first = await until(() => leaders.at(-1)?.leader, 10_000, 'a pool leader');
    // a request with a leader in place completes (the election counters are read from here on)
    const calm = await submitTimed(backend, 'calm');
    expect(calm.error).toBeUndefined();
    const heldBefore = backend.counters.electionHolds;

    const killedAt = Date.now();
    h.procs.get(first)!.kill('SIGKILL');
    const r = await submitTimed(backend, 'elect');
    expectCompleted(r);
    // it waited on the election: past the budget, admitted once the standby led
    const successor = await until(() => leaders.find((l) => l.atMs > killedAt), 10_000, "the successor's pool status");
    expect(successor.leader).toBe(first === 'pm-0' ? 'pm-1' : 'pm-0');
    expect(r.admitMs).toBeGreaterThan(ADMIT_MS);
    // held for the election: the gateway's watch saw it, and the cluster's intake announced it (a hold notice
    // while its dispatch finds no pool leader; test/integration/intake-leaderless-hold.test.ts has the notice alone)
    expect(backend.counters.electionHolds - heldBefore + backend.counters.poolHolds).toBeGreaterThanOrEqual(1);
    // the election is over: it ended before now, after the kill
    const ended = watch.lastMs(Date.now())!;
    expect(ended).toBeGreaterThan(killedAt);
    expect(ended).toBeLessThan(Date.now());
  }, 90_000);
});
