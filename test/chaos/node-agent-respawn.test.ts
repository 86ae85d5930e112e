/**
 * An instance manager that dies while its node agent is dead is started again by the node agent's successor
 * (actors/node-agent/main.ts #adopt): real processes (nats-server, a cluster and a pool manager, a node agent with two
 * instance managers and their emulated engines). The node agent is SIGKILLed, then one of its instance managers; the
 * new node agent adopts the one still running and starts the dead one again under its id (a new process, ready), so
 * the node ends with both instances and requests complete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type Harness, type Outcome } from '../integration/control-harness.ts';
import { InstanceStatus, NodeStatus, controlSubjects, type InstanceStatus as InstanceStatusT, type NodeStatus as NodeStatusT } from '../../protocols/index.ts';
import { adoptionDir, pidAlive, readRecords } from '../../src/runtime/adoption.ts';
import { descendants, killTree } from '../helpers/procs.ts';

let h: Harness;
let dir: string;
const statuses: InstanceStatusT[] = [];
let nodeStatus: NodeStatusT | undefined;
const nodeStatuses: NodeStatusT[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startControlPlane({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 4 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 4, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  }, { ready: 2 });
  dir = adoptionDir(`dynamollm|${h.nats.url}|n0`);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.push(s), { capacity: 8192 });
  h.bus.subscribe(controlSubjects.nodeStatus('n0'), NodeStatus, (s) => void nodeStatuses.push((nodeStatus = s)), { capacity: 256 });
}, 120_000);

afterAll(async () => {
  const pids = readRecords(dir ?? '/nonexistent').map((r) => r.pid);
  await h?.stop();
  killTree(pids);
}, 60_000);

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const t = Date.now() + ms;
  while (Date.now() < t) {
    if (pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('an instance manager dies while its node agent is dead', () => {
  it.runIf(process.platform === 'linux')('the new node agent starts it again and adopts the other', async () => {
    const first = h.procs.get('n0')!;
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
    const [[victim, victimPid], [survivor, survivorPid]] = [...before] as [[string, number], [string, number]];

    const gone = new Promise((r) => first.once('exit', r));
    first.kill('SIGKILL');
    await gone;
    process.kill(victimPid, 'SIGKILL');
    await until(() => !pidAlive(victimPid), 5000, 'the victim gone');
    await sleep(1000);
    const restartAt = Date.now();
    h.startActor('node', 'n0');

    // the new node agent's first status already lists both: the dead one is started again from its record, not
    // later on a command of the cluster's
    await until(() => nodeStatuses.some((s) => s.startedMs >= restartAt - 1000), 30_000, 'the new node agent\'s status');
    expect(nodeStatuses.find((s) => s.startedMs >= restartAt - 1000)!.instances.map((i) => i.id).sort()).toEqual([...before.keys()].sort());
    // the dead one is started again under its id (a new process: a new startedMs), ready; the other is adopted
    await until(() => statuses.some((s) => s.id === victim && s.startedMs !== started.get(victim) && s.state === 'ready'), 45_000, `${victim} started again by the new node agent`);
    expect(pidAlive(survivorPid)).toBe(true);
    await until(() => (nodeStatus?.instances.length ?? 0) === 2 && (nodeStatus?.startedMs ?? 0) >= restartAt - 1000, 5000, 'the new node agent listing both instances');
    expect(nodeStatus!.free).toEqual([]);
    const second = h.procs.get('n0')!;
    const records = readRecords(dir);
    expect(records.map((r) => r.supervisorPid)).toEqual([second.pid, second.pid]);
    expect(records.find((r) => r.name === survivor)?.pid).toBe(survivorPid);
    expect(records.find((r) => r.name === victim)?.pid).not.toBe(victimPid);
    // the survivor never stopped
    expect(statuses.filter((s) => s.id === survivor && s.startedMs !== started.get(survivor))).toEqual([]);

    const outs: Outcome[] = await Promise.all(Array.from({ length: 6 }, (_, i) => h.send(200 + i)));
    for (const o of outs) expect(o.error ?? 'ok', o.id).toBe('ok');
  }, 150_000);
});
