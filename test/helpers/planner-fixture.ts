/**
 * What the planner tests against a 3-server NATS cluster with one server frozen share
 * (test/integration/planner-lease-inventory.test.ts, planner-status-streams.test.ts): the replicated buckets made
 * once the cluster's meta leader is up, the server leading a stream frozen (SIGSTOP: its API calls go unanswered),
 * and a one-server cluster config on the live servers.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { Bus } from '../../src/runtime/bus.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { leaseBuckets } from '../../protocols/subjects.ts';
import { creds, type startNatsCluster } from './nats.ts';

type Cluster = Awaited<ReturnType<typeof startNatsCluster>>;

/** Opens (creating) the buckets, retrying until the cluster's meta leader answers (30 s at most). */
export async function bucketsWhenReady(admin: Bus, make: () => Promise<unknown>): Promise<void> {
  for (const until = Date.now() + 30_000; ;) {
    try {
      await make();
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** The lease buckets of a 3-server cluster (one replica each, bucket i on server i: src/runtime/lease.ts), made. */
export function leaseBucketsOf(admin: Bus): Promise<unknown> {
  return Promise.all(leaseBuckets(3).map((b, i) => openLeaseBucket(admin, b, i, 3)));
}

/**
 * Moves the raft leader of `stream` (an R3 stream) off the server `server` names (`<name>-<index>`), asking it to step
 * down until another server leads (30 s at most): a server frozen later then costs the stream no election.
 */
export async function streamLeaderOff(admin: Bus, stream: string, server: string | undefined): Promise<void> {
  const jsm = await jetstreamManager(admin.nc);
  for (const until = Date.now() + 30_000; ;) {
    const leader = await jsm.streams.info(stream).then((i) => i.cluster?.leader, () => undefined);
    if (leader && leader !== server) return;
    if (Date.now() > until) throw new Error(`stream ${stream} still led by ${String(leader)}`);
    if (leader) await admin.nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 2000 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** SIGSTOPs the server whose name `leader` (a stream's cluster leader, `<name>-<index>`) names; its index, pid and the other servers' URLs. */
export function freezeServer(cluster: Cluster, leader: string | undefined): { index: number; pid: number; live: string[] } {
  const index = cluster.servers.findIndex((_, j) => leader?.endsWith(`-${j}`));
  if (index < 0) throw new Error(`no server of the cluster is named by ${String(leader)}`);
  const pid = cluster.servers[index]!.pid;
  process.kill(pid, 'SIGSTOP');
  return { index, pid, live: cluster.urls.filter((_, j) => j !== index) };
}

/** A cluster config (one 2-GPU emulated server, one pool, short liveness) whose NATS is `live`, with `extra` on top; its path. */
export function plannerConfig(live: string[], prefix: string, extra: Record<string, unknown> = {}): string {
  const cfgPath = join(mkdtempSync(join(tmpdir(), prefix)), 'cluster.json');
  writeFileSync(cfgPath, JSON.stringify({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
    nats: { url: live.join(','), roles: { cluster: creds('cluster') }, jetstreamReplicas: 3 },
    ...extra,
  }));
  return cfgPath;
}
