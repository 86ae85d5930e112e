/**
 * The cluster managers keep each instance's statuses undecoded until they read them (Bus.subscribeLatest,
 * actors/cluster-manager/observation.ts HeardInstances): a status comes 4 a second per instance to every replica, and
 * the leader reads them for its status each second, a standby only for an intake or once it leads. Two in-process
 * cluster managers on a real nats-server: a burst of statuses of two instances costs far fewer decodes than statuses
 * sent (each replica would decode every one), and the standby that takes over answers the cluster status with each
 * instance's latest status, each heard as of its arrival: an instance silent since before the takeover leaves its view
 * deadAfterMs after its last status, not after the standby decoded it.
 */
import { describe, expect, it, vi } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import { clusterTestConfig, managerSuite, startClusterManager } from '../helpers/manager-suite.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { ClusterStatus, InstanceStatus, StatusRequest, controlSubjects, subjects, type InstanceStatus as Status } from '../../protocols/index.ts';

const POOL = 'pool-all';
const DEAD_AFTER_MS = 4000;
const A = `${POOL}-n0-g0x1`, B = `${POOL}-n0-g1x1`;
const suite = managerSuite();

const config = clusterTestConfig(POOL, 2, { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 });

const startedMs = Date.now();
const seqs = new Map<string, number>();
function publish(id: string, gpu: number, queued: number): void {
  const seq = (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const st: Status = {
    v: 1, id, pool: POOL, node: 'n0', tp: 1, gpuIds: [gpu], state: 'ready', startedMs, seq, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  };
  suite.admin.publish(controlSubjects.instanceStatus(POOL, id), InstanceStatus, st);
}

const manager = (id: string): Promise<ClusterManager> => startClusterManager(suite, id, config, ClusterManager);

const status = () => suite.admin.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 }).catch(() => undefined);
const instancesOf = (st: ClusterStatus) => new Map(st.pools.flatMap((p) => p.instances).map((i) => [i.id, i]));

describe('cluster managers and the instances\' statuses', () => {
  it('decode a status only when they read the view, and the standby takes over with each instance\'s latest, heard as of its arrival', async () => {
    suite.every(250, () => (publish(A, 0, 0), publish(B, 1, 0)));
    const leader = await manager('cm-0');
    await waitFor(async () => ((await status())?.leader === 'cm-0' ? true : undefined), 30_000, 'cm-0 leads');
    await waitFor(async () => ((s) => (s && instancesOf(s).size === 2 ? true : undefined))(await status()), 30_000, 'cm-0 sees both instances');
    await manager('cm-1');
    await new Promise((r) => setTimeout(r, 1000));

    // a burst: 2 x 100 statuses in ~2 s, to both managers; the leader reads its view once a second (its telemetry)
    suite.stopEvery();
    const decode = vi.spyOn(InstanceStatus, 'decode');
    for (let i = 1; i <= 100; i++) {
      publish(A, 0, i);
      publish(B, 1, 1000 + i);
      await new Promise((r) => setTimeout(r, 20));
    }
    await suite.admin.nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    const decoded = decode.mock.calls.length;
    decode.mockRestore();
    console.log(`200 statuses sent to 2 cluster managers: ${decoded} decoded`);
    expect(decoded).toBeLessThan(40); // each replica decoding each status: 400

    // B falls silent; A goes on; the leader stops and the standby takes over
    suite.every(250, () => publish(A, 0, 7));
    const bLastMs = Date.now();
    await leader.stop();
    const answers: { atMs: number; st: ClusterStatus }[] = [];
    while (Date.now() < bLastMs + DEAD_AFTER_MS + 1500) {
      const st = await status();
      if (st?.leader === 'cm-1') answers.push({ atMs: Date.now(), st });
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(answers.length).toBeGreaterThan(0);
    const first = instancesOf(answers[0]!.st);
    console.log(`cm-1 first answered ${answers[0]!.atMs - bLastMs} ms after B's last status`);
    // its view at the takeover: A's latest, and B (silent, not dead yet) with the last of its burst
    expect(answers[0]!.atMs - bLastMs, 'the takeover within deadAfterMs of B\'s last status').toBeLessThan(DEAD_AFTER_MS - 300);
    expect(first.get(A)?.queued).toBe(7);
    expect(first.get(B)?.queued).toBe(1100);
    for (const { atMs, st } of answers) {
      const silentMs = atMs - bLastMs;
      // B counts as heard as of its last status's arrival: out of the view once deadAfterMs passed since then
      if (silentMs > DEAD_AFTER_MS + 300) expect(instancesOf(st).has(B), `B in the view ${silentMs} ms after its last status`).toBe(false);
      expect(instancesOf(st).get(A)?.queued).toBe(7);
    }
    expect(answers.at(-1)!.atMs - bLastMs).toBeGreaterThan(DEAD_AFTER_MS + 300);
  }, 120_000);
});
