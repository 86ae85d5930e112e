/**
 * A node agent's death costs no instance (src/runtime/adoption.ts): real processes (nats-server, a cluster and a pool
 * manager, a node agent with two instance managers and their emulated engines).
 * - the node agent is SIGKILLed: its instance managers serve on (same processes, same startedMs, never 'stopped'),
 *   requests sent while no node agent runs complete;
 * - a new node agent of the same node adopts them before it serves a command: past the orphans' wait to be adopted
 *   they still run, its NodeStatus lists them, and one of them SIGKILLed is started again by the new node agent;
 * - a stop on purpose (the node agent's SIGTERM) stops the instances it adopted and leaves no record behind, nor the
 *   instance managers' config file (its NATS credentials).
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness, Outcome } from '../integration/control-harness.ts';
import { startNodeAgentPlane, type NodeAgentPlane } from '../helpers/node-agent-plane.ts';
import { sleep, waitUntil as until } from '../helpers/wait.ts';
import { InstanceStatus, NodeStatus, controlSubjects, type InstanceStatus as InstanceStatusT, type NodeStatus as NodeStatusT } from '../../protocols/index.ts';
import { ADOPT_WAIT_MS, pidAlive, readRecords } from '../../src/runtime/adoption.ts';
import { descendants } from '../helpers/procs.ts';
import { nodeConfigPath } from '../../actors/node-agent/main.ts';

let plane: NodeAgentPlane;
let h: Harness;
let dir: string;
const statuses: InstanceStatusT[] = [];
let nodeStatus: NodeStatusT | undefined;

beforeAll(async () => {
  plane = await startNodeAgentPlane();
  ({ h, dir } = plane);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.push(s), { capacity: 8192 });
  h.bus.subscribe(controlSubjects.nodeStatus('n0'), NodeStatus, (s) => void (nodeStatus = s), { capacity: 256 });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
}, 60_000);

describe('a node agent dies: its instance managers serve on and its successor adopts them', () => {
  it.runIf(process.platform === 'linux')('no instance stops, requests complete, the new node agent supervises them', async () => {
    const first = h.procs.get('n0')!;
    // its instance managers: its children that run `actor instance --id <id>`
    const before = new Map<string, number>();
    for (const [pid, args] of descendants([first.pid!])) {
      const m = / actor instance --id (\S+)/.exec(args);
      if (m) before.set(m[1]!, pid);
    }
    expect(before.size).toBe(2);
    const started = new Map<string, number>();
    await until(() => {
      for (const s of statuses) if (before.has(s.id)) started.set(s.id, s.startedMs);
      return started.size === 2;
    }, 5000, 'both instances\' status');

    const gone = new Promise((r) => first.once('exit', r));
    first.kill('SIGKILL');
    await gone;
    const killedAt = Date.now();
    // no node agent for 3 s: the instances serve the requests sent meanwhile
    const during: Promise<Outcome>[] = [];
    for (let i = 0; i < 6; i++) {
      during.push(h.send(i));
      await sleep(500);
    }
    h.startActor('node', 'n0');
    // past the orphans' wait to be adopted, plus a margin
    const after: Promise<Outcome>[] = [];
    for (let i = 0; Date.now() < killedAt + ADOPT_WAIT_MS + 4000; i++) {
      after.push(h.send(100 + i));
      await sleep(1000);
    }
    for (const o of [...(await Promise.all(during)), ...(await Promise.all(after))]) expect(o.error ?? 'ok', o.id).toBe('ok');
    // the same processes, never stopped, never restarted
    for (const [id, pid] of before) expect(pidAlive(pid), `${id} (${pid}) alive`).toBe(true);
    const since = statuses.filter((s) => before.has(s.id) && s.sentMs >= killedAt);
    expect(since.length).toBeGreaterThan(10);
    expect(since.filter((s) => s.state !== 'ready').map((s) => `${s.id} ${s.state}`)).toEqual([]);
    expect(since.filter((s) => s.startedMs !== started.get(s.id))).toEqual([]);
    // the new node agent lists them, and its records name it
    await until(() => (nodeStatus?.instances.length ?? 0) === 2 && (nodeStatus?.startedMs ?? 0) > killedAt, 5000, 'the new node agent listing both instances');
    expect(nodeStatus!.free).toEqual([]);
    const second = h.procs.get('n0')!;
    expect(readRecords(dir).map((r) => r.supervisorPid)).toEqual([second.pid, second.pid]);

    // one of them SIGKILLed: the new node agent starts it again (a new process under the same id, ready)
    const [victim, victimPid] = [...before][0]!;
    process.kill(victimPid, 'SIGKILL');
    await until(() => statuses.some((s) => s.id === victim && s.startedMs !== started.get(victim) && s.state === 'ready'), 30_000, `${victim} restarted by the new node agent`);
    expect(readRecords(dir).find((r) => r.name === victim)?.pid).not.toBe(victimPid);

    // a stop on purpose stops what it adopted, and leaves nothing to adopt
    const pids = readRecords(dir).map((r) => r.pid);
    const stopped = new Promise((r) => second.once('exit', r));
    second.kill('SIGTERM');
    await stopped;
    await until(() => pids.every((p) => !pidAlive(p)), 30_000, 'the instance managers stopped with their node agent');
    expect(readdirSync(dir).filter((f) => f.endsWith('.json'))).toEqual([]);
    // nor the instance managers' config (its NATS credentials)
    expect(existsSync(nodeConfigPath(dir))).toBe(false);
  }, 150_000);
});
