/**
 * The cluster leader's decision on a node's lost instances (src/policy/lost-instances.ts): start again what the current
 * assignment still grants, forget the rest.
 */
import { describe, it, expect } from 'vitest';
import { decideLostInstances } from '../../src/policy/lost-instances.ts';
import type { NodeStatus, PoolAssignment } from '../../protocols/control.ts';

const assignment = (pool: string, grants: PoolAssignment['grants'], state: PoolAssignment['state'] = 'active'): PoolAssignment => ({
  v: 1, pool, types: ['SS'], grants, epoch: 7, state, issuedBy: 'cm-0', atMs: 0,
});

const status = (lost: NodeStatus['lost'], instances: NodeStatus['instances'] = []): Pick<NodeStatus, 'node' | 'instances' | 'lost'> => ({ node: 'n0', instances, lost });

describe('decideLostInstances', () => {
  const pools = new Map([
    ['pool-a', assignment('pool-a', [{ node: 'n0', gpuIds: [0, 1, 2, 3] }, { node: 'n1', gpuIds: [4, 5] }])],
    ['pool-old', assignment('pool-old', [{ node: 'n0', gpuIds: [4, 5] }], 'retired')],
  ]);

  it('starts again an instance whose GPUs its pool still holds on that node', () => {
    const d = decideLostInstances(status([{ id: 'pool-a-n0-g2x2', pool: 'pool-a', tp: 2, gpuIds: [2, 3] }]), pools);
    expect(d).toMatchObject([{ kind: 'start', instance: { id: 'pool-a-n0-g2x2' }, epoch: 7 }]);
  });

  it('forgets one whose pool is unknown, retired, or lacks one of its GPUs on that node', () => {
    const d = decideLostInstances(status([
      { id: 'pool-x-n0-g0x2', pool: 'pool-x', tp: 2, gpuIds: [0, 1] },
      { id: 'pool-old-n0-g4x2', pool: 'pool-old', tp: 2, gpuIds: [4, 5] },
      // GPUs 4,5 are pool-a's on n1, not on n0
      { id: 'pool-a-n0-g4x2', pool: 'pool-a', tp: 2, gpuIds: [4, 5] },
      { id: 'pool-a-n0-g2x4', pool: 'pool-a', tp: 4, gpuIds: [2, 3, 4, 5] },
    ]), pools);
    expect(d.map((x) => [x.instance.id, x.kind])).toEqual([
      ['pool-x-n0-g0x2', 'forget'], ['pool-old-n0-g4x2', 'forget'], ['pool-a-n0-g4x2', 'forget'], ['pool-a-n0-g2x4', 'forget'],
    ]);
  });

  it('forgets one whose GPUs a running instance holds', () => {
    const d = decideLostInstances(status([{ id: 'pool-a-n0-g0x2', pool: 'pool-a', tp: 2, gpuIds: [0, 1] }], [{ id: 'pool-a-n0-g0x4', pool: 'pool-a', tp: 4, gpuIds: [0, 1, 2, 3], state: 'running' }]), pools);
    expect(d).toMatchObject([{ kind: 'forget', why: expect.stringContaining('held by a running instance') }]);
  });

  it('a fresh cluster (no assignment yet, or a previous run cleared) forgets every lost instance', () => {
    const d = decideLostInstances(status([{ id: 'pool-a-n0-g0x2', pool: 'pool-a', tp: 2, gpuIds: [0, 1] }]), new Map());
    expect(d.map((x) => x.kind)).toEqual(['forget']);
    expect(decideLostInstances(status(undefined), pools)).toEqual([]);
  });
});
