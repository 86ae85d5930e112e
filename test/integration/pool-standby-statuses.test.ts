/**
 * A pool manager's standby keeps the latest status of each instance undecoded and steps those kept, each at its
 * arrival time, before its sweep, its lead and a read of its view (actors/pool-manager/statuses.ts); its leader steps
 * each as it comes. Two in-process pool managers on a real nats-server: a burst of statuses of two instances is decoded
 * by the leader and only a few times by the standby (each replica stepping each: twice the statuses), the standby's
 * view counts an instance's silence from its last status's arrival (suspected 3 status intervals after it, not after
 * the standby decoded it), and the standby takes over with each instance's latest status and the silent one's death.
 */
import { describe, expect, it, vi } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import { managerSuite, startPoolLeader } from '../helpers/manager-suite.ts';
import type { PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { InstanceStatus, controlSubjects, type InstanceStatus as Status } from '../../protocols/index.ts';

const POOL = 'pool-sb';
const A = `${POOL}-n0-g0x1`, B = `${POOL}-n0-g1x1`;
const DEAD_AFTER_MS = 3000;
const suite = managerSuite();

const startedMs = Date.now();
const seqs = new Map<string, number>();
function publish(id: string, gpu: number, queued: number): void {
  const seq = (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const st: Status = {
    v: 1, id, pool: POOL, node: 'n0', tp: 1, gpuIds: [gpu], state: 'ready', startedMs, seq, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  };
  suite.admin.publish(controlSubjects.instanceStatus(POOL, id), InstanceStatus, st);
}

const manager = async (holder: string): Promise<PoolLeader> =>
  (await startPoolLeader(suite, POOL, holder, { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 })).leader;

describe('a pool manager standby and the instances\' statuses', () => {
  it('decodes a status only when it reads its view, counts silence from arrival, and takes over with the latest of each', async () => {
    suite.every(250, () => (publish(A, 0, 0), publish(B, 1, 0)));
    const first = await manager('pm-a');
    await waitFor(() => (first.isLeader() && first.view().ready.length === 2 ? true : undefined), 30_000, 'pm-a leads with both instances');
    const standby = await manager('pm-b');
    await new Promise((r) => setTimeout(r, 1000));
    expect(standby.isLeader()).toBe(false);
    expect(standby.view().ready.sort()).toEqual([A, B]);

    // a burst: 2 x 100 statuses in ~2 s to both managers; the leader steps each, the standby reads at its sweeps
    suite.stopEvery();
    const decode = vi.spyOn(InstanceStatus, 'decode');
    for (let i = 1; i <= 100; i++) {
      publish(A, 0, i);
      publish(B, 1, 1000 + i);
      await new Promise((r) => setTimeout(r, 20));
    }
    await suite.admin.nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    const decoded = decode.mock.calls.length;
    decode.mockRestore();
    console.log(`200 statuses sent to a pool leader and its standby: ${decoded} decoded`);
    expect(decoded).toBeGreaterThanOrEqual(200); // the leader's
    expect(decoded).toBeLessThan(260); // each replica stepping each status: 400

    // B falls silent, A goes on: 1.5 s on, the standby's view has B suspected since 3 status intervals after its last status
    suite.every(250, () => publish(A, 0, 7));
    const bLastMs = Date.now();
    await new Promise((r) => setTimeout(r, 1500));
    const view = standby.view();
    const outB = view.out.find((o) => o.id === B);
    console.log(`standby's view ${Date.now() - bLastMs} ms after B's last status: ${JSON.stringify(outB)}`);
    expect(view.ready).toEqual([A]);
    expect(outB?.why).toBe('suspect');
    expect(Math.abs(outB!.sinceMs! - (bLastMs + 750))).toBeLessThan(300);

    // the leader stops: the standby leads with A's latest status, and B dead deadAfterMs after its last status
    await first.stop();
    await waitFor(() => (standby.isLeader() ? true : undefined), 10_000, 'pm-b leads');
    expect(standby.aliveInstances().find((s) => s.id === A)?.queued).toBe(7);
    await waitFor(() => (standby.aliveInstances().some((s) => s.id === B) ? undefined : true), DEAD_AFTER_MS + 3000, 'B dead in pm-b');
    const deadAt = Date.now() - bLastMs;
    console.log(`B dead in pm-b ${deadAt} ms after its last status`);
    expect(deadAt).toBeGreaterThan(DEAD_AFTER_MS);
    expect(deadAt).toBeLessThan(DEAD_AFTER_MS + 1500);
    expect(standby.view().ready).toEqual([A]);
  }, 120_000);
});
