/**
 * A cluster planner whose lease is lost while its lead is still setting up (the liveness window before its status
 * service, the inventory reads before its leader timers): that lead arms nothing. Lost for good (another holder took
 * the lease), no leader timer of it runs and no status service of it answers; lost and won again meanwhile (a second
 * lead runs beside the first one's setup), exactly one status service answers and one set of leader timers runs.
 *
 * Real nats-server with the project's permissions; the ClusterManager runs in the test process, connected through a
 * TCP proxy that holds back what the server sends (test/helpers/stall-proxy.ts): for longer than the lease's TTL, so
 * the planner's renewals go unanswered and its lease lapses on its own clock, as after a stall or a congested link.
 * The leader timers are observed by their ClusterTelemetry (one every TELEMETRY_MS = 1 s per set of timers), the
 * status services by the answers to one StatusRequest and by the planner's NATS Service API endpoints that took it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createInbox } from '@nats-io/nats-core';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { startStallProxy, type StallProxy } from '../helpers/stall-proxy.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { ClusterTelemetry, DecisionEvent, StatusRequest, jetstream, leaseKeys, serviceName, serviceSubjects, subjects } from '../../protocols/index.ts';

const TTL_MS = 1000;
/** the proxy holds the server's answers this long: the planner's lease lapses on its clock (TTL 1 s) and on the server's record. */
const STALL_MS = 3500;
/** the direct get of the stored energy ledger: the last inventory read of a lead (#continueLedger) with ownStore (no fresh-start read of it). */
const LEDGER_READ = `DIRECT.GET.KV_${jetstream.inventoryBucket}.$KV.${jetstream.inventoryBucket}.energy.cluster`;

let nats: TestNats;
let admin: Bus;
let proxy: StallProxy | undefined;
let cm: ClusterManager | undefined;
let rival: LeaderLease | undefined;
const buses: Bus[] = [];
const tel: { leader: string; at: number }[] = [];
const leases: { actor: string; leader: unknown; at: number }[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'lead-race-admin', ...nats.as('admin'), log: silentLogger() });
  admin.subscribe(subjects.telCluster(), ClusterTelemetry, (t) => void tel.push({ leader: t.leader ?? '', at: Date.now() }), { capacity: 4096 });
  admin.subscribe(subjects.eventsOfKind('lease'), DecisionEvent, (e) => void leases.push({ actor: e.actor, leader: e.decision.leader, at: Date.now() }), { capacity: 4096 });
  await admin.nc.flush();
}, 30_000);

afterEach(async () => {
  await cm?.stop().catch(() => {});
  await rival?.stop().catch(() => {});
  await proxy?.close();
  cm = rival = proxy = undefined;
}, 30_000);

afterAll(async () => {
  for (const b of buses) await b.close().catch(() => {});
  await admin?.close();
  await nats?.stop();
}, 30_000);

/** A planner (one pool, one server with no node agent, its own store: no fresh-start read of the ledger) connected through a new stall proxy. */
async function planner(id: string, deadAfterMs: number): Promise<ClusterManager> {
  proxy = await startStallProxy(nats.url);
  const config = parseConfig({
    model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    liveness: { statusIntervalMs: 250, deadAfterMs, leaseTtlMs: TTL_MS },
    // the reads retried past the stall: a lead's setup ends after the stall, not at its deadline
    timeouts: { takeoverReadMs: 20_000 },
    engine: { kind: 'emulator', timeScale: 1, initialTp: 2 },
    nats: { url: proxy.url, ownStore: true },
  });
  cm = new ClusterManager({ kind: 'cluster', id, servers: proxy.url, ...nats.creds('cluster'), log: silentLogger(), heartbeatMs: 1000 }, config, undefined);
  await cm.start();
  return cm;
}

/** How many answers one StatusRequest gets within `ms` (every status service subscribed answers it; the server's no-responders status, empty, is none). */
async function statusAnswers(ms = 1000): Promise<number> {
  const inbox = createInbox();
  let n = 0;
  const sub = admin.nc.subscribe(inbox, { callback: (_err, m) => { if (m.data.length) n++; } });
  admin.nc.publish(subjects.clusterStatus(), StatusRequest.encode({ v: 1 }), { reply: inbox });
  await sleep(ms);
  sub.unsubscribe();
  return n;
}

/**
 * The status services of planner `id` that took a StatusRequest sent just before (its NATS Service API STATS: one
 * endpoint per subscription). The server passes one reply per request on (the roles' allow_responses), so a second
 * service subscribed is seen here, not in the answers.
 */
async function statusServices(id: string): Promise<number> {
  await statusAnswers(500);
  const r = await admin.nc.request(serviceSubjects.control('STATS', serviceName('cluster'), id), '', { timeout: 2000 });
  const stats = JSON.parse(new TextDecoder().decode(r.data)) as { endpoints: { subject: string; num_requests: number }[] };
  return stats.endpoints.filter((e) => e.subject === subjects.clusterStatus() && e.num_requests > 0).length;
}

/** The ClusterTelemetry `id` publishes within the next `ms`. */
async function telemetryOf(id: string, ms: number): Promise<number> {
  const from = Date.now();
  await sleep(ms);
  return tel.filter((t) => t.leader === id && t.at >= from).length;
}

const elections = (id: string) => leases.filter((e) => e.actor === id && e.leader === id).length;
const losses = (id: string) => leases.filter((e) => e.actor === id && e.leader === null).length;

describe('a cluster planner that loses its lease while its lead sets up', () => {
  it('lost during its inventory reads, to another holder: no leader timer runs and no status service answers', async () => {
    const id = 'cm-race-lost';
    await planner(id, 1500);
    const ledgerRead = proxy!.stallAfter(LEDGER_READ, STALL_MS);
    await waitUntil(() => elections(id) === 1, 15_000, 'the planner elected');
    // a contender on its own connection takes the lease once the planner's record lapses, and keeps it
    const b = await Bus.connect({ servers: nats.url, name: 'lead-race-rival', ...nats.as('cluster', 'rival'), log: silentLogger() });
    buses.push(b);
    rival = new LeaderLease({ bus: b, key: leaseKeys.clusterPlanner(), holder: 'rival', ttlMs: TTL_MS, renewMs: 200, log: silentLogger() });
    await rival.start();
    await ledgerRead;
    await waitUntil(() => losses(id) === 1, 10_000, 'the planner lost its lease');
    await waitUntil(() => rival!.isLeader(), 10_000, 'the rival leads');
    // the stall over, the lead's last read answered: what it would have armed would run by now
    await sleep(STALL_MS + 1500);
    expect(rival.isLeader(), 'the rival still leads').toBe(true);
    expect(elections(id), 'the planner not elected again').toBe(1);
    expect(await telemetryOf(id, 3000), 'ClusterTelemetry of the planner that lost its lease').toBe(0);
    expect(await statusAnswers(), 'status answers').toBe(0);
    expect(await statusServices(id), 'status services answering').toBe(0);
  }, 90_000);

  it('lost and elected again during its inventory reads: one set of leader timers runs', async () => {
    const id = 'cm-race-again';
    await planner(id, 1500);
    const ledgerRead = proxy!.stallAfter(LEDGER_READ, STALL_MS);
    await waitUntil(() => elections(id) === 1, 15_000, 'the planner elected');
    await ledgerRead;
    await waitUntil(() => losses(id) === 1, 10_000, 'the planner lost its lease');
    await waitUntil(() => elections(id) === 2, 20_000, 'the planner elected again');
    // both leads past their reads (the second one's take the liveness window at most: it has long passed)
    await waitUntil(() => tel.some((t) => t.leader === id && t.at > Date.now() - 1500), 20_000, 'the planner publishing its telemetry');
    await sleep(1500);
    expect(losses(id), 'lost once').toBe(1);
    // one set: one ClusterTelemetry a second (two sets: two)
    const n = await telemetryOf(id, 5000);
    expect(n, 'ClusterTelemetry of the planner in 5 s').toBeGreaterThanOrEqual(3);
    expect(n, 'ClusterTelemetry of the planner in 5 s').toBeLessThanOrEqual(6);
    expect(await statusServices(id), 'status services answering').toBe(1);
  }, 90_000);

  it('lost and elected again during its liveness window: one status service answers, one set of leader timers runs', async () => {
    const id = 'cm-race-window';
    // a long liveness window: the lead waits it out before its status service and its reads
    const startedAt = Date.now();
    await planner(id, 10_000);
    await waitUntil(() => elections(id) === 1, 15_000, 'the planner elected');
    proxy!.stall(STALL_MS);
    await waitUntil(() => losses(id) === 1, 10_000, 'the planner lost its lease');
    await waitUntil(() => elections(id) === 2, 20_000, 'the planner elected again');
    // both elections inside the window: the first lead is still waiting when the second one starts
    expect(leases.filter((e) => e.actor === id && e.leader === id)[1]!.at - startedAt, 'elected again within the liveness window').toBeLessThan(9000);
    await waitUntil(() => tel.some((t) => t.leader === id && t.at > Date.now() - 1500), 30_000, 'the planner publishing its telemetry');
    await sleep(1500);
    expect(losses(id), 'lost once').toBe(1);
    expect(await statusServices(id), 'status services answering').toBe(1);
    const n = await telemetryOf(id, 5000);
    expect(n, 'ClusterTelemetry of the planner in 5 s').toBeGreaterThanOrEqual(3);
    expect(n, 'ClusterTelemetry of the planner in 5 s').toBeLessThanOrEqual(6);
  }, 90_000);
});
