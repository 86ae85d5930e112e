/**
 * A dead instance manager whose node agent is dead too leaves dispatch on the NATS server's word: the server's
 * disconnect advisory (imported from its system account into the cluster's, protocols/nats-advisory.ts) names the
 * connection the instance's statuses went out on (InstanceStatus.conn), not after its statuses' lapse
 * (liveness.deadAfterMs, 1.5 s here) and with no node agent to report the exit. Real processes on the project's
 * generated nats.conf (nats-server, a cluster and a pool manager, a node agent with two instance managers and
 * their emulated engines):
 * - the node agent is SIGKILLed, then one instance manager: the cluster status drops it before its statuses lapse;
 * - the other instance stays in the ready set all along (no false death);
 * - the pool leader dispatches the requests sent right after the kill to the live instance only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../integration/control-harness.ts';
import { startNodeAgentPlane, type NodeAgentPlane } from '../helpers/node-agent-plane.ts';
import { sleep, waitUntil as until } from '../helpers/wait.ts';
import { ClientDisconnect, InstanceStatus, controlSubjects, type ClientDisconnect as ClientDisconnectT, type InstanceStatus as InstanceStatusT } from '../../protocols/index.ts';
import { readRecords } from '../../src/runtime/adoption.ts';

let plane: NodeAgentPlane;
let h: Harness;
let dir: string;
const statuses: { st: InstanceStatusT; atMs: number }[] = [];
/** the suite's liveness.deadAfterMs: statuses older than this drop an instance on their own */
const DEAD_AFTER_MS = 1500;
const advisories: { a: ClientDisconnectT; atMs: number }[] = [];

beforeAll(async () => {
  plane = await startNodeAgentPlane({ liveness: { deadAfterMs: DEAD_AFTER_MS } });
  ({ h, dir } = plane);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push({ st, atMs: Date.now() }), { capacity: 8192 });
  h.bus.subscribe(controlSubjects.connectionEnded(), ClientDisconnect, (a) => void advisories.push({ a, atMs: Date.now() }), { capacity: 1024 });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
}, 60_000);

const readyIds = async (): Promise<string[] | undefined> => {
  const st = await h.status();
  return st ? st.pools.flatMap((p) => p.instances).filter((i) => i.state === 'ready').map((i) => i.id) : undefined;
};

describe('a dead instance manager whose node agent is dead leaves dispatch on the NATS server\'s word', () => {
  it.runIf(process.platform === 'linux')('out of the cluster status before its statuses lapse; its peer stays ready', async () => {
    // both ready, each with the connection its statuses name
    const ids: Map<string, { pid: number; conn: InstanceStatusT['conn'] }> = new Map();
    await until(async () => {
      const ready = await readyIds();
      ids.clear();
      for (const r of readRecords(dir)) {
        const last = statuses.filter((s) => s.st.id === r.name).at(-1)?.st;
        if (ready?.includes(r.name) && last?.state === 'ready') ids.set(r.name, { pid: r.pid, conn: last.conn });
      }
      return ids.size === 2;
    }, 60_000, 'both instances ready');
    const [[victim, v], [peer]] = [...ids] as [[string, { pid: number; conn: InstanceStatusT['conn'] }], [string, unknown]];

    // the node agent dies first: nobody is left to report the instance manager's exit
    const agent = h.procs.get('n0')!;
    const gone = new Promise((r) => agent.once('exit', r));
    agent.kill('SIGKILL');
    await gone;
    await sleep(300);
    expect((await readyIds())?.sort(), 'both instances ready with their node agent dead').toEqual([victim, peer].sort());

    const at = Date.now();
    process.kill(v.pid, 'SIGKILL');
    let outMs: number | undefined;
    let peerOut = 0;
    // polled for 2.5 s: the victim must leave within 1 s, the peer must never leave
    while (Date.now() - at < 2500) {
      const ready = await readyIds();
      if (ready) {
        if (outMs === undefined && !ready.includes(victim)) outMs = Date.now() - at;
        if (!ready.includes(peer)) peerOut++;
      }
      await sleep(25);
    }
    const adv = advisories.find((x) => x.a.server.id === v.conn?.server && x.a.client.id === v.conn.client);
    console.log(`${victim}: out of the cluster status ${outMs} ms after its SIGKILL (advisory after ${adv ? adv.atMs - at : 'none'} ms, reason ${adv?.a.reason})`);
    expect(outMs, `${victim} left the ready set`).toBeDefined();
    // out before its statuses could lapse (deadAfterMs after the last one, as this test heard it): the advisory did
    // it. How soon (the 1-s target) is `dynamollm chaos`'s timeToLeaveDispatchMs over many kills (bench-results/chaos-cli.md)
    const lastAt = statuses.filter((s) => s.st.id === victim && s.atMs < at).at(-1)!.atMs;
    expect(at + outMs!, `out ${outMs} ms after the kill, its last status ${at - lastAt} ms before it`).toBeLessThan(lastAt + DEAD_AFTER_MS);
    expect(peerOut, `${peer} out of the ready set in ${peerOut} polls`).toBe(0);
    // its statuses named the connection, and the server's advisory named it too
    expect(v.conn, `${victim}'s status names its connection`).toBeDefined();
    expect(adv, 'the server\'s disconnect advisory for the victim\'s connection').toBeDefined();

    // requests sent now go to the live instance only
    const outs = await Promise.all([0, 1, 2, 3].map((i) => h.send(i, { maxTokens: 8 })));
    for (const o of outs) {
      expect(o.error, `${o.id}: ${o.error}`).toBeUndefined();
      expect(o.admitted).toBe(peer);
    }
  }, 180_000);
});
