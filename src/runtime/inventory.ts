/**
 * Stale inventory: pool assignments a previous run of the same cluster left in the inventory KV (a shared
 * or external NATS server keeps JetStream state across restarts). A new cluster planner reconciles the
 * store against the instances that are alive before it plans: an assignment no live instance stands behind
 * is a previous run's when
 *   - no instance of the cluster is alive at all (a fresh start, not a failover: on a failover the
 *     instances keep reporting), or
 *   - its pool is not one this cluster's config has (the pools changed between runs).
 * Those are deleted from the store and never routed to or planned from (on a fresh start, the stored energy
 * ledger too: a new cluster's energy starts at 0); on a failover (live instances)
 * every assignment of a configured pool stays, since a pool whose instances are still starting is not stale.
 * A store of the cluster's own (`ownStore`: config nats.ownStore, `up`'s private nats-server) holds no previous
 * run's state: with no instance alive (a node agent died with them) it is a failover too, and the energy ledger
 * and every assignment of a configured pool stay.
 */
import type { InstanceStatus, PoolAssignment } from '../../protocols/index.ts';

export interface InventoryReconcile {
  /** no instance of the cluster is alive: whatever else the store holds for the cluster (its energy ledger) is a previous run's too. */
  fresh: boolean;
  /** assignments to delete from the store and forget. */
  stale: PoolAssignment[];
  /** assignments to keep (load into the planner's state). */
  keep: PoolAssignment[];
  why: string;
}

/**
 * `live`: statuses of the instances seen within the liveness window (any state but stopped);
 * `pools`: the pool ids this cluster's config has (configured or derived); `ownStore`: the store is the cluster's own.
 */
export function reconcileInventory(stored: readonly PoolAssignment[], live: readonly Pick<InstanceStatus, 'pool' | 'state'>[], pools: readonly string[], ownStore = false): InventoryReconcile {
  const alive = live.filter((s) => s.state !== 'stopped');
  const known = new Set(pools);
  const livePools = new Set(alive.map((s) => s.pool));
  if (alive.length === 0 && !ownStore) {
    return { fresh: true, stale: [...stored], keep: [], why: 'no instance of the cluster is alive: the stored state is a previous run\'s' };
  }
  const stale = stored.filter((a) => !known.has(a.pool) && !livePools.has(a.pool));
  return {
    fresh: false,
    stale,
    keep: stored.filter((a) => !stale.includes(a)),
    why: stale.length ? `pool(s) ${stale.map((a) => a.pool).join(', ')} not in this cluster's config and without a live instance` : 'every stored assignment is backed by this cluster',
  };
}
