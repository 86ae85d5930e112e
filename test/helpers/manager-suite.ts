/**
 * A suite that runs cluster or pool managers in the test process on a real nats-server with the project's permissions
 * (the records and standby-statuses tests): the server and an admin connection, started before the suite; the managers,
 * each on its own connection of its role; after the suite, the periodic publisher stopped, the managers stopped and
 * their connections closed, then the admin connection and the server.
 */
import { afterAll, beforeAll } from 'vitest';
import { startNatsServer, as, type TestNats } from './nats.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ClusterManager } from '../../actors/cluster-manager/main.ts';
import { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig, type ClusterConfig, type ClusterConfigInput } from '../../actors/common/config.ts';
import { RequestRecord, subjects } from '../../protocols/index.ts';

export interface ManagerSuite {
  /** the server and the admin connection (from the suite's beforeAll on). */
  readonly nats: TestNats;
  readonly admin: Bus;
  /** runs `f` every `ms` ms from now until the suite ends or `stopEvery` (a later call replaces it). */
  every(ms: number, f: () => void): void;
  stopEvery(): void;
  /** `stop` runs after the suite (before the admin connection closes), in the order given; its failure is ignored. */
  atEnd(stop: () => Promise<unknown>): void;
}

export function managerSuite(): ManagerSuite {
  let nats: TestNats | undefined;
  let admin: Bus | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stops: (() => Promise<unknown>)[] = [];
  const s: ManagerSuite = {
    get nats() {
      if (!nats) throw new Error('the suite has not started');
      return nats;
    },
    get admin() {
      if (!admin) throw new Error('the suite has not started');
      return admin;
    },
    every(ms, f) {
      s.stopEvery();
      timer = setInterval(f, ms);
    },
    stopEvery() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    atEnd(stop) {
      stops.push(stop);
    },
  };
  beforeAll(async () => {
    nats = await startNatsServer();
    admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
    // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
    await setUpBuckets(admin);
  }, 30_000);
  afterAll(async () => {
    s.stopEvery();
    for (const stop of stops.splice(0)) await stop().catch(() => {});
    await admin?.close();
    await nats?.stop();
  }, 60_000);
  return s;
}

export const ALL_TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;

/** The one-pool config of the cluster-manager tests: pool `pool` of all nine types on `gpus` H100s of n0, epochs off. */
export function clusterTestConfig(pool: string, gpus: number, liveness: ClusterConfigInput['liveness']): ClusterConfig {
  return parseConfig({
    model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus }], pools: [{ id: pool, types: [...ALL_TYPES] }],
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 }, liveness, engine: { kind: 'emulator', initialTp: 1 },
  });
}

/** Cluster manager `id` (a ClusterManager, or the test's subclass `Kind`), started on the suite's server as the cluster role. */
export async function startClusterManager<T extends ClusterManager>(
  s: ManagerSuite, id: string, config: ClusterConfig, Kind: new (...a: ConstructorParameters<typeof ClusterManager>) => T,
): Promise<T> {
  const m = new Kind({ kind: 'cluster', id, servers: s.nats.url, ...as('cluster', id), log: silentLogger(), heartbeatMs: 1000 }, config, undefined);
  s.atEnd(() => m.stop());
  await m.start();
  return m;
}

/** Pool manager `holder` of `pool` (all nine types, `liveness`), started on its own connection as the pool role. */
export async function startPoolLeader(s: ManagerSuite, pool: string, holder: string, liveness: ClusterConfigInput['liveness']): Promise<{ leader: PoolLeader; bus: Bus }> {
  const bus = await Bus.connect({ servers: s.nats.url, name: holder, ...as('pool', holder), log: silentLogger() });
  const config = parseConfig({ pools: [{ id: pool, types: [...ALL_TYPES] }], liveness });
  const leader = new PoolLeader({ pool, types: [...ALL_TYPES], holder, bus, config, log: silentLogger() });
  s.atEnd(() => leader.stop());
  s.atEnd(() => bus.close());
  await leader.start();
  return { leader, bus };
}

/** Messages each of `conns` received while the admin published `records` on `pool`'s record subject (flushed, 300 ms on). */
export async function recordsDelivered(s: ManagerSuite, pool: string, records: RequestRecord[], conns: Bus['nc'][]): Promise<number[]> {
  const before = conns.map((nc) => nc.stats().inMsgs);
  for (const r of records) s.admin.publish(subjects.telRequest(pool), RequestRecord, r);
  await s.admin.nc.flush();
  await new Promise((r) => setTimeout(r, 300));
  for (const nc of conns) await nc.flush();
  return conns.map((nc, i) => nc.stats().inMsgs - before[i]!);
}
