/**
 * Time without a cluster planner after a NATS server's death, on a real 3-server NATS cluster on loopback
 * (test/helpers/nats.ts, servers tagged dyn-lease-<i>), for the two lease layouts (src/runtime/lease.ts):
 * - `r3`: the lease in ONE replicated bucket (3 replicas; LeaderLease's `bucket` option), the victim the server
 *   leading that bucket's stream (its raft leader);
 * - `quorum`: the lease on a majority of three one-replica buckets, one per server, the victim a server holding one
 *   of the leader's buckets.
 * Two cases per round, ttl 3 s, renew 1 s (the planner's defaults: liveness.leaseTtlMs 3000, renew ttl/3):
 * - `nats`: only the victim SIGKILLed; the leader (on another server) lives. Figure: ms with no leader, sampled
 *   every 20 ms for 12 s after the kill.
 * - `host`: the victim and the leader's process (a process of its own, connected to the victim) SIGKILLed together,
 *   as a host's death takes both. Figure: ms from the kills to a standby (on another server) elected.
 *   npx tsx scripts/lease-failover.ts [rounds]
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsCluster, as, REPO_ROOT } from '../test/helpers/nats.ts';
import { Bus } from '../src/runtime/bus.ts';
import { LeaderLease } from '../src/runtime/lease.ts';
import { openLeaseBucket } from '../src/runtime/lease-slot.ts';
import { silentLogger } from '../src/runtime/logger.ts';
import { jetstream, leaseBuckets, leaseKeys } from '../protocols/index.ts';

const TTL_MS = 3000;
const RENEW_MS = 1000;
const rounds = Number(process.argv[2] ?? 3);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Layout = 'r3' | 'quorum';

const cluster = await startNatsCluster(3);
const admin = await Bus.connect({ servers: cluster.urls, name: 'failover-admin', ...as('admin'), log: silentLogger() });
admin.jetstreamReplicas = 3;
for (const until = Date.now() + 30_000; ;) {
  try {
    await Promise.all(leaseBuckets(3).map((b, i) => openLeaseBucket(admin, b, i, 3)));
    await admin.kv(jetstream.leasesBucket, { history: 1 });
    break;
  } catch (err) {
    if (Date.now() > until) throw err;
    await sleep(250);
  }
}
const buses: Bus[] = [];

async function hostOf(bucket: string): Promise<number> {
  for (const until = Date.now() + 30_000; Date.now() < until; await sleep(250)) {
    // the admin's server may be the one just restarted, its JetStream not up yet: asked again
    const leader = await jetstreamManager(admin.nc, { timeout: 2000 }).then((jsm) => jsm.streams.info(`KV_${bucket}`)).then((i) => i.cluster?.leader, () => undefined);
    const index = cluster.servers.findIndex((_, j) => leader?.endsWith(`-${j}`));
    if (index >= 0) return index;
  }
  throw new Error(`no leader for KV_${bucket}`);
}

async function contender(server: number, holder: string, key: string, layout: Layout): Promise<LeaderLease> {
  const b = await Bus.connect({ servers: cluster.urls[server]!, name: holder, ...as('pool', holder), log: silentLogger() });
  b.jetstreamReplicas = 3;
  buses.push(b);
  return new LeaderLease({ bus: b, key, holder, ttlMs: TTL_MS, renewMs: RENEW_MS, ...(layout === 'r3' ? { bucket: jetstream.leasesBucket } : {}), log: silentLogger() });
}

async function until(ms: number, ok: () => boolean): Promise<boolean> {
  for (const end = Date.now() + ms; !ok(); await sleep(10)) if (Date.now() > end) return false;
  return true;
}

/** Only the victim killed: ms with no leader over 12 s. */
async function natsCase(layout: Layout, round: number): Promise<number> {
  const key = leaseKeys.poolLeader(`n-${layout}-${round}`);
  const victim = layout === 'r3' ? await hostOf(jetstream.leasesBucket) : 2;
  const [a, b] = [0, 1, 2].filter((i) => i !== victim) as [number, number];
  const leader = await contender(a, `n-a-${layout}${round}`, key, layout);
  await leader.start();
  if (!(await until(15_000, () => leader.isLeader()))) throw new Error('no leader');
  const standby = await contender(b, `n-b-${layout}${round}`, key, layout);
  await standby.start();
  const t0 = Date.now();
  process.kill(cluster.servers[victim]!.pid, 'SIGKILL');
  let none = 0;
  for (let last = Date.now(); Date.now() - t0 < 12_000; await sleep(20)) {
    const now = Date.now();
    if (!leader.isLeader() && !standby.isLeader()) none += now - last;
    last = now;
  }
  await leader.stop();
  await standby.stop();
  await cluster.servers[victim]!.restart!(0);
  await sleep(3000);
  return none;
}

/** The victim and the leader's process killed together: ms to a standby elected. */
async function hostCase(layout: Layout, round: number): Promise<number> {
  const key = leaseKeys.poolLeader(`h-${layout}-${round}`);
  const victim = layout === 'r3' ? await hostOf(jetstream.leasesBucket) : 0;
  const other = [0, 1, 2].find((i) => i !== victim)!;
  const { user, pass, inboxPrefix } = as('pool', `h-a-${layout}${round}`);
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/lease-holder.ts'), cluster.urls[victim]!, user, pass, inboxPrefix, key, `h-a-${layout}${round}`, String(TTL_MS), String(RENEW_MS), ...(layout === 'r3' ? [jetstream.leasesBucket] : [])], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let leads = false;
  child.stdout!.on('data', (d: Buffer) => (leads = d.toString().trim().split('\n').map((l) => JSON.parse(l) as { leader: boolean }).at(-1)!.leader));
  if (!(await until(60_000, () => leads))) throw new Error('the leader process was not elected');
  const standby = await contender(other, `h-b-${layout}${round}`, key, layout);
  await standby.start();
  await sleep(1000);
  const t0 = Date.now();
  process.kill(cluster.servers[victim]!.pid, 'SIGKILL');
  child.kill('SIGKILL');
  const ok = await until(30_000, () => standby.isLeader());
  const took = ok ? Date.now() - t0 : Infinity;
  await standby.stop();
  await cluster.servers[victim]!.restart!(0);
  await sleep(3000);
  return took;
}

const out: Record<string, number[]> = { 'r3 nats': [], 'quorum nats': [], 'r3 host': [], 'quorum host': [] };
for (let r = 0; r < rounds; r++) {
  for (const layout of ['r3', 'quorum'] as const) {
    out[`${layout} nats`]!.push(await natsCase(layout, r));
    out[`${layout} host`]!.push(await hostCase(layout, r));
    console.log(JSON.stringify({ round: r, layout, nats: out[`${layout} nats`]!.at(-1), host: out[`${layout} host`]!.at(-1) }));
  }
}
console.log(JSON.stringify(out));
await Promise.all([admin, ...buses].map((b) => b.close()));
await cluster.stop();
