/**
 * The pool machine (src/policy/machines/pool.ts) driven event by event on a virtual clock, for its unit tests: a
 * config, requests and instance statuses of pool-SS, a driver that steps the machine (the shell's store acknowledging a
 * re-shard's record at once), the effects picked by kind, and a leader with two ready TP4 instances.
 */
import { expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';

export const T0 = 1_700_000_000_000;
export const POOL = 'pool-SS';

export const cfg = (o: Partial<PoolMachineConfig> = {}): PoolMachineConfig => ({
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic', ...o,
});

let n = 0;
/** A request of type SS, its id r1, r2, ... in this test file. */
export function req(o: Partial<InferenceRequest> = {}): InferenceRequest {
  const id = `r${++n}`;
  return {
    v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000,
    streamSubject: `dyn.v1.stream.${id}`, type: 'SS' as RequestType, ...o,
  };
}

const seqs = new Map<string, number>();
/** An instance's status; `seq` counts per instance unless given. */
export function status(id: string, o: Partial<InstanceStatus> = {}): InstanceStatus {
  const seq = o.seq ?? (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const m = /-(node-\d+)-g(\d+)x(\d+)$/.exec(id);
  const tp = m ? Number(m[3]) : 4;
  const g0 = m ? Number(m[2]) : 0;
  return {
    v: 1, id, pool: POOL, node: m?.[1] ?? 'node-0', tp: tp as 1 | 2 | 4 | 8, gpuIds: Array.from({ length: tp }, (_, i) => g0 + i), state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
}

export class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  ref = 0;
  constructor(readonly c: PoolMachineConfig = cfg()) {}
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const before = this.s;
    const { state, effects } = poolStep(this.s, ev, T0 + ms, this.c);
    expect(state).not.toBe(before);
    this.s = state;
    // the shell's store acknowledges a re-shard's record at once (its first command waits for that)
    return [...effects, ...effects.flatMap((e) => (e.kind === 'persist_reshard' && e.ack !== undefined ? this.at(ms, { type: 'reshard_stored', ack: e.ack, ok: true }) : []))];
  }
  /** leads, then gets the assignment from the cluster planner (PoolCommand assign); returns the effects of both. */
  lead(ms: number, a?: PoolAssignment): PoolEffect[] {
    const fx = this.at(ms, { type: 'lead', term: 1 });
    return a ? [...fx, ...this.at(ms, { type: 'assign', ref: ++this.ref, assignment: a })] : fx;
  }
  /** leads with an assignment found in the store (the KV). */
  leadStored(ms: number, a: PoolAssignment): PoolEffect[] {
    return this.at(ms, { type: 'lead', term: 1, stored: a });
  }
  dispatch(ms: number, r: InferenceRequest): PoolEffect[] {
    return this.at(ms, { type: 'dispatch', ref: ++this.ref, req: r });
  }
}

export const admits = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [e] : []));
export const replies = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'reply' ? [e] : []));

/** A leader with two ready TP4 instances on node-0 (no assignment: nothing to reconcile). */
export function twoReady(c = cfg()): Drive {
  const d = new Drive(c);
  d.at(0, { type: 'start' });
  d.lead(0);
  d.at(10, { type: 'status', status: status(`${POOL}-node-0-g0x4`) });
  d.at(10, { type: 'status', status: status(`${POOL}-node-0-g4x4`) });
  return d;
}
