/**
 * Leader leases on a NATS cluster (issue 13, lossless failover): a lease is held on a majority of one-replica
 * buckets, one per NATS server (src/runtime/lease.ts), so a NATS server's loss costs its holder one bucket and no
 * election. Real 3-server cluster on loopback, each server tagged dyn-lease-<i>; the contenders speak as the project's
 * cluster and pool roles.
 *
 * - a NATS server killed (SIGKILL), then another frozen (SIGSTOP), each holding one of the leader's buckets (or, where
 *   the lease lives in one replicated bucket, leading its stream's raft group): the leader leads at every 20-ms
 *   sample, no standby on another server is ever elected, and never two lead at once.
 * - the leader's process SIGKILLed while a NATS server is down: a standby on another server leads within ttl + 1 s of
 *   the kill, under a higher term.
 * - a bucket whose tag no server carries: LeaseLayoutError naming the missing server_tags, not retryable; on servers
 *   without the tags nobody is elected and no bucket of another layout is made.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsCluster, as, REPO_ROOT } from '../helpers/nats.ts';
import { bucketsWhenReady, leaseBucketsOf } from '../helpers/planner-fixture.ts';
import { sample, until } from '../helpers/lease-watch.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease, LeaseLayoutError } from '../../src/runtime/lease.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { createLogger, silentLogger } from '../../src/runtime/logger.ts';
import { jetstream, leaseBuckets, leaseKeys } from '../../protocols/index.ts';

const TTL_MS = 3000;
const RENEW_MS = 1000;
let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
let admin: Bus;
const buses: Bus[] = [];
const leases: LeaderLease[] = [];
let child: ChildProcess | undefined;
let frozenPid: number | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  admin = await Bus.connect({ servers: cluster.urls, name: 'lease-quorum-admin', ...as('admin'), log: silentLogger() });
  admin.jetstreamReplicas = 3;
  await bucketsWhenReady(admin, () => leaseBucketsOf(admin));
}, 60_000);

afterAll(async () => {
  child?.kill('SIGKILL');
  if (frozenPid) process.kill(frozenPid, 'SIGCONT');
  for (const l of leases) await l.stop().catch(() => {});
  await Promise.all([admin, ...buses].map((b) => b?.close()));
  await cluster?.stop();
});

async function contender(server: number, role: 'cluster' | 'pool', holder: string, key: string): Promise<LeaderLease> {
  const b = await Bus.connect({ servers: cluster.urls[server]!, name: holder, ...as(role, holder), log: silentLogger() });
  b.jetstreamReplicas = 3;
  buses.push(b);
  const l = new LeaderLease({ bus: b, key, holder, ttlMs: TTL_MS, renewMs: RENEW_MS, log: process.env.DYN_TEST_LOG ? createLogger({ level: 'debug' }).child({ holder }) : silentLogger() });
  leases.push(l);
  return l;
}

/**
 * The server (index) leading each lease stream that exists: the one replicated bucket's, or each one-replica bucket's.
 * A server just restarted or thawed leaves the meta group without a leader for a while (JetStream answers "temporarily
 * unavailable"), so this asks again until every lease stream names its leader, for up to 30 s.
 */
async function leaseStreamHosts(): Promise<Map<string, number>> {
  const buckets = [jetstream.leasesBucket, ...leaseBuckets(3)];
  let out = new Map<string, number>();
  for (const end = Date.now() + 30_000; Date.now() < end; await sleep(250)) {
    out = new Map();
    const jsm = await jetstreamManager(admin.nc, { timeout: 2000, checkAPI: false });
    let unknown = 0;
    for (const b of buckets) {
      const info = await jsm.streams.info(`KV_${b}`).then((i) => ({ leader: i.cluster?.leader }), (e: unknown) => ((e as Error).message.includes('not found') ? undefined : { leader: undefined }));
      if (!info) continue; // no such bucket in this layout
      const index = cluster.servers.findIndex((_, j) => info.leader?.endsWith(`-${j}`));
      if (index >= 0) out.set(b, index);
      else unknown++;
    }
    if (unknown === 0 && out.size > 0) return out;
  }
  throw new Error(`lease streams without a known leader after 30 s: ${JSON.stringify([...out])}`);
}

describe('a lease on a majority of one-replica buckets, one per NATS server', () => {
  it('a NATS server killed, then another frozen: the leader leads throughout, no standby is elected', async () => {
    const key = leaseKeys.clusterPlanner();
    const leader = await contender(0, 'cluster', 'cm-a', key);
    await leader.start();
    await until('cm-a elected', 15_000, () => leader.isLeader());
    const standbys = [await contender(1, 'cluster', 'cm-b', key), await contender(2, 'cluster', 'cm-c', key)];
    const elected: string[] = [];
    for (const s of standbys) s.on('elected', () => elected.push(s.holder));
    await Promise.all(standbys.map((s) => s.start()));
    const seen = sample([leader, ...standbys]);
    try {
      // the server leading the one replicated lease bucket where it exists, else the one holding lease bucket 1
      const hosts = await leaseStreamHosts();
      const killed = hosts.get(jetstream.leasesBucket) ?? hosts.get(leaseBuckets(3)[1]!)!;
      expect(killed).toBeGreaterThanOrEqual(0);
      process.kill(cluster.servers[killed]!.pid, 'SIGKILL');
      await sleep(2 * TTL_MS);
      await cluster.servers[killed]!.restart!(0);
      await sleep(TTL_MS);
      // then frozen: the server leading the replicated bucket now, else the one holding lease bucket 2
      const again = await leaseStreamHosts();
      const frozen = again.get(jetstream.leasesBucket) ?? again.get(leaseBuckets(3)[2]!)!;
      frozenPid = cluster.servers[frozen]!.pid;
      process.kill(frozenPid, 'SIGSTOP');
      await sleep(2 * TTL_MS);
      process.kill(frozenPid, 'SIGCONT');
      frozenPid = undefined;
      await sleep(RENEW_MS);
    } finally {
      seen.stop();
    }
    expect(seen.samples.length).toBeGreaterThan(500);
    expect(seen.samples.filter((s) => s.leaders.length > 1), 'two leaders at once').toEqual([]);
    const gaps = seen.samples.filter((s) => !s.leaders.includes('cm-a'));
    expect(gaps.length, `the leader did not lead at ${gaps.length} samples, first ${(gaps[0]?.t ?? 0) - seen.samples[0]!.t} ms into the run`).toBe(0);
    expect(elected, 'a standby elected while the leader lives').toEqual([]);
  }, 120_000);

  it('the leader process killed while a NATS server is down: a standby on another server leads within twice the ttl', async () => {
    const key = leaseKeys.poolLeader('quorum');
    const { user, pass, inboxPrefix } = as('pool', 'pm-a');
    const lines: { t: number; leader: boolean; term: number }[] = [];
    child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/lease-holder.ts'), cluster.urls[0]!, user, pass, inboxPrefix, key, 'pm-a', String(TTL_MS), String(RENEW_MS)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)) as { t: number; leader: boolean; term: number });
        buf = buf.slice(i + 1);
      }
    });
    await until('pm-a (a process of its own) elected', 60_000, () => lines.at(-1)?.leader === true);
    const standbys = [await contender(1, 'pool', 'pm-b', key), await contender(2, 'pool', 'pm-c', key)];
    const elected: { holder: string; term: number; t: number }[] = [];
    for (const s of standbys) s.on('elected', ({ term }: { term: number }) => elected.push({ holder: s.holder, term, t: Date.now() }));
    await Promise.all(standbys.map((s) => s.start()));
    const seen = sample(standbys);
    try {
      // one NATS server down for good: the one holding lease bucket 2 (or leading the one replicated bucket)
      const hosts = await leaseStreamHosts();
      const down = hosts.get(jetstream.leasesBucket) ?? hosts.get(leaseBuckets(3)[2]!)!;
      process.kill(cluster.servers[down]!.pid, 'SIGKILL');
      await sleep(1500);
      expect(lines.at(-1)?.leader, 'pm-a leads on with a NATS server down').toBe(true);
      expect(elected).toEqual([]);
      const killedMs = Date.now();
      child.kill('SIGKILL');
      await until('a standby elected', 3 * TTL_MS, () => elected.length > 0);
      // the killed leader's lease lapses within a TTL, a standby's next try comes within a renewal: it leads before a
      // second TTL has passed (one that waited on the down server's bucket, or for a second lapse, would not)
      const took = elected[0]!.t - killedMs;
      console.log(`a standby led ${took} ms after the leader's kill, a NATS server down (TTL ${TTL_MS} ms, renewal ${RENEW_MS} ms)`);
      expect(took, `a standby led ${took} ms after the leader's kill`).toBeLessThan(2 * TTL_MS);
      expect(elected[0]!.term, 'the new term is above the killed leader\'s').toBeGreaterThan(lines.filter((l) => l.leader).at(-1)!.term);
      await sleep(2 * RENEW_MS);
      await cluster.servers[down]!.restart!(0);
    } finally {
      seen.stop();
    }
    expect(elected.length, `elected: ${JSON.stringify(elected)}`).toBe(1);
    expect(seen.samples.filter((s) => s.leaders.length > 1), 'two leaders at once').toEqual([]);
  }, 120_000);

  it('NATS servers without the lease tags: nobody is elected, no other layout is made, the error names server_tags', async () => {
    const plain = await startNatsCluster(3, { leaseTags: false });
    const b = await Bus.connect({ servers: plain.urls, name: 'lease-untagged', ...as('admin'), log: silentLogger() });
    try {
      b.jetstreamReplicas = 3;
      // once the cluster's meta leader answers, the bucket's creation is refused for its placement
      let err: unknown;
      for (const end = Date.now() + 30_000; !(err instanceof LeaseLayoutError) && Date.now() < end; await sleep(250)) {
        err = await openLeaseBucket(b, leaseBuckets(3)[0]!, 0, 3).then(() => undefined, (e: unknown) => e);
      }
      expect(err).toBeInstanceOf(LeaseLayoutError);
      expect((err as Error).message).toContain('server_tags ["dyn-lease-0"]');
      const l = new LeaderLease({ bus: b, key: leaseKeys.clusterPlanner(), holder: 'untagged', ttlMs: 1500, renewMs: 500, log: silentLogger() });
      let elected = false;
      l.on('elected', () => (elected = true));
      await l.start();
      await sleep(3000);
      await l.stop();
      expect(elected).toBe(false);
      const jsm = await jetstreamManager(b.nc, { timeout: 5000 });
      const streams: string[] = [];
      for await (const name of jsm.streams.names()) streams.push(name);
      expect(streams.filter((n) => n.startsWith(`KV_${jetstream.leasesBucket}`))).toEqual([]);
    } finally {
      await b.close();
      await plain.stop();
    }
  }, 90_000);

  it('a bucket whose placement tag no NATS server carries: LeaseLayoutError naming it, not retryable', async () => {
    const err = await openLeaseBucket(admin, 'dyn_v1_leases_3', 3, 5).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLayoutError);
    expect((err as LeaseLayoutError).retryable).toBe(false);
    expect((err as Error).message).toContain('server_tags ["dyn-lease-3"]');
  }, 30_000);
});
