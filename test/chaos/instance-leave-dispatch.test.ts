/**
 * A dead instance manager leaves the cluster status's ready set within a second, on its node agent's word
 * (NodeStatus instances[].exitedMs), not on its restarted process's first status nor its statuses' lapse
 * (liveness.deadAfterMs): real processes (nats-server, a cluster and a pool manager, a node agent with two instance
 * managers and their emulated engines).
 * - an instance manager the node agent started (its child: the node agent sees its 'exit') is SIGKILLed;
 * - the node agent is SIGKILLed and started again, it adopts the instance managers (src/runtime/adoption.ts: not its
 *   children, watched by their pids), and one of them is SIGKILLed.
 * Each time the cluster status drops the instance before any status of its new process has come, and before its
 * statuses could lapse (deadAfterMs after the last one of the killed process). How soon (the 1-s target) is
 * `dynamollm chaos`'s timeToLeaveDispatchMs over many kills (bench-results/chaos-cli.md).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../integration/control-harness.ts';
import { startNodeAgentPlane, type NodeAgentPlane } from '../helpers/node-agent-plane.ts';
import { sleep, waitUntil as until } from '../helpers/wait.ts';
import { InstanceStatus, NodeStatus, controlSubjects, type InstanceStatus as InstanceStatusT, type NodeStatus as NodeStatusT } from '../../protocols/index.ts';
import { readRecords } from '../../src/runtime/adoption.ts';

let plane: NodeAgentPlane;
let h: Harness;
/** the suite's liveness.deadAfterMs: statuses older than this drop an instance on their own */
const DEAD_AFTER_MS = 1500;
let dir: string;
const statuses: { st: InstanceStatusT; atMs: number }[] = [];
let nodeStatus: NodeStatusT | undefined;
/** the parent pid of `pid` (/proc/<pid>/stat's fourth field). */
const ppidOf = (pid: number) => Number(/^\d+ \(.*\) \S+ (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]);

beforeAll(async () => {
  plane = await startNodeAgentPlane({ liveness: { deadAfterMs: DEAD_AFTER_MS } });
  ({ h, dir } = plane);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push({ st, atMs: Date.now() }), { capacity: 8192 });
  h.bus.subscribe(controlSubjects.nodeStatus('n0'), NodeStatus, (s) => void (nodeStatus = s), { capacity: 256 });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
}, 60_000);

/** Both instances ready in the cluster status, each with the pid of its manager (the node agent's record). */
async function readyInstances(): Promise<Map<string, { pid: number; startedMs: number }>> {
  const out = new Map<string, { pid: number; startedMs: number }>();
  await until(async () => {
    const st = await h.status();
    const ready = (st?.pools ?? []).flatMap((p) => p.instances).filter((i) => i.state === 'ready').map((i) => i.id);
    out.clear();
    for (const r of readRecords(dir)) {
      const last = statuses.filter((s) => s.st.id === r.name).at(-1);
      if (ready.includes(r.name) && last?.st.state === 'ready') out.set(r.name, { pid: r.pid, startedMs: last.st.startedMs });
    }
    return out.size === 2;
  }, 60_000, 'both instances ready');
  return out;
}

/**
 * SIGKILLs instance `id`'s manager and polls the cluster status until the instance is out of its ready set: the ms
 * that took, and whether a status of its new process had come by then.
 */
async function killAndTime(id: string, pid: number, startedMs: number): Promise<{ ms: number; newProcessSpokeFirst: boolean; beforeLapseMs: number }> {
  const at = Date.now();
  process.kill(pid, 'SIGKILL');
  for (;;) {
    const st = await h.status();
    const i = (st?.pools ?? []).flatMap((p) => p.instances).find((x) => x.id === id);
    if (st && (!i || i.state !== 'ready')) {
      const now = Date.now();
      // the killed process's last status as this test heard it (the cluster manager hears the same publication)
      const lastOld = statuses.filter((s) => s.st.id === id && s.st.startedMs === startedMs).at(-1)!.atMs;
      return { ms: now - at, newProcessSpokeFirst: statuses.some((s) => s.st.id === id && s.st.startedMs !== startedMs && s.atMs >= at), beforeLapseMs: lastOld + DEAD_AFTER_MS - now };
    }
    if (Date.now() - at > 10_000) throw new Error(`${id} still ready in the cluster status 10 s after its kill`);
    await sleep(50);
  }
}

describe('a dead instance manager leaves the ready set on its node agent\'s word', () => {
  it.runIf(process.platform === 'linux')('the node agent\'s child, then one it adopted after its own restart', async () => {
    // its child
    const before = await readyInstances();
    const [a, ia] = [...before][0]!;
    const child = await killAndTime(a, ia.pid, ia.startedMs);
    expect(child.newProcessSpokeFirst, `${a}: dropped only once its new process reported`).toBe(false);
    // out before its statuses could lapse: the node agent's word did it
    expect(child.beforeLapseMs, `${a}: out ${child.ms} ms after the kill, ${-child.beforeLapseMs} ms after its statuses lapsed`).toBeGreaterThan(0);
    // its node status says when that process ended
    await until(() => (nodeStatus?.instances.find((i) => i.id === a)?.exitedMs ?? 0) >= ia.startedMs, 5000, `n0's status naming ${a}'s end`);

    // the node agent dies and its successor adopts both instance managers
    const first = h.procs.get('n0')!;
    const gone = new Promise((r) => first.once('exit', r));
    first.kill('SIGKILL');
    await gone;
    const killedAt = Date.now();
    const second = h.startActor('node', 'n0');
    await until(() => (nodeStatus?.startedMs ?? 0) > killedAt && nodeStatus?.instances.length === 2 && readRecords(dir).every((r) => r.supervisorPid === second.pid), 30_000, 'the new node agent adopting both instances');
    const adopted = await readyInstances();
    // the one not killed before: its process is the one the first node agent started, adopted (not the new one's child)
    const [b, ib] = [...adopted].find(([id]) => id !== a)!;
    expect(ppidOf(ib.pid), `${b} (${ib.pid}) is adopted, not the new node agent's child`).not.toBe(second.pid);
    const orphan = await killAndTime(b, ib.pid, ib.startedMs);
    expect(orphan.newProcessSpokeFirst, `${b}: dropped only once its new process reported`).toBe(false);
    expect(orphan.beforeLapseMs, `${b}: out ${orphan.ms} ms after the kill, ${-orphan.beforeLapseMs} ms after its statuses lapsed`).toBeGreaterThan(0);
    // and it comes back under the new node agent
    await until(() => statuses.some((s) => s.st.id === b && s.st.startedMs > ib.startedMs && s.st.state === 'ready'), 60_000, `${b} restarted and ready`);
    const back = await h.status();
    expect((back?.pools ?? []).flatMap((p) => p.instances).find((i) => i.id === b)?.state).toBe('ready');
    console.log(`left the ready set: child ${child.ms} ms (${child.beforeLapseMs} ms before its statuses' lapse), adopted ${orphan.ms} ms (${orphan.beforeLapseMs} ms before)`);
  }, 180_000);
});
