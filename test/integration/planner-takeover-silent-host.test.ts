/**
 * A new cluster planner keeps the grants of a host that is silent when it takes over (issue 13, "more than one
 * host": a partitioned host's instances come back after the heal). A partition gives no TCP reset: the host's node
 * agent and instances just stop reporting. A planner elected then runs its first epoch over the servers it hears;
 * had it placed over those alone, the host's GPUs would leave the pool, and its pool leader would stop the host's
 * instance as soon as it was heard again (a restart, or no instance there until the next timed epoch).
 *
 * Real nats-server and actor processes (two cluster managers, a pool manager, two node agents with emulated
 * instances). The silence is a SIGSTOP of the second host's node agent, instance manager and engine (their
 * connections stay open, nothing is reported, as in a partition), held past the planner's liveness window, with the
 * planner killed during it; then SIGCONT. Expected: the same instance process serves again, its GPU still granted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './control-harness.ts';
import { descendants } from '../helpers/procs.ts';
import { InstanceStatus, controlSubjects } from '../../protocols/index.ts';

const VICTIM = 'pool-all-n1-g0x1';
let h: Harness;
let frozen: number[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, pred: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end;) {
    if (await pred()) return;
    await sleep(200);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; status ${JSON.stringify(await h.status())}`);
}

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: 1 }, { id: 'n1', gpus: 1 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1000, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 60_000, initialTp: 1, maxInEngine: 8, maxQueued: 32 },
  });
  h.startActor('cluster', 'cm-0');
  await until('cm-0 leads', async () => (await h.status())?.leader === 'cm-0', 30_000);
  h.startActor('cluster', 'cm-1');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  h.startActor('node', 'n1');
  await h.waitReady(2, 90_000);
}, 150_000);

afterAll(async () => {
  for (const pid of frozen) try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
  await h?.stop();
}, 30_000);

describe('a cluster planner elected while a host is silent', () => {
  it("keeps the host's grants: its instance serves again as the same process, not stopped and started again", async () => {
    const processes = new Set<number>();
    const sub = h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => {
      if (st.id === VICTIM) processes.add(st.startedMs);
    }, { capacity: 4096 });
    await until(`${VICTIM} reports`, async () => processes.size > 0, 5000);
    // the host's processes: its node agent and everything under it (instance manager, engine)
    frozen = [...descendants([h.procs.get('n1')!.pid!]).keys()];
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    // past the planner's liveness window for a node agent (3 x deadAfterMs, at least 3 s)
    await until(`${VICTIM} leaves the cluster status`, async () => !(await h.status())?.pools[0]?.instances.some((i) => i.id === VICTIM && i.state === 'ready'), 10_000);
    await sleep(3500);
    h.procs.get('cm-0')!.kill('SIGKILL');
    await until('cm-1 leads', async () => (await h.status())?.leader === 'cm-1', 20_000);
    // its first epoch (within 3 status intervals of its election) runs while the host is still silent
    await sleep(2000);
    for (const pid of frozen) process.kill(pid, 'SIGCONT');
    frozen = [];
    await until(`${VICTIM} serves again`, async () => (await h.status())?.pools[0]?.instances.some((i) => i.id === VICTIM && i.state === 'ready') ?? false, 20_000);
    // and keeps serving once the pool leader has the new planner's assignment (a shrunken one stops it at once)
    await sleep(4000);
    const st = await h.status();
    sub.unsubscribe();
    expect(st?.pools[0]?.gpus).toBe(2);
    expect(st?.pools[0]?.instances.filter((i) => i.state === 'ready').map((i) => i.id).sort()).toEqual(['pool-all-n0-g0x1', VICTIM]);
    expect([...processes]).toHaveLength(1);
    const stops = (await h.streamEvents()).filter((e) => e.kind === 'scale' && (e.decision as { stop?: string }).stop === VICTIM);
    expect(stops).toEqual([]);
  }, 120_000);
});
