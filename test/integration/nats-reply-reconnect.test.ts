/**
 * A request answered across the responder's reconnect (issue 13: its NATS server killed while it held the request).
 * Real 3-server cluster, role users of the committed nats.conf (protocols/permissions.ts). nats-server keeps the
 * right to answer a request (`allow_responses`) on the connection that received it; the responder's reply goes out
 * on its new connection, to another server. The reply must reach the caller, whether it was published while the
 * responder was disconnected (nats.js sends it at the reconnect) or after the reconnect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { Ack, PoolCommand, subjects } from '../../protocols/index.ts';

let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
const buses: Bus[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster(3);
}, 60_000);

afterAll(async () => {
  for (const b of buses) await b.close().catch(() => {});
  await cluster?.stop();
});

function statusOnce(bus: Bus, type: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (s: { type: string }) => {
      if (s.type !== type) return;
      bus.off('status', on);
      resolve();
    };
    bus.on('status', on);
  });
}

describe('a reply across the responder reconnecting to another NATS server', () => {
  it("the pool leader's answers to a cluster manager's commands it held while its server died reach the caller", async () => {
    const [s0, s1, s2] = cluster.urls as [string, string, string];
    const log = silentLogger();
    // the caller (a cluster manager) on s1, which stays up; the responder (a pool leader) on s0, which dies
    const caller = await Bus.connect({ servers: [s1], name: 'cm', ...as('cluster', 'cm-0'), log });
    buses.push(caller);
    const responder = await Bus.connect({ servers: [s0, s1, s2], noRandomize: true, name: 'pm', ...as('pool', 'pm-0'), log });
    buses.push(responder);
    expect(responder.nc.getServer()).toBe(new URL(s0).host);
    const violations: string[] = [];
    responder.on('permission_error', (e: { subject: string; operation: string }) => violations.push(`${e.operation} ${e.subject}`));

    const pool = 'p-reply';
    const held = new Map<string, (ok: boolean) => void>();
    let onArrival = () => {};
    responder.serve(subjects.poolControl(pool), PoolCommand, Ack, (cmd) => new Promise((resolve) => {
      if (cmd.reason.startsWith('warm')) return resolve({ v: 1, ok: true });
      held.set(cmd.reason, (ok) => resolve({ v: 1, ok }));
      onArrival();
    }));
    await responder.nc.flush();
    // the subscription's interest reaches s1 over the route: wait until a request finds it
    for (let i = 0, until = Date.now() + 10_000; ; i++) {
      try {
        await caller.request(subjects.poolControl(pool), PoolCommand, { v: 1, op: 'reshard_now', reason: `warm-${i}` }, Ack, { timeoutMs: 500 });
        break;
      } catch (err) {
        if (Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    const ask = (reason: string) => caller.request(subjects.poolControl(pool), PoolCommand, { v: 1, op: 'reshard_now', reason }, Ack, { timeoutMs: 8000 });
    const both = new Promise<void>((res) => {
      onArrival = () => {
        if (held.has('during') && held.has('after')) res();
      };
    });
    const during = ask('during');
    const after = ask('after');
    await both;

    const disconnected = statusOnce(responder, 'disconnect');
    const reconnected = statusOnce(responder, 'reconnect');
    process.kill(cluster.servers[0]!.pid, 'SIGKILL');
    await disconnected;
    // answered while disconnected: nats.js sends it on the next connection
    held.get('during')!(true);
    await reconnected;
    expect(responder.nc.getServer()).not.toBe(new URL(s0).host);
    // answered on the new connection
    held.get('after')!(true);

    const t0 = Date.now();
    const results = await Promise.allSettled([during, after]);
    expect(results.map((r) => (r.status === 'fulfilled' ? `ok ${r.value.ok}` : `failed ${(r.reason as Error).message}`))).toEqual(['ok true', 'ok true']);
    // the requests' deadline is 8 s: replies held to it, or sent again after it, come later than half of it
    console.log(`replies across the responder's reconnect: both settled ${Date.now() - t0} ms after it`);
    expect(Date.now() - t0, 'replies arrive at once, not at a deadline').toBeLessThan(4000);
    expect(violations).toEqual([]);
    // the first answer was settled while the responder was disconnected: held and sent at the reconnect
    expect(responder.counters.repliesHeld).toBe(1);
  }, 60_000);
});
