import type { DecisionEvent } from '../../protocols/messages.ts';

/**
 * The reconfiguration a decision event records, by kind, or undefined when it records none (the simulator
 * counts the same, src/sim/ledger.ts reconf):
 * - clock: a change of an instance's clock (not the start-up's first setting, `from` 0);
 * - reshard: a re-shard decision taken (not a kept layout, nor the progress of one in flight);
 * - instance_start / instance_stop: a pool starting or stopping an instance on its grant (a scale event naming one);
 * - scale: a cluster epoch that changed pools; merge: pools merged;
 * - emergency: each step of an instance's emergency ladder.
 * Instance state changes (starting, ready, draining, ...) are consequences, not decisions: not counted.
 */
export function reconfigurationOf(e: Pick<DecisionEvent, 'kind' | 'decision'>): string | undefined {
  const d = e.decision;
  switch (e.kind) {
    case 'clock': return d.from === 0 || (d.from !== undefined && d.from === d.clockMhz) ? undefined : 'clock';
    case 'reshard': return d.take === true ? 'reshard' : undefined;
    case 'scale': return d.start !== undefined ? 'instance_start' : d.stop !== undefined ? 'instance_stop' : 'scale';
    case 'merge': case 'emergency': return e.kind;
    default: return undefined;
  }
}
