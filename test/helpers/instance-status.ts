/** InstanceStatus and request fixtures for the pure router and pool tests: a ready TP4 instance on node-0, its seq rising per id. */
import type { InstanceStatus } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

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

/** A request maker for the same tests: an SS completion arrived at `t0`, ids `${prefix}1`, `${prefix}2`, ... */
export function requestMaker(t0: number, prefix = 'r'): () => InferenceRequest {
  let n = 0;
  return () => {
    const id = `${prefix}${++n}`;
    return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: t0, giveUpAtMs: t0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS' };
  };
}
