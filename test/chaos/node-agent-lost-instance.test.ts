/**
 * An instance manager that dies while its node agent is dead is started again by the first node agent that runs, even
 * one that lives only a second: real processes (nats-server, a cluster and a pool manager, a node agent with two
 * instance managers and their emulated engines). The node agent is SIGKILLed, then one of its instance managers; a new
 * node agent starts, lists the dead one as lost in its first status (NodeStatus.lost), and is SIGKILLed 1.2 s after that
 * status; a third one starts and stays.
 * - The cluster leader answers the lost report at once: the short-lived node agent has started the instance again (a
 *   new process under its id, recorded for adoption) before it is killed. The liveness window (10 s) outlasts that node
 *   agent's life, so the pool leader's reconciliation, which starts an instance again only once its statuses lapsed
 *   and then at its next period (4 status intervals), cannot be what started it.
 * - The third node agent adopts it: ready within BACK_WITHIN_MS of that node agent's first status; the other
 *   instance never restarts, nothing is left lost, and requests complete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness, Outcome } from '../integration/control-harness.ts';
import { startNodeAgentPlane, type NodeAgentPlane } from '../helpers/node-agent-plane.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { InstanceStatus, NodeStatus, controlSubjects, type InstanceStatus as InstanceStatusT, type NodeStatus as NodeStatusT } from '../../protocols/index.ts';
import { pidAlive, readRecords } from '../../src/runtime/adoption.ts';
import { descendants } from '../helpers/procs.ts';

let plane: NodeAgentPlane;
let h: Harness;
let dir: string;
const statuses: { st: InstanceStatusT; at: number }[] = [];
const nodeStatuses: { st: NodeStatusT; at: number }[] = [];
/** every pid of an instance manager seen (adopted ones are no descendants of the suite's processes). */
const imPids = new Set<number>();

beforeAll(async () => {
  plane = await startNodeAgentPlane({ liveness: { statusIntervalMs: 1000, deadAfterMs: 10_000, leaseTtlMs: 3000 } });
  ({ h, dir } = plane);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push({ st, at: Date.now() }), { capacity: 8192 });
  h.bus.subscribe(controlSubjects.nodeStatus('n0'), NodeStatus, (st) => void nodeStatuses.push({ st, at: Date.now() }), { capacity: 1024 });
}, 120_000);

afterAll(async () => {
  await plane?.stop(imPids);
}, 60_000);

/** `pred` polled every 50 ms */
const until = (pred: () => boolean, ms: number, what: string) => waitUntil(pred, ms, what, 50);

async function killNodeAgent(): Promise<void> {
  const p = h.procs.get('n0')!;
  for (const r of readRecords(dir)) imPids.add(r.pid);
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
}

/** The first status of a node agent started at `sinceMs` (its own startedMs), and when it arrived. */
async function firstStatusSince(sinceMs: number, what: string): Promise<{ st: NodeStatusT; at: number }> {
  await until(() => nodeStatuses.some((s) => s.st.startedMs >= sinceMs), 30_000, what);
  return nodeStatuses.find((s) => s.st.startedMs >= sinceMs)!;
}

/** how long after the last node agent's first status the dead instance must be ready again, ms. */
const BACK_WITHIN_MS = 10_000;

describe('an instance manager dies while its node agent is dead, and the next node agent lives ~1 s', () => {
  it.runIf(process.platform === 'linux')('the instance is ready again soon after a node agent runs, requests complete', async () => {
    const first = h.procs.get('n0')!;
    const before = new Map<string, number>();
    for (const [pid, args] of descendants([first.pid!])) {
      const m = / actor instance --id (\S+)/.exec(args);
      if (m) before.set(m[1]!, pid);
    }
    expect(before.size).toBe(2);
    const started = new Map<string, number>();
    await until(() => {
      for (const { st } of statuses) if (before.has(st.id)) started.set(st.id, st.startedMs);
      return started.size === 2;
    }, 5000, 'both instances\' status');
    const [[victim, victimPid], [survivor, survivorPid]] = [...before] as [[string, number], [string, number]];

    await killNodeAgent();
    process.kill(victimPid, 'SIGKILL');
    await until(() => !pidAlive(victimPid), 5000, 'the victim gone');
    const diedAt = Date.now();

    // a node agent that lives 1.2 s past its first status, which lists the victim as lost
    const second = Date.now();
    h.startActor('node', 'n0');
    const secondFirst = await firstStatusSince(second - 1000, 'the second node agent\'s first status');
    await sleep(Math.max(0, secondFirst.at + 1200 - Date.now()));
    await killNodeAgent();
    // it started the victim again before it died: a new process under the victim's id, recorded for adoption
    const restarted = readRecords(dir).find((r) => r.name === victim);
    console.log(`second node agent: first status ${secondFirst.at - diedAt} ms after the victim died; killed ${Date.now() - diedAt} ms after`);
    expect(restarted?.pid, 'a record of the victim\'s new process').toBeDefined();
    expect(restarted!.pid).not.toBe(victimPid);
    expect(pidAlive(restarted!.pid)).toBe(true);
    expect(secondFirst.st.lost?.map((l) => l.id)).toEqual([victim]);

    // dead for 3 s (a supervisor's backoff), then a node agent that stays
    await sleep(3000);
    const third = Date.now();
    h.startActor('node', 'n0');
    const thirdFirst = await firstStatusSince(third - 1000, 'the third node agent\'s first status');
    await until(() => statuses.some(({ st }) => st.id === victim && st.startedMs !== started.get(victim) && st.state === 'ready'), 60_000, `${victim} ready again`);
    const back = statuses.find(({ st }) => st.id === victim && st.startedMs !== started.get(victim) && st.state === 'ready')!;
    console.log(`victim ready ${back.at - thirdFirst.at} ms after the third node agent's first status`);
    expect(back.at - thirdFirst.at).toBeLessThan(BACK_WITHIN_MS);

    // the survivor was never restarted, and the node agent lists both
    expect(pidAlive(survivorPid)).toBe(true);
    expect(statuses.filter(({ st }) => st.id === survivor && st.startedMs !== started.get(survivor))).toEqual([]);
    await until(() => nodeStatuses.at(-1)!.st.instances.length === 2, 5000, 'the node agent listing both instances');
    expect(nodeStatuses.at(-1)!.st.lost).toBeUndefined();
    expect(readRecords(dir).find((r) => r.name === victim)?.pid).toBe(restarted!.pid);

    const outs: Outcome[] = await Promise.all(Array.from({ length: 6 }, (_, i) => h.send(300 + i)));
    for (const o of outs) expect(o.error ?? 'ok', o.id).toBe('ok');
  }, 180_000);
});
