/**
 * The paper's yardsticks, which no live manager runs (Sec. V): the static pools of `single-pool` and `multi-pool`
 * (and of the single-level policies built on them), and the oracle's Eq. 1 solve per pool epoch. The simulator
 * (./engine.ts) installs what these return; they decide nothing the live cluster decides.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import type { LoadByType } from '../policy/types.ts';

const TYPE_INDEX = Object.fromEntries(REQUEST_TYPES.map((t, i) => [t, i])) as Record<RequestType, number>;

/** Pools to install (id, types, GPUs) and the routing of every type (type -> pool id). */
export interface PoolLayout {
  wanted: { id: string; types: RequestType[]; gpus: number }[];
  routing: Partial<Record<RequestType, string>>;
}

export interface StaticPoolsInput {
  /** each type's peak load over the whole trace, req/s. */
  peak: LoadByType;
  profile: Profile;
  maxClockMhz: number;
  servers: number;
  gpusPerServer: number;
  /** 'single': one pool of every type on all GPUs (in instances of `instanceTp`); 'per-type': the paper's MultiPool. */
  pools: 'single' | 'per-type';
  instanceTp?: number;
}

/**
 * The static pools: `single` is one pool of all types on every GPU; `per-type` (the paper's MultiPool) splits ALL
 * servers among the type pools in proportion to each type's peak demand (load / per-server SLO throughput at TP8,
 * max clock), at least one server per pool with load; a type with too little load for its own server when servers
 * run short joins the next longer pool.
 */
export function staticPools(i: StaticPoolsInput): PoolLayout {
  const { peak, servers: nServers, gpusPerServer } = i;
  if (i.pools === 'single') {
    const routing: Partial<Record<RequestType, string>> = {};
    for (const t of REQUEST_TYPES) routing[t] = 'pool-all';
    const tp = i.instanceTp ?? 8;
    return { wanted: [{ id: 'pool-all', types: [...REQUEST_TYPES], gpus: Math.floor((nServers * gpusPerServer) / tp) * tp }], routing };
  }
  const need = REQUEST_TYPES.map((t) => {
    const ml = maxLoadOf(i.profile, t, 8, i.maxClockMhz) * (gpusPerServer / 8);
    return (peak[t] ?? 0) > 0 ? (ml > 0 ? peak[t]! / ml : 1) : 0;
  });
  let types = REQUEST_TYPES.filter((_, k) => need[k]! > 0);
  const merged = new Map<RequestType, RequestType>(); // type -> the pool type that serves it
  while (types.length > nServers) {
    const k = types.reduce((m, t, x) => (need[TYPE_INDEX[t]]! < need[TYPE_INDEX[types[m]!]]! && x < types.length - 1 ? x : m), 0);
    const from = types[k]!;
    const into = types[Math.min(k + 1, types.length - 1)]!;
    need[TYPE_INDEX[into]]! += need[TYPE_INDEX[from]]!;
    merged.set(from, into);
    types = types.filter((t) => t !== from);
  }
  const totalNeed = types.reduce((s, t) => s + need[TYPE_INDEX[t]]!, 0);
  const servers = new Map<RequestType, number>(types.map((t) => [t, 1]));
  let left = nServers - types.length;
  // largest remainder on the rest, by share of demand
  const quota = types.map((t) => ({ t, q: (need[TYPE_INDEX[t]]! / totalNeed) * nServers - 1 }));
  for (const x of quota) {
    const add = Math.max(0, Math.min(left, Math.floor(x.q)));
    servers.set(x.t, servers.get(x.t)! + add);
    left -= add;
    x.q -= add;
  }
  quota.sort((a, b) => b.q - a.q);
  for (let k = 0; left > 0; k = (k + 1) % quota.length, left--) servers.set(quota[k]!.t, servers.get(quota[k]!.t)! + 1);
  const routing: Partial<Record<RequestType, string>> = {};
  const resolve = (t: RequestType): RequestType => (merged.has(t) ? resolve(merged.get(t)!) : t);
  const wanted = types.map((t) => ({ id: `pool-${t}`, types: REQUEST_TYPES.filter((x) => (need[TYPE_INDEX[x]]! > 0 || x === t) && resolve(x) === t), gpus: servers.get(t)! * gpusPerServer }));
  for (const t of REQUEST_TYPES) if ((peak[t] ?? 0) > 0) routing[t] = `pool-${resolve(t)}`;
  return { wanted, routing };
}
