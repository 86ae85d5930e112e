/** InstanceStatus fixtures for the pure router and pool tests: a ready TP4 instance on node-0, its seq rising per id. */
import type { InstanceStatus } from '../../protocols/control.ts';

/** A status maker for `pool` at time `t0` (startedMs and sentMs); each call numbers its instance's next seq. */
export function instanceStatusMaker(pool: string, t0: number): (id: string, o?: Partial<InstanceStatus>) => InstanceStatus {
  const seqs = new Map<string, number>();
  return (id, o = {}) => {
    const seq = (seqs.get(id) ?? 0) + 1;
    seqs.set(id, seq);
    return {
      v: 1, id, pool, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state: 'ready', startedMs: t0, seq, sentMs: t0,
      clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
    };
  };
}
