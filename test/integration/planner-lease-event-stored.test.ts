/**
 * The first cluster planner of a fresh NATS server: its lease event is stored in the events stream (the replica makes
 * the stream before it contends for the lease: actors/common/jetstream-setup.ts eventsStreamBeforeLead), so a reader
 * of the stream finds who planned from the first term on. Real nats-server with the project's permissions; the
 * ClusterManager in the test process with the cluster role's credentials.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream as js, jetstreamManager } from '@nats-io/jetstream';
import { waitUntil } from '../helpers/wait.ts';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { DecisionEvent, jetstream, subjects } from '../../protocols/index.ts';

let nats: TestNats;
let admin: Bus;
let cm: ClusterManager | undefined;
const live: DecisionEvent[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'lease-event-admin', ...nats.as('admin'), log: silentLogger() });
  admin.subscribe(subjects.eventsOfKind('lease'), DecisionEvent, (e) => void live.push(e), { capacity: 256 });
  await admin.nc.flush();
}, 30_000);

afterAll(async () => {
  await cm?.stop().catch(() => {});
  await admin?.close();
  await nats?.stop();
}, 30_000);

describe('the first cluster planner on a fresh server', () => {
  it('its lease event is in the events stream, as live subscribers got it', async () => {
    const config = parseConfig({
      model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus: 2 }],
      pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1000 },
      engine: { kind: 'emulator', timeScale: 1, initialTp: 2 },
      nats: { url: nats.url, ownStore: true },
    });
    cm = new ClusterManager({ kind: 'cluster', id: 'cm-first', servers: nats.url, ...nats.creds('cluster'), log: silentLogger(), heartbeatMs: 1000 }, config, undefined);
    await cm.start();
    await waitUntil(() => live.some((e) => e.actor === 'cm-first' && e.decision.leader === 'cm-first'), 15_000, 'the planner elected');
    const jsm = await jetstreamManager(admin.nc);
    const last = (await jsm.streams.info(jetstream.eventsStream)).state.last_seq;
    const stored: DecisionEvent[] = [];
    const c = await js(admin.nc).consumers.get(jetstream.eventsStream);
    for (let seq = 0; seq < last;) {
      let n = 0;
      for await (const m of await c.fetch({ max_messages: 1000, expires: 1000 })) {
        n++;
        seq = m.seq;
        stored.push(DecisionEvent.decode(m.data));
      }
      if (n === 0) throw new Error(`the events stream gave nothing past ${seq} of ${last}`);
    }
    const lease = stored.filter((e) => e.kind === 'lease' && e.actor === 'cm-first');
    expect(lease.map((e) => e.decision)).toEqual([{ leader: 'cm-first', term: expect.any(Number) }]);
  }, 30_000);
});
