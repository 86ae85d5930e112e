/**
 * A pool leader whose own link stalls (issue 13: a leader cut off from NATS), on a real nats-server: a TCP proxy
 * in front of the server holds back everything the server sends to the leader for 2.5 s, longer than deadAfterMs
 * (1.5 s) and shorter than the client's stale-connection detection (3 unanswered pings a second apart), so no
 * disconnect is seen and the lease (TTL 6 s) is still held. The instances report to the server all along. The
 * silence the leader hears is its own: it declares no instance dead (no failure event, no stream ended), and both
 * instances are alive in its view once the stall is over. Its lease's round trips, unanswered during the stall, are
 * what tells it so (src/policy/machines/pool-instances.ts linkProven).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { startStallProxy, type StallProxy } from '../helpers/stall-proxy.ts';
import { instanceStatusMaker } from '../helpers/instance-status.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { DecisionEvent, InstanceStatus, controlSubjects, subjects, type DecisionEvent as Ev } from '../../protocols/index.ts';

const POOL = 'pool-stall';
const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
const IDS = [`${POOL}-node-0-g0x4`, `${POOL}-node-0-g4x4`];
let nats: TestNats;
let proxy: StallProxy;
let admin: Bus;
let bus: Bus;
let leader: PoolLeader;
let beat: ReturnType<typeof setInterval> | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  nats = await startNatsServer();
  proxy = await startStallProxy(nats.url);
  admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
  // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
  await setUpBuckets(admin);
  bus = await Bus.connect({ servers: proxy.url, name: 'pm-stall', ...as('pool', 'pm-stall'), log: silentLogger() });
}, 30_000);

afterAll(async () => {
  if (beat) clearInterval(beat);
  await leader?.stop().catch(() => {});
  await bus?.close().catch(() => {});
  await admin?.close().catch(() => {});
  await proxy?.close().catch(() => {});
  await nats?.stop();
}, 30_000);

describe('a pool leader whose own link stalls', () => {
  it('declares no instance dead for the silence of its own stalled link', async () => {
    const config = parseConfig({
      pools: [{ id: POOL, types: [...TYPES] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 6000 },
    });
    const failures: Ev[] = [];
    admin.subscribe(subjects.eventsOfKind('failure'), DecisionEvent, (e) => void failures.push(e), { capacity: 256 });
    // the instances report every 100 ms to the server itself (not through the proxy)
    const status = instanceStatusMaker(POOL, Date.now());
    beat = setInterval(() => {
      for (const id of IDS) admin.publish(controlSubjects.instanceStatus(POOL, id), InstanceStatus, { ...status(id), sentMs: Date.now() });
    }, 100);
    leader = new PoolLeader({ pool: POOL, types: [...TYPES], holder: 'pm-stall', bus, config, log: silentLogger() });
    await leader.start();
    for (let t = 0; t < 100 && !(leader.isLeader() && leader.aliveInstances().length === 2); t++) await sleep(100);
    expect(leader.isLeader()).toBe(true);
    expect(leader.aliveInstances().map((s) => s.id).sort()).toEqual([...IDS].sort());
    // let its link be proven a few times, then stall what the server sends it
    await sleep(1500);
    proxy.stall(2500);
    await sleep(4000);
    expect(bus.connected).toBe(true); // no disconnect was seen: a cut not noticed
    expect(leader.isLeader()).toBe(true);
    expect(failures.map((e) => e.summary)).toEqual([]);
    expect(leader.aliveInstances().map((s) => s.id).sort()).toEqual([...IDS].sort());
  }, 30_000);
});
