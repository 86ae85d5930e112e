/**
 * `dynamollm chaos` times a new leader by the lease records themselves (src/cli/chaos-leases.ts), read with the
 * observer's read-only credentials, on a real nats-server with the project's permissions (nats.conf, generated
 * from protocols/permissions.ts). The contenders here are LeaderLeases that publish no lease event at all, as a
 * leader's event is lost when its NATS server dies: the harness's reading of who led and when the next one took
 * over comes from the replicated records alone, also across a NATS server's death between the kill and the
 * election.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream as jsClient } from '@nats-io/jetstream';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { LeaseValue, jetstream, kvKeySubject, leaseKeys } from '../../protocols/index.ts';
import { LeaseWatch, ObserverLink } from '../../src/cli/chaos-leases.ts';
import { watchKill, type Kill, type Proc } from '../../src/cli/commands/chaos.ts';

let nats: TestNats;
const closers: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  await nats?.stop();
});

const TTL_MS = 1500;
const KEY = leaseKeys.clusterPlanner();

/** A cluster manager's lease on its own connection (its role's credentials), started; `kill` drops it unreleased. */
async function contender(id: string): Promise<{ lease: LeaderLease; bus: Bus; electedAt: number[]; kill(): Promise<void> }> {
  const bus = await Bus.connect({ servers: nats.url, name: id, ...nats.as('cluster', id), log: silentLogger(), reconnect: true });
  const lease = new LeaderLease({ bus, key: KEY, holder: id, ttlMs: TTL_MS, renewMs: 500, log: silentLogger() });
  const electedAt: number[] = [];
  lease.on('elected', () => electedAt.push(Date.now()));
  closers.push(() => lease.stop(), () => bus.close());
  await lease.start();
  // a SIGKILL: no release, no more renewals; the lease lapses after its TTL
  return { lease, bus, electedAt, kill: () => bus.close() };
}

/** The harness's lease reader on the observer's credentials. */
async function harness(): Promise<{ nc: NatsConnection; watch: LeaseWatch }> {
  const nc = await connect({ servers: nats.url, ...nats.as('observer', 'chaos-test'), reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  const watch = new LeaseWatch(nc, { keys: [KEY] });
  watch.start();
  closers.push(() => watch.stop(), () => nc.close());
  return { nc, watch };
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 50))) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

/** The victim's process is back at once (up restarts it): only the new leader is awaited. */
const restarted = (id: string): (() => Proc[]) => () => [{ pid: 2, ppid: 1, kind: 'cluster', id }];

describe('chaos: a new leader timed from the lease records (no lease event published)', () => {
  it("names the leader at the kill and times its successor's acquisition, reading with the observer's rights only", async () => {
    const a = await contender('cm-0');
    expect(a.lease.isLeader()).toBe(true);
    const b = await contender('cm-1');
    expect(b.lease.isLeader()).toBe(false);
    const { nc, watch } = await harness();
    await until('the watch to deliver the leader\'s renewals', () => watch.stats.watched >= 2);
    // the status names nobody (a planner whose NATS server died answers no status): the records alone decide
    const k: Kill = { kind: 'cluster', id: 'cm-0', pid: 1, atMs: Date.now() };
    await a.kill();
    await watchKill(k, restarted('cm-0'), () => undefined, () => 0, { log: watch.log, pools: [] });
    expect(b.electedAt.length).toBe(1);
    const elected = b.electedAt[0]! - k.atMs;
    expect(k.leaderBefore).toBe('cm-0');
    expect(k.newLeader).toBe('cm-1');
    // the successor's own acquisition time: at most when its write was answered, and after the lapse of a TTL's part
    expect(k.newLeaderMs).toBeLessThanOrEqual(elected);
    expect(k.newLeaderMs).toBeGreaterThan(elected - 500);
    expect(k.newLeaderMs).toBeGreaterThan(TTL_MS - 500 - 100);
    expect(watch.stats.watchFailures).toBe(0);
    expect(watch.stats.watched).toBeGreaterThan(2);
    expect(watch.stats.polled).toBeGreaterThan(0);

    // the observer reads the records and writes none
    const rec = LeaseValue.encode({ v: 1, holder: 'chaos', acquiredMs: Date.now(), expiresMs: Date.now() + 60_000, term: 999 });
    await expect(jsClient(nc, { timeout: 1000 }).publish(kvKeySubject(jetstream.leasesBucket, KEY), rec)).rejects.toThrow();
    await expect(jsClient(nc, { timeout: 1000 }).publish(kvKeySubject(jetstream.leasesBucket, leaseKeys.poolLeader('p1')), rec)).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 600));
    expect(b.lease.isLeader()).toBe(true);
    // released: the next test starts from a free lease
    await b.lease.stop();
  }, 60_000);

  it('the NATS server dies between the kill and the election: the successor is still timed by its acquisition', async () => {
    const a = await contender('cm-2');
    expect(a.lease.isLeader()).toBe(true);
    const b = await contender('cm-3');
    const { watch } = await harness();
    await until('the watch to deliver the leader\'s renewals', () => watch.log.records(KEY).filter((r) => r.holder === 'cm-2').length >= 2);
    const k: Kill = { kind: 'cluster', id: 'cm-2', pid: 1, atMs: Date.now() };
    // the leader dies, and its NATS server with it: every core-NATS publication of the moment is lost
    await a.kill();
    await nats.restart!(800);
    await watchKill(k, restarted('cm-2'), () => undefined, () => 0, { log: watch.log, pools: [] });
    expect(k.leaderBefore).toBe('cm-2');
    expect(k.newLeader).toBe('cm-3');
    expect(b.electedAt.length).toBe(1);
    const elected = b.electedAt[0]! - k.atMs;
    expect(k.newLeaderMs).toBeLessThanOrEqual(elected);
    expect(k.newLeaderMs).toBeGreaterThan(elected - 500);
  }, 60_000);

  it('an observer connection that nats.js closes is made again, its records read into the same log', async () => {
    const link = new ObserverLink(() => Bus.connect({ servers: nats.url, name: 'chaos-link', ...nats.as('observer', 'chaos-link'), log: silentLogger(), reconnect: true }), [KEY]);
    closers.push(() => link.stop());
    link.start();
    // the previous test's successor renews its lease
    await until('records on the first connection', () => link.stats().watched >= 2);
    const first = link.bus!;
    const before = link.log.records(KEY).length;
    await first.nc.close();
    await until('records on a new connection', () => link.reconnects === 1 && link.bus !== undefined && link.bus !== first && link.log.records(KEY).length >= before + 3);
    expect(link.stats().watchStarts).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
