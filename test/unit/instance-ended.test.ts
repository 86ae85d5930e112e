import { describe, expect, it } from 'vitest';
import { endedByNode } from '../../actors/cluster-manager/instance-ended.ts';

const node = (instances: { id: string; exitedMs?: number }[]) => new Map([['n0', { st: { instances: instances.map((i) => ({ pool: 'p', tp: 2 as const, gpuIds: [0, 1], state: 'running', ...i })) } }]]);

describe('endedByNode: a status from a process its node agent saw end', () => {
  it('a status of a process started before the end is a dead one\'s; one started after (the restarted process) is not', () => {
    const nodes = node([{ id: 'i0', exitedMs: 5000 }]);
    expect(endedByNode({ id: 'i0', node: 'n0', startedMs: 1000 }, nodes)).toBe(true);
    expect(endedByNode({ id: 'i0', node: 'n0', startedMs: 5000 }, nodes)).toBe(true);
    expect(endedByNode({ id: 'i0', node: 'n0', startedMs: 5400 }, nodes)).toBe(false);
  });
  it('no end reported, another instance\'s end, an unknown node, no node named: not ended', () => {
    expect(endedByNode({ id: 'i0', node: 'n0', startedMs: 1000 }, node([{ id: 'i0' }]))).toBe(false);
    expect(endedByNode({ id: 'i0', node: 'n0', startedMs: 1000 }, node([{ id: 'i1', exitedMs: 5000 }]))).toBe(false);
    expect(endedByNode({ id: 'i0', node: 'n1', startedMs: 1000 }, node([{ id: 'i0', exitedMs: 5000 }]))).toBe(false);
    expect(endedByNode({ id: 'i0', startedMs: 1000 }, node([{ id: 'i0', exitedMs: 5000 }]))).toBe(false);
  });
});
