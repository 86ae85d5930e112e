/**
 * The pool manager's own Prometheus /metrics (served on its health address, `dynamollm actor pool --health
 * HOST:PORT`): per pool it hosts, whether this replica leads it, the requests it holds now for a ready
 * instance (policy capacityComing), the requests it held, and how their holds ended (dispatched to an
 * instance, refused before the hold's end, refused at the hold's end: timed out). Counts are this replica's
 * while it led (a standby holds nothing): sum them over the replicas. Values are read at scrape time; names
 * pass `promtool check metrics`.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { HOLD_OUTCOMES, type HoldOutcome } from '../../src/policy/machines/router.ts';

/** What the metrics read of one pool's leader (actors/pool-manager/pool-leader.ts PoolLeader). */
export interface PoolLeaderView {
  readonly pool: string;
  isLeader(): boolean;
  heldNow(): number;
  readonly holds: Readonly<Record<'held' | HoldOutcome, number>>;
}

export function poolManagerMetrics(manager: string, leaders: () => readonly PoolLeaderView[]): { registry: Registry; text(): Promise<string> } {
  const registry = new Registry();
  const registers = [registry];
  registry.setDefaultLabels({ manager_id: manager });
  new Gauge({
    name: 'dynamollm_pool_leader', help: 'Whether this pool manager replica leads the pool (1) or stands by (0).', labelNames: ['pool'], registers,
    collect() {
      for (const l of leaders()) this.set({ pool: l.pool }, l.isLeader() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'dynamollm_pool_held_requests', help: 'Requests the pool holds now for a ready instance (none ready, capacity coming), as this replica leads it.', labelNames: ['pool'], registers,
    collect() {
      for (const l of leaders()) this.set({ pool: l.pool }, l.isLeader() ? l.heldNow() : 0);
    },
  });
  new Counter({
    name: 'dynamollm_pool_held_requests_total', help: 'Requests this replica held for a ready instance while it led the pool.', labelNames: ['pool'], registers,
    collect() {
      this.reset();
      for (const l of leaders()) this.inc({ pool: l.pool }, l.holds.held);
    },
  });
  new Counter({
    name: 'dynamollm_pool_hold_outcomes_total', help: 'How the holds of this replica ended: dispatched (an instance admitted the request), refused (before the hold ended), timed_out (refused at the end of the hold).', labelNames: ['pool', 'outcome'], registers,
    collect() {
      this.reset();
      for (const l of leaders()) for (const o of HOLD_OUTCOMES) this.inc({ pool: l.pool, outcome: o }, l.holds[o]);
    },
  });
  return { registry, text: () => registry.metrics() };
}
