/**
 * What the cluster planner's machine observes at an epoch (src/policy/machines/cluster.ts): the load its live instances
 * measure, the servers whose node agent is alive (every configured one under server power), and how long each server
 * has been silent. Each silence counts from `sinceMs` at the earliest: the planner's own link's return, or now while
 * that link is down or unproven (actors/common/link-watcher.ts, policy link-watch.ts). And each type's pool's prefix reuse.
 */
import type { InstanceStatus, NodeStatus, PoolAssignment, RequestType } from '../../protocols/index.ts';
import { aliveServers, observedLoad, type ClusterServer } from '../../src/policy/machines/cluster.ts';
import { prefixReuseByType } from '../../src/policy/pool-shards.ts';
import { serverObservation } from './power-driver.ts';
import type { LatestHandle } from '../../src/runtime/bus-latest.ts';

export interface Heard {
  servers: ClusterServer[];
  nodes: ReadonlyMap<string, { st: NodeStatus; seenMs: number; upSinceMs: number }>;
  instances: ReadonlyMap<string, { st: InstanceStatus; seenMs: number }>;
  deadAfterMs: number;
}

export type Observation = { observed: Partial<Record<RequestType, number>>; servers: ClusterServer[]; alive?: { id: string; upSinceMs: number }[]; busy?: string[] };

/** The machine's observation at `now`; `power`: server power decides on every configured server. */
export function observation(h: Heard, now: number, sinceMs: number, power: boolean): Observation {
  const observed = observedLoad(h.instances.values(), now, h.deadAfterMs, sinceMs);
  // server power: every configured server, those reporting and those holding an instance
  if (power) return { observed, servers: h.servers, ...serverObservation(h.nodes, h.instances.values(), now, h.deadAfterMs) };
  return { observed, servers: aliveServers(h.servers, new Map([...h.nodes].map(([id, n]) => [id, n.seenMs])), now, h.deadAfterMs, sinceMs) };
}

/** How long each configured server has been silent at `now`: since its node agent's last status, else since `listeningSinceMs`. */
export function silentMs(h: Heard, now: number, sinceMs: number, listeningSinceMs: number): Record<string, number> {
  return Object.fromEntries(h.servers.map((x) => [x.id, now - Math.max(h.nodes.get(x.id)?.seenMs ?? listeningSinceMs, sinceMs)]));
}

/**
 * Each instance's last status and when it came. The statuses (4 a second an instance) are read far less often (the
 * leader's status each second, an epoch, an intake): each is kept undecoded (Bus.subscribeLatest) until a read, which
 * decodes those kept since the last one, each with its arrival time (a bad one refused and counted, as at arrival).
 */
export class HeardInstances {
  #map = new Map<string, { st: InstanceStatus; seenMs: number }>();
  constructor(readonly latest: LatestHandle<InstanceStatus>) {}

  now(): ReadonlyMap<string, { st: InstanceStatus; seenMs: number }> {
    for (const { msg, atMs } of this.latest.take()) this.#map.set(msg.id, { st: msg, seenMs: atMs });
    return this.#map;
  }
}

const NONE: ReadonlyMap<string, { st: InstanceStatus; seenMs: number }> = new Map();

/** What `h` heard by now; nothing before it listens. */
export function heardNow(h: HeardInstances | undefined): ReadonlyMap<string, { st: InstanceStatus; seenMs: number }> {
  return h?.now() ?? NONE;
}

/**
 * Each type's pool's measured prefix reuse for the epoch (policy prefixReuseByType over the live instances'
 * statuses, prefixCacheTokens: their engines' prefix-cache counters) among `assignments`' active pools; none when no instance reports any.
 */
export function prefixReuse(h: Heard, now: number, assignments: Iterable<PoolAssignment>): { prefixReuse?: Partial<Record<RequestType, number>> } {
  const byPool = new Map<string, InstanceStatus[]>();
  for (const { st, seenMs } of h.instances.values()) {
    if (now - seenMs > h.deadAfterMs || !st.prefixCacheTokens) continue;
    const l = byPool.get(st.pool) ?? [];
    l.push(st);
    byPool.set(st.pool, l);
  }
  if (!byPool.size) return {};
  const pools = [...assignments].filter((a) => a.state === 'active').map((a) => ({ types: a.types, statuses: byPool.get(a.pool) ?? [] }));
  const r = prefixReuseByType(pools);
  return Object.keys(r).length ? { prefixReuse: r } : {};
}
