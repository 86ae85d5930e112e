/**
 * A pool manager receives its pool's request records only while one can change its machine (actors/common/
 * record-intake.ts, policy poolRecordsWanted): a request the pool dispatched and has not seen the record of. Two pool
 * managers (a leader and its standby) in the test process on a real nats-server with the project's permissions; the
 * test plays the pool's one instance (statuses, an admission that says yes) and publishes the records. With nothing
 * dispatched through the pool (the gateway routed every request itself), a burst of records reaches neither manager's
 * connection; a request the leader dispatched has its record, published at once after its admission, reach the
 * leader (its dispatched entry forgotten); once no dispatch is outstanding, the next burst reaches neither again.
 */
import { describe, expect, it } from 'vitest';
import type { KV } from '@nats-io/kv';
import { waitFor } from '../helpers/wait.ts';
import { okRecord, publishReadyStatus, shortRequest } from '../helpers/record-fixtures.ts';
import { managerSuite, recordsDelivered, startPoolLeader } from '../helpers/manager-suite.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import type { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { Admission, InferenceRequest, RequestRecord, dispatchedKeys, jetstream, subjects } from '../../protocols/index.ts';

const POOL = 'pool-rec';
const INST = `${POOL}-n0-g0x1`;
const BURST = 200;
const suite = managerSuite();
const buses = new Map<string, Bus>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const publishStatus = (seq: number, startedMs: number) => publishReadyStatus(suite.admin, POOL, INST, seq, startedMs);
const record = (id: string) => okRecord(id, POOL, INST, { prompt: 2000, completion: 200 });
const request = (id: string) => shortRequest(id, 'llama2-70b', 'SS');

async function manager(holder: string): Promise<PoolLeader> {
  const { leader, bus } = await startPoolLeader(suite, POOL, holder, { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 });
  buses.set(holder, bus);
  return leader;
}

/** Messages each manager's connection received while `burst` records of requests no pool dispatched were published. */
async function delivered(prefix: string): Promise<Record<string, number>> {
  const got = await recordsDelivered(suite, POOL, Array.from({ length: BURST }, (_, i) => record(`${prefix}-${i}`)), [...buses.values()].map((b) => b.nc));
  return Object.fromEntries([...buses.keys()].map((k, i) => [k, got[i]!]));
}

describe("a pool manager and its pool's request records", () => {
  it('receives none while it has nothing dispatched, and the record of a request it dispatched', async () => {
    const startedMs = Date.now();
    let seq = 0;
    suite.every(250, () => publishStatus(++seq, startedMs));
    const admin = suite.admin;
    admin.serve(subjects.instanceAdmit(INST), InferenceRequest, Admission, async (r) => ({ v: 1 as const, id: r.id, ok: true, instance: INST }), { capacity: 256, concurrency: 16 });
    await admin.nc.flush();
    const leader = await manager('pm-a');
    await waitFor(() => (leader.isLeader() && leader.view().ready.length === 1 ? true : undefined), 30_000, 'pm-a leads with the instance');
    await manager('pm-b');
    await sleep(1000);

    // the gateway routed every request itself: their records reach neither manager (each status period's own messages only)
    const idle = await delivered('routed');
    console.log(`${BURST} records of requests the pool did not dispatch: messages received by the leader ${idle['pm-a']}, the standby ${idle['pm-b']}`);
    expect(idle['pm-a']).toBeLessThan(BURST / 4);
    expect(idle['pm-b']).toBeLessThan(BURST / 4);

    // a request the leader dispatches: its record, published as soon as its admission is answered, reaches the leader
    const kv: KV = await admin.kv(jetstream.dispatchedBucket, { ttl: 3_600_000 });
    const id = 'via-pool-1';
    const a = await admin.request(subjects.poolDispatch(POOL), InferenceRequest, request(id), Admission, { timeoutMs: 5000 });
    expect(a.ok).toBe(true);
    admin.publish(subjects.telRequest(POOL), RequestRecord, record(id));
    await waitFor(async () => (!(await kv.get(dispatchedKeys.entry(POOL, id)))?.value.length ? true : undefined), 10_000, 'the dispatched entry forgotten at its record');

    // nothing outstanding again: from the next sweep (deadAfterMs / 4) on, the records reach neither manager
    await sleep(800);
    const after = await delivered('routed-again');
    console.log(`${BURST} records after the pool's dispatch ended: the leader ${after['pm-a']}, the standby ${after['pm-b']}`);
    expect(after['pm-a']).toBeLessThan(BURST / 4);
    expect(after['pm-b']).toBeLessThan(BURST / 4);
  }, 120_000);
});
