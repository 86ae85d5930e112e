/**
 * The 'overlap' execution's cost of a re-shard (the paper's NVLink re-shard, SimOptions.reshardExecution): each new
 * instance of the pool machine's units serves after tau x Table VI (of the pool's dominant per-server layouts, an
 * approximation per pool) + resync, beside the instances it replaces.
 */
import type { InstanceConfig } from '../policy/types.ts';
import { TABLE_VI_TAU } from '../policy/sharding.ts';

/** The row / column of Table VI (src/policy TABLE_VI_CONFIGS) of a pool's dominant per-server layout. */
function tableViIndex(mix: InstanceConfig[]): number {
  const n = (tp: number) => mix.find((c) => c.tp === tp)?.count ?? 0;
  if (n(8) > 0) return 5;
  if (n(4) >= 2) return 4;
  if (n(4) >= 1 && n(2) >= 1) return 3;
  if (n(4) === 1) return 2;
  if (n(2) >= 4) return 1;
  return 0;
}

/** The 'overlap' execution's cost of a re-shard, tau units: Table VI of the dominant per-server layouts (an approximation per pool). */
export function reshardTau(from: InstanceConfig[], to: InstanceConfig[]): number {
  return TABLE_VI_TAU[tableViIndex(from)]![tableViIndex(to)]!;
}
