/**
 * A request whose pool has no leader to answer its dispatch, sent through a gateway that has not seen that
 * election (issue 13, "retries, not timeouts"), on a real nats-server with the project's permissions and real
 * actor processes (a cluster manager, a pool manager, a node agent, its instance manager and emulated engine).
 * The gateway is the real NatsBackend on a gateway-role connection with an intake budget (admitTimeoutMs) of
 * 2 s and its own election watch, started after the pool's only manager was SIGKILLed: as a gateway replica
 * restarted during the election sees it (no heartbeat ever named that pool's leader to it), and as every
 * gateway sees a leader whose heartbeat still says it leads while its dispatch is out of reach.
 *
 * A second pool manager starts 4 s after the request was sent, past the gateway's budget. Meanwhile the
 * cluster's dispatch finds no responders and keeps retrying, and tells the gateway the request is held for
 * the pool's election (TokenChunk.hold on its stream subject, policy leaderlessHoldMs): the gateway keeps
 * retrying the intake and the request completes once the new manager leads, every token once. Without the
 * notice it fails after 2 s with the intake's timeout (or the cluster's no responders).
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
import { sleep, waitFor as until } from '../helpers/wait.ts';

const POOL = 'pool-all';
const ADMIT_MS = 2000;
const DEAD_AFTER_MS = 1500;
let h: Harness;
let gw: Bus;
const leaders: { leader: string; atMs: number }[] = [];

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: POOL, types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  });
  h.bus.subscribe(controlSubjects.poolStatus(POOL), PoolStatus, (s) => {
    if (leaders.at(-1)?.leader !== s.leader) leaders.push({ leader: s.leader, atMs: Date.now() });
  }, { capacity: 256 });
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-leaderless'), name: 'gw-leaderless', log: silentLogger() });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await h?.stop();
}, 30_000);

describe('a request whose pool has no leader, through a gateway that has not seen the election', () => {
  it('is held by the intake past the gateway budget and completes once a new pool manager leads', async () => {
    await h.waitReady(1);
    await until(() => (leaders.at(-1)?.leader === 'pm-0' ? true : undefined), 15_000, 'pm-0 leading');
    const pm0 = h.procs.get('pm-0')!;
    const gone = new Promise((r) => pm0.once('exit', r));
    pm0.kill('SIGKILL');
    await gone;
    // the pool's only manager is gone: a gateway that starts now has never seen its leader
    const watch = new ElectionWatch(gw, DEAD_AFTER_MS, 60_000);
    watch.start();
    const backend = new NatsBackend(gw, { admitTimeoutMs: ADMIT_MS, admitAttemptMs: 1000, chunkTimeoutMs: 30_000, elections: watch });
    try {
      const sentAt = Date.now();
      const pending = submitTimed(backend, "leaderless");
      await sleep(2 * ADMIT_MS);
      h.startActor('pool', 'pm-1');
      const r = await pending;
      expectCompleted(r);
      // admitted by the new pool leader, past the gateway's budget: the intake's hold notices kept it waiting
      const successor = await until(() => leaders.find((l) => l.atMs > sentAt), 10_000, "pm-1's pool status");
      expect(successor.leader).toBe('pm-1');
      expect(r.admitMs).toBeGreaterThan(2 * ADMIT_MS);
      expect(backend.counters.poolHolds).toBe(1);
      // the gateway's own watch never saw an election of this pool: the intake told it
      expect(backend.counters.electionHolds).toBe(0);
    } finally {
      watch.stop();
      backend.close();
    }
  }, 90_000);
});
