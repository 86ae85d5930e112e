/**
 * The cluster's energy book: totals (cluster and per pool) summed from the instances' energy counters
 * (InstanceTelemetry.energyJ: J since the instance manager started, modelled for emulated GPUs, measured
 * on NVML/SMI) and, in the cluster total only, the node agents' counters of GPUs no instance holds
 * (NodeTelemetry), with the last counter reading of each it includes. The cluster leader keeps it and stores
 * it (protocols EnergyLedger); a successor continues the stored book with its own latest readings, so the
 * cluster's energy does not restart at 0 when its leader changes. Pure; no I/O.
 */

export interface EnergyBook {
  energyJ: number;
  poolEnergyJ: Map<string, number>;
  /** instance id -> the last counter reading included in the totals. */
  counters: Map<string, number>;
}

export interface Reading {
  id: string;
  /** the pool the energy is charged to; absent: the cluster's only (a node's GPUs that no instance holds). */
  pool?: string;
  energyJ: number;
}

/** The book's key of a node's unallocated GPUs (NodeTelemetry); instance ids have the form <pool>-<node>-g<i>x<n>. */
export function nodeReadingId(node: string): string {
  return `_node_${node}`;
}

/** instances remembered at most (the oldest reading is forgotten first). */
export const MAX_COUNTERS = 4096;

export function emptyBook(): EnergyBook {
  return { energyJ: 0, poolEnergyJ: new Map(), counters: new Map() };
}

/**
 * Adds one reading to the book; returns the increment. An instance the book has not seen counts from this
 * reading on (`unseen: 'from_now'`: its earlier energy was spent before the book watched it), or with its
 * whole counter (`'whole'`: it started after the book's last reading). A counter below the last reading
 * means a new instance manager under the same id: its whole counter is new energy.
 */
export function addReading(b: EnergyBook, r: Reading, unseen: 'from_now' | 'whole' = 'from_now'): number {
  const last = b.counters.get(r.id);
  const delta = last === undefined ? (unseen === 'whole' ? r.energyJ : 0) : r.energyJ >= last ? r.energyJ - last : r.energyJ;
  b.energyJ += delta;
  if (delta > 0 && r.pool !== undefined) b.poolEnergyJ.set(r.pool, (b.poolEnergyJ.get(r.pool) ?? 0) + delta);
  // re-insert: the map's order is the age of the last reading
  b.counters.delete(r.id);
  b.counters.set(r.id, r.energyJ);
  while (b.counters.size > MAX_COUNTERS) b.counters.delete(b.counters.keys().next().value!);
  return delta;
}

/**
 * The book a new leader continues: the stored book (its predecessor's, as of its last write) plus what this
 * replica's latest reading of each instance adds to it. Without a stored book: this replica's own book.
 */
export function takeOver(stored: EnergyBook | undefined, own: EnergyBook, latest: Iterable<Reading>): EnergyBook {
  if (!stored) return own;
  const b: EnergyBook = { energyJ: stored.energyJ, poolEnergyJ: new Map(stored.poolEnergyJ), counters: new Map(stored.counters) };
  // an instance absent from the stored book started after it was written: all its energy is new
  for (const r of latest) addReading(b, r, 'whole');
  return b;
}

/** The book as the wire's record fields (protocols EnergyLedger without v/leader/atMs). */
export function bookToRecord(b: EnergyBook): { energyJ: number; poolEnergyJ: Record<string, number>; counters: Record<string, number> } {
  return { energyJ: b.energyJ, poolEnergyJ: Object.fromEntries(b.poolEnergyJ), counters: Object.fromEntries(b.counters) };
}

export function bookFromRecord(r: { energyJ: number; poolEnergyJ: Record<string, number>; counters: Record<string, number> }): EnergyBook {
  return { energyJ: r.energyJ, poolEnergyJ: new Map(Object.entries(r.poolEnergyJ)), counters: new Map(Object.entries(r.counters)) };
}
