/**
 * The paper's yardsticks, which no live manager runs (Sec. V): the static pools of `single-pool` and `multi-pool`
 * (and of the single-level policies built on them), and the oracle's Eq. 1 solve per pool epoch (OracleSolver). The simulator
 * (./control.ts) installs what these return; they decide nothing the live cluster decides.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import type { HighsLike } from '../policy/milp.ts';
import type { LoadByType } from '../policy/types.ts';
import * as decide from './decide.ts';
import { quantiseLoad } from './quantise.ts';

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

type Eq1Result = ReturnType<typeof decide.solveEq1>;

export interface OracleSolverOptions {
  highs: HighsLike;
  profile: Profile;
  /** the cluster's GPUs (Eq. 1's budget). */
  gpus: number;
  /** the pool epoch, s (the energy Eq. 1 minimises is over it). */
  epochS: number;
  headroom: number;
}

/**
 * The oracle's pool epoch: Eq. 1 (src/policy solveEq1, HiGHS) over one pool per type with load, for the coming
 * epoch's actual peak per type (true types, 1-minute bins), on the +-5% load grid (src/sim/quantise.ts) so that a
 * week's 2,016 epochs reuse the solves of the same quantised question (a memo of at most 20,000).
 */
export class OracleSolver {
  readonly #o: OracleSolverOptions;
  readonly #memo = new Map<string, Eq1Result>();

  constructor(o: OracleSolverOptions) {
    this.#o = o;
  }

  /** The pools (one per type with load, id pool-<type>) and Eq. 1's solution for them. */
  solve(raw: LoadByType): { pools: { id: string; loadByType: LoadByType }[]; sol: Eq1Result } {
    const f: LoadByType = {};
    let key = '';
    for (const t of REQUEST_TYPES) {
      const v = quantiseLoad(raw[t] ?? 0);
      if (v > 0) {
        f[t] = v;
        key += `|${t}${v}`;
      }
    }
    const pools = REQUEST_TYPES.filter((t) => (f[t] ?? 0) > 0).map((t) => ({ id: `pool-${t}`, loadByType: { [t]: f[t]! } as LoadByType }));
    // Eq. 1's pools share nothing but the GPU budget: when every pool's own optimum (solved alone, cached by
    // its type and quantised load: a few hundred distinct solves in a week instead of one per epoch) fits the
    // budget together, their union IS the joint optimum; only when it does not is the joint MILP solved.
    let sol: Eq1Result | undefined;
    const parts = pools.map((pl) => this.#solve([pl], `1|${pl.id}|${pl.loadByType[pl.id.slice(5) as RequestType]}`));
    if (parts.length && parts.every((r) => r.feasible)) {
      const config = parts.flatMap((r) => r.config);
      if (config.reduce((a, g) => a + g.tp * g.count, 0) <= this.#o.gpus) sol = { ...parts[0]!, status: 'Optimal (per pool)', config, energy: parts.reduce((a, r) => a + r.energy, 0), solveMs: parts.reduce((a, r) => a + r.solveMs, 0) };
    }
    sol ??= this.#solve(pools, key);
    return { pools, sol };
  }

  #solve(pools: { id: string; loadByType: LoadByType }[], key: string): Eq1Result {
    let r = this.#memo.get(key);
    if (!r) {
      if (this.#memo.size > 20_000) this.#memo.clear();
      const o = this.#o;
      this.#memo.set(key, (r = decide.solveEq1(o.highs, { profile: o.profile, pools, gpus: o.gpus, epochS: o.epochS, headroom: o.headroom, timeLimitS: 20, mipRelGap: 1e-3 })));
    }
    return r;
  }
}
