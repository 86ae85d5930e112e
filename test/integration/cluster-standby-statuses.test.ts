/**
 * The cluster managers keep each instance's statuses undecoded until they read them (Bus.subscribeLatest,
 * actors/cluster-manager/observation.ts HeardInstances): a status comes 4 a second per instance to every replica, and
 * the leader reads them for its status each second, a standby only for an intake or once it leads. Two in-process
 * cluster managers on a real nats-server: a burst of statuses of two instances costs far fewer decodes than statuses
 * sent (each replica would decode every one), and the standby that takes over answers the cluster status with each
 * instance's latest status, each heard as of its arrival: an instance silent since before the takeover leaves its view
 * deadAfterMs after its last status, not after the standby decoded it.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { ClusterStatus, InstanceStatus, StatusRequest, controlSubjects, subjects, type InstanceStatus as Status } from '../../protocols/index.ts';

const POOL = 'pool-all';
const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
const DEAD_AFTER_MS = 4000;
const A = `${POOL}-n0-g0x1`, B = `${POOL}-n0-g1x1`;
let nats: TestNats;
let admin: Bus;
const managers: ClusterManager[] = [];
let timer: NodeJS.Timeout | undefined;

const config = parseConfig({
  model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus: 2 }], pools: [{ id: POOL, types: [...TYPES] }],
  epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
  liveness: { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 },
  engine: { kind: 'emulator', initialTp: 1 },
});

const startedMs = Date.now();
const seqs = new Map<string, number>();
function publish(id: string, gpu: number, queued: number): void {
  const seq = (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const st: Status = {
    v: 1, id, pool: POOL, node: 'n0', tp: 1, gpuIds: [gpu], state: 'ready', startedMs, seq, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  };
  admin.publish(controlSubjects.instanceStatus(POOL, id), InstanceStatus, st);
}

async function manager(id: string): Promise<ClusterManager> {
  const m = new ClusterManager({ kind: 'cluster', id, servers: nats.url, ...as('cluster', id), log: silentLogger(), heartbeatMs: 1000 }, config, undefined);
  managers.push(m);
  await m.start();
  return m;
}

const status = () => admin.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 }).catch(() => undefined);
const instancesOf = (st: ClusterStatus) => new Map(st.pools.flatMap((p) => p.instances).map((i) => [i.id, i]));

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
}, 30_000);

afterAll(async () => {
  if (timer) clearInterval(timer);
  for (const m of managers) await m.stop().catch(() => {});
  await admin?.close();
  await nats?.stop();
}, 60_000);

describe('cluster managers and the instances\' statuses', () => {
  it('decode a status only when they read the view, and the standby takes over with each instance\'s latest, heard as of its arrival', async () => {
    timer = setInterval(() => (publish(A, 0, 0), publish(B, 1, 0)), 250);
    const leader = await manager('cm-0');
    await waitFor(async () => ((await status())?.leader === 'cm-0' ? true : undefined), 30_000, 'cm-0 leads');
    await waitFor(async () => ((s) => (s && instancesOf(s).size === 2 ? true : undefined))(await status()), 30_000, 'cm-0 sees both instances');
    await manager('cm-1');
    await new Promise((r) => setTimeout(r, 1000));

    // a burst: 2 x 100 statuses in ~2 s, to both managers; the leader reads its view once a second (its telemetry)
    clearInterval(timer);
    const decode = vi.spyOn(InstanceStatus, 'decode');
    for (let i = 1; i <= 100; i++) {
      publish(A, 0, i);
      publish(B, 1, 1000 + i);
      await new Promise((r) => setTimeout(r, 20));
    }
    await admin.nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    const decoded = decode.mock.calls.length;
    decode.mockRestore();
    console.log(`200 statuses sent to 2 cluster managers: ${decoded} decoded`);
    expect(decoded).toBeLessThan(40); // each replica decoding each status: 400

    // B falls silent; A goes on; the leader stops and the standby takes over
    timer = setInterval(() => publish(A, 0, 7), 250);
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
