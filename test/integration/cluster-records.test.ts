/**
 * A cluster manager receives request records only while its predictor awaits one (actors/common/record-intake.ts,
 * policy AwaitedRecords): the record of a request its intake classified. Two cluster managers (the planner and its
 * standby) in the test process on a real nats-server with the project's permissions; the test plays the pool's one
 * instance (its statuses), the pool leader (a dispatch that admits the request and publishes its record before it
 * answers) and the gateway (intake requests, and the records of the requests it routed itself). With nothing
 * classified, a burst of records reaches neither manager's connection; the records of requests the cluster dispatched
 * reach the manager that classified each, and its predictor learns from them; once none is awaited, the next burst
 * reaches neither again.
 */
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import { okRecord, publishReadyStatus, shortRequest } from '../helpers/record-fixtures.ts';
import { clusterTestConfig, managerSuite, recordsDelivered, startClusterManager } from '../helpers/manager-suite.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { Admission, ClusterStatus, InferenceRequest, RequestRecord, StatusRequest, subjects } from '../../protocols/index.ts';

const POOL = 'pool-all';
const INST = `${POOL}-n0-g0x1`;
const BURST = 200;
/** requests through the cluster intake (the queue group spreads them over both managers). */
const VIA_INTAKE = 6;
const suite = managerSuite();
const managers: Probe[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const config = clusterTestConfig(POOL, 1, { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 1500 });

/** A cluster manager whose connection and predictor's observations the test reads. */
class Probe extends ClusterManager {
  nc(): Bus['nc'] {
    return this.bus.nc;
  }
  learned(): number {
    return this.heartbeatMeta().predictorObservations;
  }
}

const publishStatus = (seq: number, startedMs: number) => publishReadyStatus(suite.admin, POOL, INST, seq, startedMs);
const record = (id: string) => okRecord(id, POOL, INST, { prompt: 10, completion: 17 });
const request = (id: string) => shortRequest(id, 'llama3.1-8b');

async function manager(id: string): Promise<Probe> {
  const m = await startClusterManager(suite, id, config, Probe);
  managers.push(m);
  return m;
}

/** Messages each manager's connection received while `BURST` records of requests no manager classified were published. */
const delivered = (prefix: string): Promise<number[]> =>
  recordsDelivered(suite, POOL, Array.from({ length: BURST }, (_, i) => record(`${prefix}-${i}`)), managers.map((m) => m.nc()));

describe('cluster managers and the request records', () => {
  it('receive none while no record is awaited, and the record of a request they dispatched, which the predictor learns', async () => {
    const startedMs = Date.now();
    let seq = 0;
    suite.every(250, () => publishStatus(++seq, startedMs));
    // the pool leader: admits each request, and its instance's record goes out before the admission is answered
    const dispatched: string[] = [];
    const admin = suite.admin;
    admin.serve(subjects.poolDispatch(POOL), InferenceRequest, Admission, async (r) => {
      dispatched.push(r.id);
      admin.publish(subjects.telRequest(POOL), RequestRecord, record(r.id));
      return { v: 1 as const, id: r.id, ok: true, instance: INST, pool: POOL };
    }, { capacity: 256, concurrency: 16 });
    await admin.nc.flush();
    const status = () => admin.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 }).catch(() => undefined);
    await manager('cm-0');
    await waitFor(async () => ((await status())?.leader === 'cm-0' ? true : undefined), 30_000, 'cm-0 leads');
    await manager('cm-1');
    await sleep(1000);

    // the gateway routed every request itself: their records reach neither manager (their own periodic traffic only)
    const idle = await delivered('routed');
    console.log(`${BURST} records of requests the gateway routed: messages received by the planner ${idle[0]}, the standby ${idle[1]}`);
    expect(idle[0]).toBeLessThan(BURST / 4);
    expect(idle[1]).toBeLessThan(BURST / 4);

    // requests through the intake: each one's record, published while its dispatch is under way, is learned
    for (let i = 0; i < VIA_INTAKE; i++) {
      const a = await admin.request(subjects.clusterIntake(), InferenceRequest, request(`via-intake-${i}`), Admission, { timeoutMs: 10_000 });
      expect(a.ok, JSON.stringify(a.error)).toBe(true);
    }
    expect(dispatched).toHaveLength(VIA_INTAKE);
    await waitFor(() => (managers.reduce((n, m) => n + m.learned(), 0) === VIA_INTAKE ? true : undefined), 10_000, 'each dispatched request learned from its record');
    console.log(`${VIA_INTAKE} requests through the intake: learned by the planner ${managers[0]!.learned()}, the standby ${managers[1]!.learned()}`);

    // none awaited any more: from the next sweep (1 s) on, the records reach neither manager
    await sleep(2200);
    const after = await delivered('routed-again');
    console.log(`${BURST} records once none is awaited: the planner ${after[0]}, the standby ${after[1]}`);
    expect(after[0]).toBeLessThan(BURST / 4);
    expect(after[1]).toBeLessThan(BURST / 4);
    expect(managers.reduce((n, m) => n + m.learned(), 0)).toBe(VIA_INTAKE);
  }, 120_000);
});
