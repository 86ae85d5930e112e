/**
 * Issue 12, "one cluster, one namespace": a restart on a NATS server that kept a previous run's state (the
 * same cluster id on a shared or external server: inventory KV, leases, streams) must start like a first
 * run. Run 1 scales out under load (pool-LS granted a server), then every actor stops while the NATS server
 * keeps its KV. Run 2 starts the same cluster on that server: its first request must succeed, no instance
 * of the previous run's plan may be started, and the stale assignments are gone from the store.
 * Real nats-server, real actor processes, emulated engines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { openLoop, startHarness, type Harness } from './control-harness.ts';
import { killTree } from '../helpers/procs.ts';
import { PoolAssignment, inventoryKeys, jetstream } from '../../protocols/index.ts';

let h: Harness;

const config = {
  model: 'llama2-70b', gpu: 'h100', profile: 'profiles/llama2-70b.h100.json',
  servers: [{ id: 'n0', gpus: 8 }, { id: 'n1', gpus: 8 }],
  epochs: { clusterS: 60, poolS: 600, instanceS: 1 },
  scaling: { instanceStartupS: 0, minEpochGapS: 2, recentWindowS: 600 },
  liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
  engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 8, maxInEngine: 32, maxQueued: 128 },
};

function startActors(): void {
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  for (const n of ['n0', 'n1']) h.startActor('node', n);
}

/** Every actor process (and the instance managers and engines under them) ends; the NATS server stays. */
async function stopActors(): Promise<void> {
  // the actors and everything under them (instance managers, engines), found before any of them dies
  killTree([...h.procs.values()].map((p) => p.pid ?? -1));
  for (const pid of h.pidsOf(h.cfgPath)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  h.procs.clear();
}

async function storedAssignments(): Promise<PoolAssignment[]> {
  const kv = await new Kvm(h.bus.nc).open(jetstream.inventoryBucket);
  const out: PoolAssignment[] = [];
  for await (const k of await kv.keys('pool.>')) {
    const e = await kv.get(k);
    if (e && e.value.length) out.push(PoolAssignment.decode(e.value));
  }
  return out;
}

beforeAll(async () => {
  h = await startHarness(config);
  startActors();
  await h.waitReady(1, 60_000);
}, 90_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

describe('a fresh cluster on a NATS server that kept a previous run', () => {
  it('run 2 serves its first request and never acts on run 1\'s plan', async () => {
    // run 1: a rise of LS requests grants pool-LS a server of its own
    const load = openLoop(h, 1, { maxTokens: 30, inputTokens: 2000 });
    const until = Date.now() + 40_000;
    for (;;) {
      const s = await h.status();
      if ((s?.pools.find((p) => p.id === 'pool-LS')?.instances ?? []).some((i) => i.state === 'ready') || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await stopActors();
    await load.stop();
    const kv = await new Kvm(h.bus.nc).open(jetstream.inventoryBucket);
    expect(await kv.get(inventoryKeys.energy()), 'run 1 stored an energy ledger').not.toBeNull();
    const left = await storedAssignments();
    expect(left.some((a) => a.pool === 'pool-LS' && a.state === 'active'), JSON.stringify(left)).toBe(true);
    // and a value that does not decode (nobody's assignment)
    await kv.put(inventoryKeys.pool('pool-SS'), new Uint8Array([0xc1, 0xff, 0x00]));

    // run 2, same server, same cluster id
    const t2 = Date.now();
    startActors();
    const st = await h.waitReady(1, 60_000);
    const first = await h.send(1_000_000, { maxTokens: 20, inputTokens: 100 });
    expect(first.error, JSON.stringify(st)).toBeUndefined();
    expect(first.ok).toBe(true);
    const evs = (await h.streamEvents()).filter((e) => e.atMs >= t2);
    // no instance of run 1's plan: the pool of LS requests gets nothing at zero load
    const starts = evs.filter((e) => e.kind === 'scale' && typeof e.decision.start === 'string').map((e) => String(e.decision.start));
    expect(starts.filter((s) => s.startsWith('pool-LS-')), starts.join(',')).toEqual([]);
    const cleared = evs.find((e) => e.kind === 'plan' && /stale pool assignment/.test(e.summary));
    expect(cleared, evs.map((e) => e.summary).join('\n')).toBeDefined();
    // run 1's energy ledger is not continued: run 2 counts its own energy from 0
    expect(cleared!.decision.ledgerCleared).toBe(true);
    const undecodable = await kv.get(inventoryKeys.pool('pool-SS'));
    expect(undecodable === null || undecodable.operation !== 'PUT' || PoolAssignment.decode(undecodable.value).pool === 'pool-SS').toBe(true);
    // the store holds run 2's plan only: pool-LS is not active there
    const now = await storedAssignments();
    expect(now.filter((a) => a.pool === 'pool-LS' && a.state === 'active')).toEqual([]);
  }, 150_000);
});
