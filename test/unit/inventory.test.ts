import { describe, expect, it } from 'vitest';
import { reconcileInventory } from '../../src/runtime/inventory.ts';
import type { PoolAssignment } from '../../protocols/index.ts';

const a = (pool: string, epoch = 3): PoolAssignment => ({
  v: 1, pool, types: ['LL'], grants: [{ node: 'n0', gpuIds: [0, 1] }], epoch, state: 'active', issuedBy: 'cm-0', atMs: 1,
});

describe('stale inventory (a previous run\'s pool assignments)', () => {
  it('no live instance: every stored assignment is a previous run\'s', () => {
    const r = reconcileInventory([a('pool-LS'), a('pool-LL')], [], ['pool-LS', 'pool-LL']);
    expect(r.stale.map((x) => x.pool)).toEqual(['pool-LS', 'pool-LL']);
    expect(r.keep).toEqual([]);
    expect(r.fresh).toBe(true);
    expect(reconcileInventory([], [], ['pool-LL']).fresh).toBe(true);
  });

  it('stopped instances are not alive', () => {
    expect(reconcileInventory([a('pool-LL')], [{ pool: 'pool-LL', state: 'stopped' }], ['pool-LL']).stale).toHaveLength(1);
  });

  it('a failover (live instances) keeps every configured pool, even one whose instances are still starting', () => {
    const r = reconcileInventory([a('pool-LS'), a('pool-LL')], [{ pool: 'pool-LL', state: 'ready' }], ['pool-LS', 'pool-LL']);
    expect(r.stale).toEqual([]);
    expect(r.keep.map((x) => x.pool)).toEqual(['pool-LS', 'pool-LL']);
    expect(r.fresh).toBe(false);
  });

  it('a pool the config no longer has and no live instance serves is stale; one with live instances stays', () => {
    const r = reconcileInventory([a('pool-old'), a('pool-gone'), a('pool-LL')], [{ pool: 'pool-LL', state: 'ready' }, { pool: 'pool-gone', state: 'draining' }], ['pool-LL']);
    expect(r.stale.map((x) => x.pool)).toEqual(['pool-old']);
    expect(r.keep.map((x) => x.pool)).toEqual(['pool-gone', 'pool-LL']);
  });

  it("the cluster's own store (up's private NATS): no live instance (a node agent died with them) is a failover, not a previous run", () => {
    const r = reconcileInventory([a('pool-old'), a('pool-LS'), a('pool-LL')], [], ['pool-LS', 'pool-LL'], true);
    // the energy ledger and every configured pool's assignment stay; a pool the config does not have still goes
    expect(r.fresh).toBe(false);
    expect(r.keep.map((x) => x.pool)).toEqual(['pool-LS', 'pool-LL']);
    expect(r.stale.map((x) => x.pool)).toEqual(['pool-old']);
  });
});
