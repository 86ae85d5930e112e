/**
 * A cluster manager contends for the planner lease as soon as it listens, also while the inventory does not answer
 * (issue 13, the new-leader tail). A cluster manager read the store's pool assignments before it started its lease;
 * each of those reads waits out JetStream's 5-s deadline when the inventory's stream does not answer (its server
 * killed or restarting, its raft group electing), and a replica restarted then was no standby for that long: 5.0 s
 * from its connection to its election when that read comes first, 0.2 s when it runs beside the lease.
 *
 * Real 3-server cluster, the project's role users, a real cluster manager process. The inventory bucket is one
 * replica on one server, which is stopped (SIGSTOP: its API calls go unanswered); the leases (a majority of one bucket per
 * server) keep working on the other two. Timed from the manager's connection (its NATS Service API answers a PING) to its
 * election, so that the process's start under load does not count.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { bucketsWhenReady, leaseBucketsOf, freezeServer, plannerConfig } from '../helpers/planner-fixture.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { DecisionEvent, jetstream, leaseBuckets, serviceName, serviceSubjects, subjects } from '../../protocols/index.ts';

let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
let admin: Bus;
let cm: ChildProcess | undefined;
let stoppedPid: number | undefined;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
}, 60_000);

afterAll(async () => {
  cm?.kill('SIGKILL');
  if (stoppedPid) process.kill(stoppedPid, 'SIGCONT');
  await admin?.close();
  await cluster?.stop();
});

describe('a cluster manager whose inventory does not answer', () => {
  it('contends for the planner lease at once, not after the inventory reads time out', async () => {
    admin = await Bus.connect({ servers: cluster.urls, name: 'lease-admin', ...as('admin'), log: silentLogger() });
    // the lease buckets, one on each server (the cluster's meta leader must be up), the inventory on one server
    await bucketsWhenReady(admin, () => leaseBucketsOf(admin));
    await admin.kv(jetstream.inventoryBucket);
    const jsm = await jetstreamManager(admin.nc);
    const on = (await jsm.streams.info(`KV_${jetstream.inventoryBucket}`)).cluster?.leader;
    await admin.close();
    const frozen = freezeServer(cluster, on);
    stoppedPid = frozen.pid;
    const live = frozen.live;
    // JetStream itself back on the two live servers (their meta group, a lease bucket there): only the inventory is out
    for (const until = Date.now() + 60_000; ;) {
      const b = await Bus.connect({ servers: live, name: 'lease-admin', ...as('admin'), log: silentLogger() });
      const t = Date.now();
      const ok = await Promise.race([
        (async () => {
          await (await jetstreamManager(b.nc)).getAccountInfo();
          const i = (frozen.index + 1) % 3;
          await (await openLeaseBucket(b, leaseBuckets(3)[i]!, i, 3)).get('probe');
          return Date.now() - t < 1000;
        })().catch(() => false),
        new Promise<false>((r) => setTimeout(() => r(false), 2000)),
      ]);
      if (ok) {
        admin = b;
        break;
      }
      await b.close();
      expect(Date.now(), 'JetStream back on the live servers').toBeLessThan(until);
    }

    const cfgPath = plannerConfig(live, 'dyn-lease-inv-');
    const id = 'cm-lease-inv';
    let electedAt: number | undefined;
    admin.subscribe(subjects.eventsOfKind('lease'), DecisionEvent, (e) => {
      if (e.decision.leader === id) electedAt ??= Date.now();
    });
    await admin.nc.flush();
    cm = spawn(process.execPath, launchArgs('cluster', ['--id', id, '--config', cfgPath]), {
      stdio: ['ignore', process.env.DYN_TEST_LOG ? 'inherit' : 'ignore', 'inherit'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: process.env.DYN_TEST_LOG ?? 'error' },
    });
    // connected: its Service API answers (started right after the connection, before the actor's own start)
    const ping = serviceSubjects.control('PING', serviceName('cluster'), id);
    let connectedAt: number | undefined;
    for (const until = Date.now() + 60_000; connectedAt === undefined && Date.now() < until;) {
      if (await admin.nc.request(ping, '', { timeout: 200 }).then(() => true, () => false)) connectedAt = Date.now();
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(connectedAt, 'connected').toBeDefined();
    for (const until = Date.now() + 30_000; electedAt === undefined && Date.now() < until;) await new Promise((r) => setTimeout(r, 100));
    expect(electedAt, 'elected').toBeDefined();
    // what stays on the path: the lease's first attempts (reads and a compare-and-set on the two live servers);
    // the inventory's read before the lease waited out JetStream's 5-s deadline: the bound
    console.log(`a planner with a stopped server: elected ${electedAt! - connectedAt!} ms after its connection`);
    expect(electedAt! - connectedAt!, 'elected after its connection').toBeLessThan(5_000);
  }, 120_000);
});
