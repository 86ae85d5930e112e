/**
 * Re-shard placement (paper Sec. IV-B, Table VI): where each target instance's GPUs go and which weight
 * shard each GPU takes, keeping the most weights in place.
 *
 * The model's weights are cut into PARTS = 8 equal parts (one TP8 shard). A GPU in role r of a TP-k
 * instance holds parts [r*8/k, (r+1)*8/k). Steps:
 *  1. target instances go to servers: first each one that can take the place of a current instance of the
 *     same TP, then the rest largest TP first onto the server with the most weight-holding GPUs still
 *     free, else a new server;
 *  2. per server, a maximum-weight bipartite matching (Hungarian, `hungarian.ts`) between target
 *     (instance, role) slots and the server's GPUs, weight = parts of that role the GPU already holds
 *     (bytes that can stay). On NVSwitch servers (DGX H100) any GPU subset can form an instance, so this
 *     GPU-level matching is exact for bytes kept;
 *  3. cost in tau (tau = time to move 1/8 of the model over NVLink, ~50 ms for Llama2-70B): every GPU
 *     fetches its missing parts from GPUs of the same server that hold them in the CURRENT placement,
 *     spreading its fetches over the holders; a GPU pair moves its parts at one part per tau and all pairs
 *     proceed in parallel (NVSwitch), so the cost is the largest number of parts any one (holder, receiver)
 *     pair moves. This interpretation reproduces all 36 entries of Table VI (see the unit test); neither
 *     "max parts received per GPU" (TP4 -> 4xTP2 would be 4, the table says 2) nor "max parts sent per GPU"
 *     (TP2 -> TP8 would be 3, the table says 1) does.
 * Parts no GPU of the server holds come from another server or storage: counted in bytesFromOutside and
 * marked `fresh` (the caller prices those as an instance start, Table V), not in costTau.
 */
import { maxWeightAssignment } from './hungarian.ts';
import type { InstanceConfig } from './types.ts';

export const PARTS = 8;
/** Llama2-70B weights in bf16: ~69e9 parameters x 2 bytes (rounded to 140 GB). */
export const LLAMA2_70B_BYTES = 140e9;

export interface CurrentInstance {
  id: string;
  tp: number;
  /** global GPU indices (server = floor(gpu / gpusPerServer)); gpus[r] plays role r. */
  gpus: number[];
  /** requests queued and running on it when the re-shard is planned (policy stopsByLoad: which of like instances a re-shard stops, and when); absent: 0. */
  inFlight?: number;
}

export interface Placement {
  tp: number;
  /** global GPU indices; gpus[r] plays role r. */
  gpus: number[];
  bytesKept: number;
  bytesMoved: number;
  /** tau to assemble this instance's weights inside its server. */
  costTau: number;
  /** ids of current instances whose GPUs it reuses (empty when none). */
  from: string[];
  /** true when some of its parts are on no GPU of its server (must come over the network / from storage). */
  fresh: boolean;
}

export interface ReshardResult {
  placements: Placement[];
  bytesKept: number;
  bytesMoved: number;
  /** the re-shard time in tau: the slowest server (servers proceed in parallel). */
  costTau: number;
  bytesFromOutside: number;
}

function partsOf(tp: number, role: number): number[] {
  const w = PARTS / tp;
  return Array.from({ length: w }, (_, i) => role * w + i);
}

function expand(target: (InstanceConfig | { tp: number })[]): number[] {
  const out: number[] = [];
  for (const t of target) {
    const n = 'count' in t ? t.count : 1;
    if (![1, 2, 4, 8].includes(t.tp)) throw new RangeError(`tp must be 1, 2, 4 or 8, got ${t.tp}`);
    for (let i = 0; i < n; i++) out.push(t.tp);
  }
  return out;
}

export function matchReshard(
  current: CurrentInstance[],
  target: (InstanceConfig | { tp: number })[],
  gpusPerServer = 8,
  modelBytes = LLAMA2_70B_BYTES,
): ReshardResult {
  const partBytes = modelBytes / PARTS;
  // source state: gpu -> parts held, owner
  const held = new Map<number, { parts: Set<number>; owner: string }>();
  for (const c of current) {
    if (c.gpus.length !== c.tp) throw new RangeError(`instance ${c.id}: tp ${c.tp} but ${c.gpus.length} GPUs`);
    c.gpus.forEach((g, r) => {
      if (held.has(g)) throw new RangeError(`GPU ${g} is in two current instances (${held.get(g)!.owner}, ${c.id})`);
      held.set(g, { parts: new Set(partsOf(c.tp, r)), owner: c.id });
    });
  }
  const tps = expand(target).sort((a, b) => b - a);
  const serverOf = (g: number) => Math.floor(g / gpusPerServer);
  const servers = new Map<number, { free: number; sameTp: Map<number, number>; dataGpus: number; targets: number[] }>();
  const ensure = (s: number) => {
    let x = servers.get(s);
    if (!x) servers.set(s, (x = { free: gpusPerServer, sameTp: new Map(), dataGpus: 0, targets: [] }));
    return x;
  };
  for (const c of current) {
    const s = ensure(serverOf(c.gpus[0]!));
    if (c.gpus.every((g) => serverOf(g) === serverOf(c.gpus[0]!))) s.sameTp.set(c.tp, (s.sameTp.get(c.tp) ?? 0) + 1);
    for (const g of c.gpus) ensure(serverOf(g)).dataGpus++;
  }
  // 1. instances to servers: first every target that can stay exactly where a current instance of the
  // same TP runs, then the rest, largest first (powers of two, so first-fit leaves no unusable holes)
  const rest: number[] = [];
  for (const tp of tps) {
    const sid = [...servers.keys()].sort((a, b) => a - b).find((id) => (servers.get(id)!.sameTp.get(tp) ?? 0) > 0 && servers.get(id)!.free >= tp);
    if (sid === undefined) { rest.push(tp); continue; }
    const s = servers.get(sid)!;
    s.free -= tp;
    s.sameTp.set(tp, s.sameTp.get(tp)! - 1);
    s.dataGpus = Math.max(0, s.dataGpus - tp);
    s.targets.push(tp);
  }
  for (const tp of rest) {
    let best: number | null = null;
    let bestScore = -1;
    for (const [id, s] of [...servers.entries()].sort((a, b) => a[0] - b[0])) {
      if (s.free < tp) continue;
      const score = (s.sameTp.get(tp) ?? 0) > 0 ? 1e6 : Math.min(s.dataGpus, s.free);
      if (score > bestScore) { bestScore = score; best = id; }
    }
    if (best === null) best = servers.size ? Math.max(...servers.keys()) + 1 : 0;
    const s = ensure(best);
    s.free -= tp;
    if ((s.sameTp.get(tp) ?? 0) > 0) s.sameTp.set(tp, s.sameTp.get(tp)! - 1);
    s.dataGpus = Math.max(0, s.dataGpus - tp);
    s.targets.push(tp);
  }
  // 2. + 3. per server
  const placements: Placement[] = [];
  let costTau = 0, bytesKept = 0, bytesMoved = 0, bytesFromOutside = 0;
  for (const [sid, s] of [...servers.entries()].sort((a, b) => a[0] - b[0])) {
    if (!s.targets.length) continue;
    const gpus = Array.from({ length: gpusPerServer }, (_, i) => sid * gpusPerServer + i);
    const slots: { inst: number; role: number; parts: number[] }[] = [];
    s.targets.forEach((tp, inst) => { for (let r = 0; r < tp; r++) slots.push({ inst, role: r, parts: partsOf(tp, r) }); });
    const W = slots.map((sl) => gpus.map((g) => {
      const h = held.get(g);
      return h ? sl.parts.filter((x) => h.parts.has(x)).length : 0;
    }));
    const { assignment } = maxWeightAssignment(W);
    const holders = (part: number, except: number) => gpus.filter((g) => g !== except && held.get(g)?.parts.has(part));
    s.targets.forEach((tp, inst) => {
      const pl: Placement = { tp, gpus: new Array<number>(tp), bytesKept: 0, bytesMoved: 0, costTau: 0, from: [], fresh: false };
      slots.forEach((sl, k) => {
        if (sl.inst !== inst) return;
        const g = gpus[assignment[k]!]!;
        pl.gpus[sl.role] = g;
        const h = held.get(g);
        if (h && !pl.from.includes(h.owner) && sl.parts.some((x) => h.parts.has(x))) pl.from.push(h.owner);
        const missing = sl.parts.filter((x) => !h?.parts.has(x));
        pl.bytesKept += (sl.parts.length - missing.length) * partBytes;
        pl.bytesMoved += missing.length * partBytes;
        const local = missing.filter((x) => holders(x, g).length > 0);
        if (local.length < missing.length) {
          pl.fresh = true;
          bytesFromOutside += (missing.length - local.length) * partBytes;
        }
        pl.costTau = Math.max(pl.costTau, pairBottleneck(local.map((x) => holders(x, g))));
      });
      placements.push(pl);
      bytesKept += pl.bytesKept;
      bytesMoved += pl.bytesMoved;
      costTau = Math.max(costTau, pl.costTau);
    });
  }
  return { placements, bytesKept, bytesMoved, costTau, bytesFromOutside };
}

/**
 * Smallest k such that each needed part can be fetched from one of its holders with no holder serving
 * more than k parts (bipartite b-matching by augmenting paths; sizes are <= 8).
 */
export function pairBottleneck(holdersPerPart: number[][]): number {
  const n = holdersPerPart.length;
  if (!n) return 0;
  for (let k = 1; k <= n; k++) {
    const load = new Map<number, number[]>(); // holder -> parts assigned
    const assigned = new Array<number>(n).fill(-1);
    const tryAssign = (part: number, seen: Set<number>): boolean => {
      for (const h of holdersPerPart[part]!) {
        if (seen.has(h)) continue;
        seen.add(h);
        const l = load.get(h) ?? [];
        if (l.length < k) { l.push(part); load.set(h, l); assigned[part] = h; return true; }
        for (let i = 0; i < l.length; i++) {
          const other = l[i]!;
          if (tryAssign(other, seen)) {
            // other moved elsewhere; take its seat
            const l2 = load.get(h)!;
            l2.splice(l2.indexOf(other), 1, part);
            assigned[part] = h;
            return true;
          }
        }
      }
      return false;
    };
    let ok = true;
    for (let p = 0; p < n && ok; p++) ok = tryAssign(p, new Set());
    if (ok) return k;
  }
  return n;
}

/** Canonical placement of a configuration on fresh servers (TP8 first, then TP4, then TP2, packed). */
export function canonicalPlacement(config: InstanceConfig[], _gpusPerServer = 8, prefix = 'i'): CurrentInstance[] {
  const tps = expand(config).sort((a, b) => b - a);
  const out: CurrentInstance[] = [];
  let next = 0;
  for (const tp of tps) {
    // tps are powers of two in descending order, so packing never straddles a server boundary
    out.push({ id: `${prefix}${out.length}`, tp, gpus: Array.from({ length: tp }, (_, i) => next + i) });
    next += tp;
  }
  return out;
}
