/**
 * Issue 5, chaos: SIGKILL during load of (a) an engine (the emulator child of an instance manager), (b) the
 * pool leader (a standby pool-manager process takes its lease), (c) the cluster leader (a standby cluster
 * manager takes over planning; intake keeps working through the queue group). Real nats-server, real actor
 * processes (two cluster managers, two pool managers, a node agent, instance managers) and emulated
 * Llama3.1-8B engines; one pool of two TP4 instances on one 8-GPU server.
 * The test sends through the gateway's own NATS backend (admission retried with the same id, request
 * migration). For each: every request completes with its whole stream (no token lost or repeated), a
 * stream running on the engine that died included (it continues on a peer); no request hangs (15 s
 * admission budget, 30 s of stream silence); dispatch stops using a dead instance within deadAfterMs and a
 * few status intervals, and the plane serves again afterwards.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLoop, startHarness, streamProblems, type Harness, type Outcome } from '../integration/control-harness.ts';

let h: Harness;
/** the suite's liveness settings (below) */
const STATUS_MS = 250;
const DEAD_AFTER_MS = 1500;
/** the tokens each request asks for: streams long enough (about a second at time-scale 2) that a kill finds some running */
const MAX_TOKENS = 200;

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 8 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: { statusIntervalMs: STATUS_MS, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 2, healthDeadlineMs: 30_000, initialTp: 4, maxInEngine: 32, maxQueued: 128 },
  });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  await new Promise((r) => setTimeout(r, 1500)); // cm-0 and pm-0 lead; cm-1 and pm-1 are standbys
  h.startActor('cluster', 'cm-1');
  h.startActor('pool', 'pm-1');
  h.startActor('node', 'n0');
  await h.waitReady(2);
}, 60_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').map(Number).filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** Every request resolved (none HUNG) and completed with its whole stream: no token lost, none repeated. */
function checkOutcomes(outs: Outcome[]): { ok: number } {
  expect(outs.flatMap((o) => streamProblems(o, MAX_TOKENS))).toEqual([]);
  return { ok: outs.filter((o) => o.ok).length };
}

describe('control plane: chaos (SIGKILL during load)', () => {
  it('an engine: its streams continue on the peer, its instance leaves dispatch within deadAfterMs and comes back', async () => {
    const load = openLoop(h, 6, { maxTokens: MAX_TOKENS, inputTokens: 100 });
    await sleep(2500);
    // the victim: an instance running streams (the energy policy may consolidate a light load on one)
    let victim = '';
    for (const until = Date.now() + 15_000; !victim; await sleep(100)) {
      expect(Date.now(), 'an instance running requests').toBeLessThan(until);
      victim = (await h.status())?.pools[0]?.instances.find((i) => i.state === 'ready' && i.running >= 2)?.id ?? '';
    }
    const im = h.pidsOf(`--id ${victim} `)[0]!;
    expect(im, 'instance manager pid').toBeGreaterThan(0);
    const engine = childrenOf(im)[0]!;
    expect(engine, 'engine pid').toBeGreaterThan(0);
    const migratedBefore = h.backend.counters.migrated;
    const killAt = Date.now();
    process.kill(engine, 'SIGKILL');
    // the instance restarts its engine; wait until it is ready again (new engine pid)
    let backAt = 0;
    while (Date.now() - killAt < 30_000 && !backAt) {
      await sleep(250);
      const s = await h.status();
      const i = s?.pools[0]!.instances.find((x) => x.id === victim);
      if (i?.state === 'ready' && Date.now() - killAt > 1000) backAt = Date.now();
    }
    await sleep(2000);
    const outs = await load.stop();
    // every request completes, a stream the dead engine was running included (it continues on another leg)
    const { ok } = checkOutcomes(outs);
    // streams of the dead engine went on as new legs (on the peer, or on the victim once its engine is back)
    const cut = h.backend.counters.migrated - migratedBefore;
    expect(cut, 'a stream of the dead engine continued on another leg').toBeGreaterThan(0);
    expect(backAt, 'instance did not come back').toBeGreaterThan(0);
    // admissions to the victim from its death verdict's latest time (deadAfterMs and 6 status intervals: a verdict
    // at deadAfterMs, its event, the gateway's view) until its return: none
    const stale = outs.filter((o) => o.admitted === victim && o.at > killAt + DEAD_AFTER_MS + 6 * STATUS_MS && o.at < backAt - 2 * STATUS_MS);
    expect(stale.map((o) => o.at - killAt)).toEqual([]);
    const evs = await h.streamEvents();
    const down = evs.find((e) => e.actor === victim && e.atMs >= killAt && (e.kind === 'failure' || (e.kind === 'instance' && e.decision.state === 'restarting')));
    expect(down, 'no failure/restarting event').toBeDefined();
    // how soon: the liveness rule, tested on a virtual clock (test/unit/runtime-core.test.ts); logged below
    // requests sent after the instance is back all complete
    expect(outs.filter((o) => o.at > backAt + 500 && !o.ok).map((o) => o.error)).toEqual([]);
    console.log(`engine kill: ${outs.length} requests, ${ok} ok, ${cut} streams continued on another leg; ` +
      `instance out of dispatch after ${down!.atMs - killAt} ms, ready again after ${backAt - killAt} ms`);
  }, 60_000);

  it('the pool leader: a standby takes the lease; every request completes', async () => {
    const st = await h.status();
    const leader = st!.pools[0]!.leader!;
    expect(['pm-0', 'pm-1']).toContain(leader);
    const standby = leader === 'pm-0' ? 'pm-1' : 'pm-0';
    const load = openLoop(h, 6, { maxTokens: MAX_TOKENS, inputTokens: 100 }, 100_000);
    await sleep(2000);
    const killAt = Date.now();
    h.procs.get(leader)!.kill('SIGKILL');
    let tookAt = 0;
    while (Date.now() - killAt < 20_000 && !tookAt) {
      await sleep(250);
      const s = await h.status();
      if (s?.pools[0]?.leader === standby) tookAt = Date.now();
    }
    await sleep(3000);
    const outs = await load.stop();
    const { ok } = checkOutcomes(outs);
    expect(tookAt, 'standby did not take the pool lease').toBeGreaterThan(0);
    const evs = await h.streamEvents();
    expect(evs.some((e) => e.kind === 'lease' && e.actor === 'pool-all' && e.decision.leader === standby && e.atMs > killAt)).toBe(true);
    console.log(`pool leader kill (${leader}): ${outs.length} requests, ${ok} ok; ${standby} leads after ${tookAt - killAt} ms`);
  }, 60_000);

  it('the cluster leader: a standby takes over planning; intake keeps working', async () => {
    const st = await h.status();
    const leader = st!.leader;
    expect(['cm-0', 'cm-1']).toContain(leader);
    const standby = leader === 'cm-0' ? 'cm-1' : 'cm-0';
    const load = openLoop(h, 6, { maxTokens: MAX_TOKENS, inputTokens: 100 }, 200_000);
    await sleep(2000);
    const killAt = Date.now();
    h.procs.get(leader)!.kill('SIGKILL');
    let tookAt = 0;
    while (Date.now() - killAt < 20_000 && !tookAt) {
      await sleep(250);
      const s = await h.status();
      if (s?.leader === standby) tookAt = Date.now();
    }
    await sleep(3000);
    const outs = await load.stop();
    const { ok } = checkOutcomes(outs);
    expect(tookAt, 'standby did not take the planner lease').toBeGreaterThan(0);
    const evs = await h.streamEvents();
    expect(evs.some((e) => e.kind === 'lease' && e.actor === standby && e.decision.leader === standby && e.atMs > killAt)).toBe(true);
    // intake (queue group) never stopped: requests sent during the takeover were served by the standby, and
    // those the dead manager held were sent again by the gateway (checkOutcomes: every request completed)
    const during = outs.filter((o) => o.at > killAt + 200 && o.at < tookAt);
    // the new leader plans: its status reports the pool and the instances
    const after = await h.status();
    expect(after!.pools[0]!.instances.filter((i) => i.state === 'ready').length).toBe(2);
    console.log(`cluster leader kill (${leader}): ${outs.length} requests, ${ok} ok; ${standby} leads after ${tookAt - killAt} ms; ` +
      `${during.length} sent during the takeover, ${during.filter((o) => o.ok).length} ok`);
  }, 60_000);
});
