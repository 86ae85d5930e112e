/**
 * A leader keeps its lease through a short NATS restart (the server SIGKILLed and back on the same port with its
 * JetStream store in well under the TTL), as `up` restarts its private server: a lease operation caught by the
 * restart is given up after its own deadline and tried again on the reconnected connection, before the TTL runs
 * out. Real nats-server, real JetStream KV.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { leaseKeys } from '../../protocols/index.ts';

let nats: TestNats;
const buses: Bus[] = [];
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

/** the lease's TTL and renewal: a restart that ends by TTL_MS - RENEW_MS after the last renewal leaves room to renew. */
const TTL_MS = 4000;
const RENEW_MS = 1000;

describe('a lease across a NATS restart', () => {
  it('the leader does not lose its lease when the server is back within the TTL', async () => {
    const b = await Bus.connect({ servers: nats.url, name: 'lease-restart', ...nats.as('cluster', 'cm-0'), log: silentLogger(), reconnect: true });
    buses.push(b);
    const lease = new LeaderLease({ bus: b, key: leaseKeys.clusterPlanner(), holder: 'cm-0', ttlMs: TTL_MS, renewMs: RENEW_MS, log: silentLogger() });
    const lost: string[] = [];
    lease.on('lost', (e: { reason: string }) => lost.push(e.reason));
    await lease.start();
    expect(lease.isLeader()).toBe(true);
    try {
      for (let round = 0; round < 3; round++) {
        // the restart lands at a different point of the renew period each round
        await new Promise((r) => setTimeout(r, 1300 + round * 300));
        const t0 = Date.now();
        await nats.restart!(200);
        const backMs = Date.now() - t0;
        // lease time left when the server was back: the restart itself must leave the renewals room (500 ms at least)
        expect(backMs, `round ${round}: the restart took too long for this test to say anything`).toBeLessThan(TTL_MS - RENEW_MS - 500);
        await new Promise((r) => setTimeout(r, TTL_MS + 500)); // more than a TTL after the restart
        expect(lost, `round ${round}: lease lost across a ${backMs} ms restart`).toEqual([]);
        expect(lease.isLeader(), `round ${round}`).toBe(true);
      }
    } finally {
      await lease.stop();
    }
  });
});
