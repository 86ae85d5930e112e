/**
 * A RequestRecord whose outcome is newer than its readers' (docs/PROTOCOL.md "Evolution within v1": an open enum) on a
 * real nats-server with the DYN_V1_REQUESTS stream: the project's readers keep it, with its energy, and read its
 * outcome as 'failed': a manager's record intake (actors/common/record-intake.ts), the SDK's live `requests()` (what
 * `dynamollm telemetry --requests` prints) and a durable `requestRecords()` consumer (billing), which acknowledges it
 * instead of terminating it as invalid.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { waitFor } from '../helpers/wait.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ensureRequestsStream } from '../../actors/common/events.ts';
import { RecordIntake } from '../../actors/common/record-intake.ts';
import { DynamoClient } from '../../src/client/index.ts';
import { packRaw, subjects, type RequestRecord } from '../../protocols/index.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';

let nats: TestNats;
let bus: Bus;
let client: DynamoClient;

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, ...as('admin'), name: 'open-outcome', log: silentLogger() });
  await ensureRequestsStream(bus);
  client = await DynamoClient.connect({ servers: nats.url, ...nats.creds('observer') });
}, 30_000);

afterAll(async () => {
  await client?.close();
  await bus?.close();
  await nats?.stop();
});

describe("a record with an outcome newer than its readers'", () => {
  it("is kept by the record intake and the SDK (live and durable), as 'failed', with its energy", async () => {
    const base = { ...(SAMPLES.RequestRecord as RequestRecord), pool: 'p1' };
    const intake: RequestRecord[] = [];
    const rec = new RecordIntake(bus, { subject: subjects.telRequest('p1'), wanted: () => true, onRecord: (r) => void intake.push(r) });
    rec.sync(false);
    const live = client.requests({ pool: 'p1' });
    const liveGot: RequestRecord[] = [];
    const reading = (async () => {
      for await (const m of live) liveGot.push(m.value);
    })();
    await bus.nc.flush();
    await new Promise((r) => setTimeout(r, 100));

    // a newer writer's record, then a known one
    bus.nc.publish(subjects.telRequest('p1'), packRaw({ ...base, id: 'newer', outcome: 'preempted', energyJ: 42 }));
    bus.nc.publish(subjects.telRequest('p1'), packRaw({ ...base, id: 'known', outcome: 'timed_out' }));
    await waitFor(() => (intake.length >= 2 && liveGot.length >= 2 ? true : undefined), 5000, 'both records at the intake and the live reader');
    live.stop();
    await reading;
    for (const got of [intake, liveGot]) {
      expect(got.map((r) => [r.id, r.outcome, r.energyJ])).toEqual([['newer', 'failed', 42], ['known', 'timed_out', base.energyJ]]);
    }
    expect(live.invalid).toBe(0);

    const durable = await client.requestRecords({ durable: 'billing-open-outcome', ackWaitMs: 1000 });
    const stored: RequestRecord[] = [];
    for await (const m of durable) {
      stored.push(m.value);
      m.ack();
      if (stored.length === 2) break;
    }
    expect(durable.invalid).toBe(0);
    expect(await durable.caughtUp()).toBe(true);
    await durable.stop();
    expect(stored.map((r) => [r.id, r.outcome, r.energyJ])).toEqual([['newer', 'failed', 42], ['known', 'timed_out', base.energyJ]]);
    rec.stop();
  }, 30_000);

  it('a consumer that acked everything it was given is caught up at once, its acks still on their way to the server', async () => {
    const n = 3000;
    const base = { ...(SAMPLES.RequestRecord as RequestRecord), pool: 'p2' };
    for (let i = 0; i < n; i++) bus.nc.publish(subjects.telRequest('p2'), packRaw({ ...base, id: `r${i}` }));
    await bus.nc.flush();
    const consumer = await client.requestRecords({ pool: 'p2', durable: 'billing-acks-in-flight', maxAckPending: n });
    let got = 0;
    for await (const m of consumer) {
      m.ack();
      if (++got === n) break;
    }
    // asked right after the last ack: the server may not have applied the acks yet
    expect(await consumer.caughtUp()).toBe(true);
    await consumer.stop();
  }, 30_000);
});
