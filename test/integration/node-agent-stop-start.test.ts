/**
 * A node agent told to stop an instance refuses a start of that instance (retryable) until its process has exited:
 * real processes (nats-server, a cluster and a pool manager, a node agent with two instance managers and their
 * emulated engines). Answered `already` instead, the caller (a pool leader that stopped an instance it started and
 * never heard from, then starts it again) would wait for an instance that is about to end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from './control-harness.ts';
import { startNodeAgentPlane, type NodeAgentPlane } from '../helpers/node-agent-plane.ts';
import { waitUntil } from '../helpers/wait.ts';
import { Ack, InstanceStatus, NodeCommand, controlSubjects, subjects, type InstanceStatus as InstanceStatusT } from '../../protocols/index.ts';

let plane: NodeAgentPlane;
let h: Harness;
const statuses: { st: InstanceStatusT; at: number }[] = [];

beforeAll(async () => {
  plane = await startNodeAgentPlane();
  h = plane.h;
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push({ st, at: Date.now() }), { capacity: 8192 });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
}, 60_000);

describe('node agent: a start of an instance it is stopping', () => {
  it('is refused until the instance\'s process has exited, then taken', async () => {
    const id = 'pool-all-n0-g0x2';
    const send = (cmd: NodeCommand) => h.bus.request(subjects.nodeControl('n0'), NodeCommand, cmd, Ack, { timeoutMs: 10_000 }).then(
      (a) => ({ ok: true as const, detail: a.detail }),
      (err: unknown) => ({ ok: false as const, message: (err as Error).message }),
    );
    const start: NodeCommand = { v: 1, op: 'start_instance', instanceId: id, pool: 'pool-all', tp: 2, gpuIds: [0, 1], reason: 'test: start again' };
    expect(await send({ v: 1, op: 'stop_instance', instanceId: id, graceMs: 10_000, reason: 'test: stop' })).toMatchObject({ ok: true });
    const at = Date.now();
    const again = await send(start);
    expect(again, JSON.stringify(again)).toMatchObject({ ok: false, message: expect.stringContaining(`instance ${id} of n0 is stopping`) });
    // once its process has exited, a start is taken (by this test or by the pool leader's reconciliation) and it serves again
    await waitUntil(() => statuses.some((s) => s.st.id === id && s.st.state === 'stopped' && s.at >= at), 30_000, `${id} stopped`);
    let taken: Awaited<ReturnType<typeof send>> | undefined;
    await waitUntil(async () => (taken = await send(start)).ok, 30_000, `a start of ${id} taken`, 500);
    await waitUntil(() => statuses.some((s) => s.st.id === id && s.st.state === 'ready' && s.at > at && s.st.startedMs > at), 60_000, `${id} ready again`);
    expect(taken?.ok).toBe(true);
  }, 150_000);
});
