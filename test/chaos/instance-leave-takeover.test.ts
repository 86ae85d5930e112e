/**
 * A dead instance leaves the cluster status's ready set soon after its kill also when the cluster leader dies next
 * and the inventory does not answer its successor (issue 13: in `dynamollm chaos` seed 6104 at 592c12d, an instance
 * manager killed 1.6 s after a NATS node and 1.6 s before a cluster manager stayed ready in the status the harness
 * read for 5.3 s). The cluster status is a planner's own view (the statuses it heard, the assignments it holds): a
 * new planner answers it once it has listened a liveness window, not after its takeover reads of the inventory,
 * which wait up to timeouts.takeoverReadMs (5 s) while the inventory's stream does not answer; until then no status
 * is answered and a reader holds its last one, which lists the dead instance ready.
 *
 * Real 3-server cluster, the project's role users, two real cluster manager processes. The inventory bucket is one
 * replica on one server, which is stopped (SIGSTOP: its API calls go unanswered) before the kills; the leases (a
 * majority of one bucket per server) keep working on the other two. The instance and its node agent are this
 * test's publications (InstanceStatus every 250 ms; NodeStatus naming the instance, with its manager's end, exitedMs,
 * once killed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { bucketsWhenReady, freezeServer, leaseBucketsOf, plannerConfig } from '../helpers/planner-fixture.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { ClusterStatus, InstanceStatus, NodeStatus, StatusRequest, controlSubjects, jetstream, subjects, type ClusterStatus as ClusterStatusT } from '../../protocols/index.ts';

let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
let admin: Bus | undefined;
const cms = new Map<string, ChildProcess>();
let stoppedPid: number | undefined;
let timer: NodeJS.Timeout | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  cluster = await startNatsCluster(3);
}, 60_000);

afterAll(async () => {
  clearInterval(timer);
  for (const p of cms.values()) p.kill('SIGKILL');
  if (stoppedPid) process.kill(stoppedPid, 'SIGCONT');
  await admin?.close();
  await cluster?.stop();
});

/** the planners' timeouts.takeoverReadMs: how long their takeover reads wait for an inventory that does not answer. */
const TAKEOVER_READ_MS = 5000;

describe('a dead instance, then its cluster leader, with the inventory not answering', () => {
  it.runIf(process.platform === 'linux')('leaves the ready set of the status within 3.5 s of its kill, not after the new leader\'s takeover reads', async () => {
    const boot = await Bus.connect({ servers: cluster.urls, name: 'leave-admin', ...as('admin'), log: silentLogger() });
    await bucketsWhenReady(boot, () => leaseBucketsOf(boot));
    await boot.kv(jetstream.inventoryBucket);
    const on = (await (await jetstreamManager(boot.nc)).streams.info(`KV_${jetstream.inventoryBucket}`)).cluster?.leader;
    // the leases keep their majority on the two other servers' buckets: freezing the inventory's costs them nothing
    await boot.close();
    // the actors and this test on the two servers that keep answering; the inventory's server stopped later
    const index = cluster.servers.findIndex((_, j) => on?.endsWith(`-${j}`));
    const live = cluster.urls.filter((_, j) => j !== index);
    const bus = await Bus.connect({ servers: live, name: 'leave-admin', ...as('admin'), log: silentLogger() });
    admin = bus;
    const cfgPath = plannerConfig(live, 'dyn-leave-takeover-', { timeouts: { takeoverReadMs: TAKEOVER_READ_MS } });
    const start = (id: string) => cms.set(id, spawn(process.execPath, launchArgs('cluster', ['--id', id, '--config', cfgPath]), {
      stdio: ['ignore', process.env.DYN_TEST_LOG ? 'inherit' : 'ignore', 'inherit'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: process.env.DYN_TEST_LOG ?? 'error' },
    }));
    const status = () => bus.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 500 }).catch(() => undefined);
    const ready = (s: ClusterStatusT | undefined) => (s?.pools ?? []).flatMap((p) => p.instances).some((i) => i.id === 'i1' && i.state === 'ready');

    // the instance i1 on node n0, reporting as a live instance manager and node agent do
    const startedMs = Date.now();
    let alive = true;
    const end: { exitedMs?: number } = {};
    let seq = 0;
    const publish = () => {
      const now = Date.now();
      if (alive) {
        bus.publish(controlSubjects.instanceStatus('pool-all', 'i1'), InstanceStatus, {
          v: 1, id: 'i1', pool: 'pool-all', node: 'n0', tp: 2, gpuIds: [0, 1], state: 'ready', startedMs, seq: seq++, sentMs: now,
          clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
        });
      }
      bus.publish(controlSubjects.nodeStatus('n0'), NodeStatus, {
        v: 1, node: 'n0', gpus: 2, free: [], startedMs, sentMs: now,
        instances: [{ id: 'i1', pool: 'pool-all', tp: 2, gpuIds: [0, 1], state: alive ? 'running' : 'backoff', ...end }],
      });
    };
    timer = setInterval(publish, 250);

    // cm-a leads with i1 ready; cm-b, its standby, has listened long enough to know i1 and the assignments
    start('cm-a');
    let s: ClusterStatusT | undefined;
    for (const until = Date.now() + 60_000; !(s?.leader === 'cm-a' && ready(s)); await sleep(200)) {
      expect(Date.now(), 'cm-a leading with i1 ready').toBeLessThan(until);
      s = await status();
    }
    start('cm-b');
    await sleep(4000);
    expect((await status())?.leader).toBe('cm-a');

    // the inventory's server stops answering, i1's manager dies (its node agent says so at once), then the leader
    stoppedPid = freezeServer(cluster, on).pid;
    await sleep(500);
    const killedAt = Date.now();
    alive = false;
    end.exitedMs = killedAt;
    publish();
    await sleep(200);
    cms.get('cm-a')!.kill('SIGKILL');
    const leaderKilledAt = Date.now();

    // the status as a reader holds it (the chaos harness's poll): its last answer until another comes
    let last: ClusterStatusT | undefined = s;
    let outMs: number | undefined;
    for (const until = killedAt + 20_000; outMs === undefined && Date.now() < until; await sleep(100)) {
      last = (await status()) ?? last;
      if (!ready(last)) outMs = Date.now() - killedAt;
    }
    console.log(`i1 out of the status's ready set ${outMs ?? 'never'} ms after its kill (leader ${last?.leader})`);
    expect(outMs, 'i1 out of the ready set').toBeDefined();
    expect(last?.leader, 'the standby leads').toBe('cm-b');
    // before cm-b's takeover reads could have ended: they begin at its election, which follows cm-a's kill (its lease
    // lapses first), and wait takeoverReadMs for the stopped inventory; a planner that answers only after them answers
    // later than takeoverReadMs after the kill, whatever the machine's speed. (The time itself, p50/p95 over many
    // kills, is `dynamollm chaos`'s timeToLeaveDispatchMs, bench-results/chaos-cli.md.)
    expect(killedAt + outMs! - leaderKilledAt, 'out of the ready set before the takeover reads could end').toBeLessThan(TAKEOVER_READ_MS);
  }, 150_000);
});
