/**
 * Profiles (format v1, see profiles/README.md): validation, interpolation in load and clock, and the
 * derived queries the controllers make (max load under SLO, feasibility, idle power). Pure.
 * Queries outside the profiled grid throw ProfileRangeError: never a silent extrapolation.
 */
import { z } from 'zod';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { PROFILE_VERSION, type Profile, type ProfileCell } from './profile-types.ts';

/** A profile document is malformed; the message names the bad field. */
export class ProfileError extends Error {
  override name = 'ProfileError';
  readonly retryable = false;
}

/** A query outside the profiled grid (TP not profiled, clock outside [min,max], load outside the type's grid). */
export class ProfileRangeError extends Error {
  override name = 'ProfileRangeError';
  readonly retryable = false;
}

const num = z.number().finite();
const nonneg = num.nonnegative();
const reqType = z.enum(REQUEST_TYPES);

const profileSchema = z.object({
  version: z.literal(PROFILE_VERSION),
  model: z.string().min(1),
  gpu: z.string().min(1),
  source: z.object({
    kind: z.enum(['model', 'measured']),
    generatedBy: z.string(),
    calibration: z.string().optional(),
    engine: z.string().min(1).optional(),
    date: z.string(),
    notes: z.string().optional(),
  }),
  tpDegrees: z.array(z.number().int().positive()).nonempty(),
  clocksMhz: z.array(num.positive()).nonempty(),
  requestTypes: z.array(z.object({ type: reqType, inputTokens: nonneg, outputTokens: nonneg, ttftSloMs: num.positive(), tbtSloMs: num.positive() })).nonempty(),
  loads: z.record(reqType, z.array(nonneg)),
  cells: z.array(z.object({
    type: reqType, tp: z.number().int().positive(), clockMhz: num, load: nonneg,
    powerW: nonneg, energyPerRequestJ: nonneg, ttftP50Ms: nonneg, ttftP99Ms: nonneg, tbtP50Ms: nonneg, tbtP99Ms: nonneg, meetsSlo: z.boolean(),
  })),
  maxLoad: z.array(z.object({ type: reqType, tp: z.number().int().positive(), clockMhz: num, maxLoad: nonneg })),
  scheduler: z.object({ maxNumBatchedTokens: z.number().int().min(2), maxNumSeqs: z.number().int().positive() }).optional(),
  idlePowerW: z.array(z.object({ tp: z.number().int().positive(), clockMhz: num, powerW: nonneg })).optional(),
});

/** The profile without its cells, which cellOf checks (thousands of them: through zod they were most of an actor's start). */
const profileHeadSchema = profileSchema.extend({ cells: z.array(z.unknown()) });

const TYPES: ReadonlySet<string> = new Set(REQUEST_TYPES);
const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const nonNeg = (x: unknown): x is number => finite(x) && x >= 0;

/**
 * The cell as profileSchema makes it (its keys only, in the schema's order) when it passes every check of
 * profileSchema's cell, else undefined (parseProfile then lets zod name the first bad field). Only plain objects:
 * anything else is left to zod.
 */
function cellOf(c: unknown): ProfileCell | undefined {
  if (typeof c !== 'object' || c === null) return undefined;
  const proto = Object.getPrototypeOf(c) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  const { type, tp, clockMhz, load, powerW, energyPerRequestJ, ttftP50Ms, ttftP99Ms, tbtP50Ms, tbtP99Ms, meetsSlo } = c as Record<string, unknown>;
  if (typeof type !== 'string' || !TYPES.has(type) || !Number.isInteger(tp) || !((tp as number) > 0) || !finite(clockMhz)) return undefined;
  if (!nonNeg(load) || !nonNeg(powerW) || !nonNeg(energyPerRequestJ) || !nonNeg(ttftP50Ms) || !nonNeg(ttftP99Ms) || !nonNeg(tbtP50Ms) || !nonNeg(tbtP99Ms)) return undefined;
  if (typeof meetsSlo !== 'boolean') return undefined;
  return { type: type as RequestType, tp: tp as number, clockMhz, load, powerW, energyPerRequestJ, ttftP50Ms, ttftP99Ms, tbtP50Ms, tbtP99Ms, meetsSlo };
}

/**
 * profileSchema.safeParse(json)'s data, or its first issue: the cells checked by cellOf, the rest by zod; a document
 * with any bad cell (or any other bad field) goes through profileSchema whole, so the issue named is zod's own.
 */
function parseDocument(json: unknown): { data: z.infer<typeof profileSchema> } | { issue: z.ZodIssue } {
  const head = profileHeadSchema.safeParse(json);
  if (head.success) {
    const cells: ProfileCell[] = [];
    for (const c of head.data.cells) {
      const cell = cellOf(c);
      if (!cell) break;
      cells.push(cell);
    }
    if (cells.length === head.data.cells.length) return { data: { ...head.data, cells } };
  }
  const r = profileSchema.safeParse(json);
  return r.success ? { data: r.data } : { issue: r.error.issues[0]! };
}

function ascending(xs: number[], field: string): void {
  for (let i = 1; i < xs.length; i++) {
    if (!(xs[i]! > xs[i - 1]!)) throw new ProfileError(`${field} must be strictly ascending (index ${i}: ${xs[i - 1]} then ${xs[i]})`);
  }
}

interface Index {
  /** key type|tp|clock -> cells in load-grid order */
  cells: Map<string, ProfileCell[]>;
  maxLoad: Map<string, number>;
  idle: Map<string, number>;
  /**
   * The same cells without string keys, for the hot path (dispatch evaluates thousands of points per
   * second): type -> tp -> clock index (p.clocksMhz order) -> cells in load-grid order.
   */
  series: Map<RequestType, Map<number, ProfileCell[][]>>;
  /** profiled request types (loadsOf's check without a scan). */
  types: Set<RequestType>;
  /** memo of maxLoadOf / idlePowerOf results (only successful queries): type -> tp -> clock -> value. */
  maxLoadMemo: Map<RequestType, Map<number, Map<number, number>>>;
  idleMemo: Map<number, Map<number, number>>;
  seriesMemo: Map<RequestType, Map<number, Map<number, PowerSeries>>>;
}
const indexes = new WeakMap<Profile, Index>();
const key = (type: string, tp: number, clock: number) => `${type}|${tp}|${clock}`;

/** Validate a parsed JSON document as a v1 profile. Throws ProfileError naming the bad field. */
export function parseProfile(json: unknown): Profile {
  if (json && typeof json === 'object' && 'version' in json && (json as { version: unknown }).version !== PROFILE_VERSION) {
    throw new ProfileError(`version: unsupported profile version ${JSON.stringify((json as { version: unknown }).version)} (this build reads ${PROFILE_VERSION})`);
  }
  const r = parseDocument(json);
  if ('issue' in r) throw new ProfileError(`${r.issue.path.join('.') || '(root)'}: ${r.issue.message}`);
  const p = r.data as Profile;
  ascending(p.tpDegrees, 'tpDegrees');
  ascending(p.clocksMhz, 'clocksMhz');
  const types = new Set<RequestType>();
  for (const [i, t] of p.requestTypes.entries()) {
    if (types.has(t.type)) throw new ProfileError(`requestTypes.${i}.type: duplicate type ${t.type}`);
    types.add(t.type);
    const loads = p.loads[t.type];
    if (!loads || loads.length === 0) throw new ProfileError(`loads.${t.type}: missing load grid for profiled type ${t.type}`);
    ascending(loads, `loads.${t.type}`);
    if (loads[0] !== 0) throw new ProfileError(`loads.${t.type}: the grid must start at 0 (lone-request latency, loaded-idle power), got ${loads[0]}`);
  }
  const idx: Index = { cells: new Map(), maxLoad: new Map(), idle: new Map(), series: new Map(), types, maxLoadMemo: new Map(), idleMemo: new Map(), seriesMemo: new Map() };
  const loadPos = new Map<string, Map<number, number>>();
  for (const t of types) loadPos.set(t, new Map(p.loads[t]!.map((l, i) => [l, i])));
  for (const [i, c] of p.cells.entries()) {
    const where = `cells.${i}`;
    if (!types.has(c.type)) throw new ProfileError(`${where}.type: ${c.type} is not among requestTypes`);
    if (!p.tpDegrees.includes(c.tp)) throw new ProfileError(`${where}.tp: ${c.tp} is not among tpDegrees`);
    if (!p.clocksMhz.includes(c.clockMhz)) throw new ProfileError(`${where}.clockMhz: ${c.clockMhz} is not among clocksMhz`);
    const pos = loadPos.get(c.type)!.get(c.load);
    if (pos === undefined) throw new ProfileError(`${where}.load: ${c.load} is not on the load grid of ${c.type}`);
    const k = key(c.type, c.tp, c.clockMhz);
    let arr = idx.cells.get(k);
    if (!arr) {
      arr = new Array<ProfileCell>(p.loads[c.type]!.length);
      idx.cells.set(k, arr);
    }
    if (arr[pos]) throw new ProfileError(`${where}: duplicate cell ${c.type} tp${c.tp} ${c.clockMhz} MHz load ${c.load}`);
    arr[pos] = c;
  }
  for (const t of types) for (const tp of p.tpDegrees) for (const f of p.clocksMhz) {
    const arr = idx.cells.get(key(t, tp, f));
    const n = p.loads[t]!.length;
    if (!arr || arr.filter(Boolean).length !== n) throw new ProfileError(`cells: missing cells for ${t} tp${tp} ${f} MHz (need one per load of loads.${t})`);
  }
  for (const [i, m] of p.maxLoad.entries()) {
    if (!types.has(m.type) || !p.tpDegrees.includes(m.tp) || !p.clocksMhz.includes(m.clockMhz)) {
      throw new ProfileError(`maxLoad.${i}: (${m.type}, tp${m.tp}, ${m.clockMhz} MHz) is not on the profile grid`);
    }
    idx.maxLoad.set(key(m.type, m.tp, m.clockMhz), m.maxLoad);
  }
  for (const t of types) for (const tp of p.tpDegrees) for (const f of p.clocksMhz) {
    if (!idx.maxLoad.has(key(t, tp, f))) throw new ProfileError(`maxLoad: missing entry for ${t} tp${tp} ${f} MHz`);
  }
  for (const e of p.idlePowerW ?? []) idx.idle.set(`${e.tp}|${e.clockMhz}`, e.powerW);
  for (const t of types) {
    const byTp = new Map<number, ProfileCell[][]>();
    for (const tp of p.tpDegrees) byTp.set(tp, p.clocksMhz.map((f) => idx.cells.get(key(t, tp, f))!));
    idx.series.set(t, byTp);
  }
  indexes.set(p, idx);
  return p;
}

function indexOf(p: Profile): Index {
  let idx = indexes.get(p);
  if (!idx) {
    // an object that did not come from parseProfile: validate it, and index it under the caller's object
    idx = indexes.get(parseProfile(p))!;
    indexes.set(p, idx);
  }
  return idx;
}

/** Bracketing positions of x in ascending xs: [i0, i1, weight of i1]. Exact grid points give w = 0. */
function bracket(xs: number[], x: number): [number, number, number] {
  for (let i = 0; i < xs.length; i++) {
    if (x === xs[i]) return [i, i, 0];
    if (x < xs[i]!) return [i - 1, i, (x - xs[i - 1]!) / (xs[i]! - xs[i - 1]!)];
  }
  return [xs.length - 1, xs.length - 1, 0];
}

function checkTpClock(p: Profile, tp: number, clockMhz: number): void {
  if (!p.tpDegrees.includes(tp)) throw new ProfileRangeError(`tp ${tp} is not profiled for ${p.model} on ${p.gpu} (profiled: ${p.tpDegrees.join(', ')})`);
  const lo = p.clocksMhz[0]!, hi = p.clocksMhz[p.clocksMhz.length - 1]!;
  if (!(clockMhz >= lo && clockMhz <= hi)) throw new ProfileRangeError(`clock ${clockMhz} MHz is outside the profiled range [${lo}, ${hi}] MHz`);
}

function loadsOf(p: Profile, type: RequestType, idx: Index = indexOf(p)): number[] {
  const loads = p.loads[type];
  if (!loads || !idx.types.has(type)) throw new ProfileRangeError(`request type ${type} is not profiled`);
  return loads;
}

export interface InterpolatedCell {
  powerW: number;
  energyPerRequestJ: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  tbtP50Ms: number;
  tbtP99Ms: number;
  meetsSlo: boolean;
}

const METRICS = ['powerW', 'energyPerRequestJ', 'ttftP50Ms', 'ttftP99Ms', 'tbtP50Ms', 'tbtP99Ms'] as const;

/**
 * Bilinear interpolation (load x clock) of a profile cell; exact on grid points. meetsSlo is
 * load <= maxLoadOf(...) (the same answer as isFeasible), so it never disagrees with the controllers.
 */
export function interpolate(p: Profile, type: RequestType, tp: number, clockMhz: number, load: number): InterpolatedCell {
  const idx = indexOf(p);
  const loads = loadsOf(p, type, idx);
  checkTpClock(p, tp, clockMhz);
  const maxGrid = loads[loads.length - 1]!;
  if (!(load >= 0 && load <= maxGrid)) throw new ProfileRangeError(`load ${load} req/s is outside the profiled grid of ${type} [0, ${maxGrid}]`);
  const [c0, c1, wc] = bracket(p.clocksMhz, clockMhz);
  const [l0, l1, wl] = bracket(loads, load);
  const byClock = idx.series.get(type)!.get(tp)!;
  const a00 = byClock[c0]![l0]!, a01 = byClock[c0]![l1]!, a10 = byClock[c1]![l0]!, a11 = byClock[c1]![l1]!;
  const out = {} as InterpolatedCell;
  for (const m of METRICS) {
    const v0 = a00[m] * (1 - wl) + a01[m] * wl;
    const v1 = a10[m] * (1 - wl) + a11[m] * wl;
    out[m] = v0 * (1 - wc) + v1 * wc;
  }
  // energy per request is instance power / load (generate.ts): between two non-zero grid loads interpolate the
  // power and divide, since linear interpolation of a ~1/load curve overstates it (by up to ~10% on the grid)
  if (wl > 0 && loads[l0]! > 0) out.energyPerRequestJ = out.powerW / load;
  out.meetsSlo = wc === 0 && wl === 0 ? a00.meetsSlo : load <= maxLoadOf(p, type, tp, clockMhz);
  return out;
}

/**
 * The latencies to read at a load the SLO allows (load <= maxLoadOf): the interpolated cell when it meets the
 * type's SLO, else the cell at the highest grid load below `load` whose (clock-interpolated) cell does (the load-0
 * cell at worst). Between a feasible grid load and a saturated one (latencies of ~1e6 ms) linear interpolation
 * blends the saturation sentinel in: a load just under the SLO limit would read minutes of TTFT. Above the
 * SLO limit the interpolated cell is returned as is (the load is infeasible; its latencies say so).
 */
export function latencyWithinSlo(p: Profile, type: RequestType, tp: number, clockMhz: number, load: number): InterpolatedCell {
  const at = interpolate(p, type, tp, clockMhz, load);
  const spec = p.requestTypes.find((x) => x.type === type);
  const ok = (c: InterpolatedCell) => !spec || (c.ttftP99Ms <= spec.ttftSloMs && c.tbtP99Ms <= spec.tbtSloMs);
  if (ok(at) || load > maxLoadOf(p, type, tp, clockMhz)) return at;
  const loads = p.loads[type] ?? [];
  for (let i = loads.length - 1; i >= 0; i--) {
    if (!(loads[i]! < load)) continue;
    const c = interpolate(p, type, tp, clockMhz, loads[i]!);
    if (ok(c)) return c;
  }
  return interpolate(p, type, tp, clockMhz, 0);
}

/**
 * One (type, tp, clock) slice of the profile's power surface, for evaluating many loads at one point of the
 * other axes (a mix curve): the two bracketing grid clocks' power rows and the clock weight. Memoised;
 * seriesPowerW(s, load) === interpolate(p, type, tp, clockMhz, load).powerW bit for bit (same arithmetic).
 * Throws ProfileRangeError like interpolate for an unprofiled type, TP or a clock outside the grid.
 */
export interface PowerSeries {
  loads: readonly number[];
  /** power (W) at each grid load, at the lower / upper bracketing grid clock (the same row on a grid clock). */
  p0: Float64Array;
  p1: Float64Array;
  /** weight of the upper clock, 0 on a grid clock. */
  wc: number;
}

export function powerSeries(p: Profile, type: RequestType, tp: number, clockMhz: number): PowerSeries {
  const idx = indexOf(p);
  const hit = idx.seriesMemo.get(type)?.get(tp)?.get(clockMhz);
  if (hit) return hit;
  const loads = loadsOf(p, type, idx);
  checkTpClock(p, tp, clockMhz);
  const [c0, c1, wc] = bracket(p.clocksMhz, clockMhz);
  const byClock = idx.series.get(type)!.get(tp)!;
  const s: PowerSeries = { loads, p0: Float64Array.from(byClock[c0]!, (c) => c.powerW), p1: Float64Array.from(byClock[c1]!, (c) => c.powerW), wc };
  return memoSet3(idx.seriesMemo, type, tp, clockMhz, s);
}

/** Stores v at memo[a][b][c] (nested maps: these memos sit on the controllers' hot paths), returns v. */
function memoSet3<A, B, C, V>(memo: Map<A, Map<B, Map<C, V>>>, a: A, b: B, c: C, v: V): V {
  let byA = memo.get(a);
  if (!byA) {
    byA = new Map();
    memo.set(a, byA);
  }
  let byB = byA.get(b);
  if (!byB) {
    byB = new Map();
    byA.set(b, byB);
  }
  byB.set(c, v);
  return v;
}

/** Power (W) on a series at `load` (interpolate's powerW, bit for bit); ProfileRangeError outside the load grid. */
export function seriesPowerW(s: PowerSeries, load: number): number {
  const loads = s.loads;
  const n = loads.length;
  if (!(load >= 0 && load <= loads[n - 1]!)) throw new ProfileRangeError(`load ${load} req/s is outside the profiled grid [0, ${loads[n - 1]}]`);
  // bracket() inlined (no tuple)
  let l0 = n - 1, l1 = l0, wl = 0;
  for (let i = 0; i < n; i++) {
    if (load === loads[i]) { l0 = l1 = i; break; }
    if (load < loads[i]!) { l0 = i - 1; l1 = i; wl = (load - loads[i - 1]!) / (loads[i]! - loads[i - 1]!); break; }
  }
  const v0 = s.p0[l0]! * (1 - wl) + s.p0[l1]! * wl;
  const v1 = s.p1[l0]! * (1 - wl) + s.p1[l1]! * wl;
  return v0 * (1 - s.wc) + v1 * s.wc;
}

/**
 * Highest load (req/s per instance) of this type meeting the SLO at (tp, clock). Between grid clocks it
 * interpolates linearly when max load rises with clock, and otherwise takes the lower of the two neighbours.
 */
export function maxLoadOf(p: Profile, type: RequestType, tp: number, clockMhz: number): number {
  const idx = indexOf(p);
  // memoised per (type, tp, clock): the controllers ask the same few points over and over
  const hit = idx.maxLoadMemo.get(type)?.get(tp)?.get(clockMhz);
  if (hit !== undefined) return hit;
  loadsOf(p, type, idx);
  checkTpClock(p, tp, clockMhz);
  const [c0, c1, wc] = bracket(p.clocksMhz, clockMhz);
  const m0 = idx.maxLoad.get(key(type, tp, p.clocksMhz[c0]!))!;
  const m1 = idx.maxLoad.get(key(type, tp, p.clocksMhz[c1]!))!;
  const v = wc === 0 ? m0 : m1 >= m0 ? m0 + (m1 - m0) * wc : Math.min(m0, m1);
  return memoSet3(idx.maxLoadMemo, type, tp, clockMhz, v);
}

/** Whether an instance at (tp, clock) meets the SLO of this type at this load. */
export function isFeasible(p: Profile, type: RequestType, tp: number, clockMhz: number, load: number): boolean {
  if (!(load >= 0)) throw new ProfileRangeError(`load must be >= 0, got ${load}`);
  const m = maxLoadOf(p, type, tp, clockMhz);
  return m > 0 && load <= m;
}

/** Instance power (W, all its GPUs) with the model loaded and no requests, at (tp, clock). */
export function idlePowerOf(p: Profile, tp: number, clockMhz: number): number {
  const idx = indexOf(p);
  const hit = idx.idleMemo.get(tp)?.get(clockMhz);
  if (hit !== undefined) return hit;
  checkTpClock(p, tp, clockMhz);
  const [c0, c1, wc] = bracket(p.clocksMhz, clockMhz);
  const get = (ci: number) => {
    const f = p.clocksMhz[ci]!;
    const v = idx.idle.get(`${tp}|${f}`);
    if (v !== undefined) return v * tp;
    // fall back to the load-0 power of any type (identical by construction: nothing is running)
    const t = p.requestTypes[0]!.type;
    return idx.cells.get(key(t, tp, f))![0]!.powerW;
  };
  const v = get(c0) * (1 - wc) + get(c1) * wc;
  let byClock = idx.idleMemo.get(tp);
  if (!byClock) {
    byClock = new Map();
    idx.idleMemo.set(tp, byClock);
  }
  byClock.set(clockMhz, v);
  return v;
}
