/**
 * The simulator's memoised dispatch: load estimates on a +-5% geometric grid (so a pool's recurring states
 * share one scoring), and src/policy chooseInstance / dispatchRequest with their scores memoised on it.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import type { InstanceView } from '../policy/types.ts';
import { chooseInstance, instantHeadroom, leastOutstandingPerGpu } from '../policy/dispatch.ts';

/**
 * dispatch load estimates are rounded to a geometric grid (steps of LOAD_STEP, i.e. +-5%) and loads under
 * LOAD_FLOOR req/s (a fifth of one request's contribution) are dropped, so instance scores memoise.
 */
const LOAD_STEP = Math.log(1.1);
export const LOAD_FLOOR = 0.02;
const quantiseSlow = (j: number) => Number(Math.exp(j * LOAD_STEP).toPrecision(6));
/** quantiseLoad's values (and their key strings) by grid step j, tabulated for j in [-Q_OFF, Q_LEN - Q_OFF): toPrecision was ~20% of a fluid week's instance epochs. */
const Q_OFF = 64, Q_LEN = 1024;
const Q_VAL = Array.from({ length: Q_LEN }, (_, i) => quantiseSlow(i - Q_OFF));
/** grid slot (j + Q_OFF) of quantiseLoad(x); -1: x under the floor (quantiseLoad 0); -2: off the table (NaN, or beyond ~1e39). */
export const quantSlot = (x: number) => {
  if (x < LOAD_FLOOR) return -1;
  const i = Math.round(Math.log(x) / LOAD_STEP) + Q_OFF;
  return i >= 0 && i < Q_LEN ? i : -2;
};
export const quantiseLoad = (x: number) => {
  const i = quantSlot(x);
  return i >= 0 ? Q_VAL[i]! : i === -1 ? 0 : quantiseSlow(Math.round(Math.log(x) / LOAD_STEP));
};

export type DispatchScore = { e: number; u: number } | null;

/**
 * src/policy chooseInstance over `views`, with each instance's score (the policy's marginal energy and
 * utilisation after, from a call of chooseInstance on that one view) memoised on (type, TP, clock, load):
 * mixCurve is costly and a pool sees the same few states again and again. The argmin and its tie-break are
 * chooseInstance's own (energy within 1e-9, then utilisation, then id); test/unit/sim-engine.test.ts checks
 * that this returns exactly what chooseInstance returns on the same views.
 */
export function dispatchQuantised(req: { type: RequestType }, views: InstanceView[], profile: Profile, requestRate: number, memo: Map<string, DispatchScore>, headroom = 0, prefer?: (eligibleIds: string[]) => string | undefined): string | null {
  // chooseInstance's two tiers (instantaneous headroom at the current clock, then at max clock), each the
  // least marginal energy under the rate cap; the rate score (state-free but for the EWMA load) is memoised
  const fmax = profile.clocksMhz[profile.clocksMhz.length - 1]!;
  const scores: (DispatchScore | undefined)[] = views.map(() => undefined);
  const score = (k: number): DispatchScore => {
    let sc = scores[k];
    if (sc !== undefined) return sc;
    const v = views[k]!;
    let key = `${req.type}|${v.tp}|${v.clockMhz}`;
    for (const t of REQUEST_TYPES) if (v.load[t]) key += `|${t}${v.load[t]}`;
    sc = memo.get(key);
    if (sc === undefined) {
      try {
        const d = chooseInstance(req, [v], profile, { requestRate, headroom, instantaneous: false });
        sc = 'id' in d ? { e: d.marginalEnergyJ, u: d.utilisationAfter } : null;
      } catch {
        // a TP or type outside the profile: no score (dispatchRequest's overflow choice, as live)
        sc = null;
      }
      if (memo.size > 500_000) memo.clear();
      memo.set(key, sc);
    }
    return (scores[k] = sc);
  };
  for (const tier of [0, 1]) {
    let best: { id: string; e: number; u: number } | null = null;
    const eligible: string[] = [];
    views.forEach((v, k) => {
      if (!v.healthy) return;
      const clock = tier === 0 && profile.clocksMhz.includes(v.clockMhz) ? v.clockMhz : fmax;
      let room: boolean;
      try {
        room = instantHeadroom(v, req.type, profile, clock);
      } catch {
        room = false; // a TP or type outside the profile (as dispatchRequest: the overflow choice)
      }
      if (!room) return;
      const sc = score(k);
      if (!sc) return;
      const { e, u } = sc;
      if (prefer) eligible.push(v.id);
      if (!best || e < best.e - 1e-9 || (Math.abs(e - best.e) <= 1e-9 && (u < best.u - 1e-12 || (Math.abs(u - best.u) <= 1e-12 && v.id < best.id)))) best = { id: v.id, e, u };
    });
    if (best) return (prefer && prefer(eligible)) || (best as { id: string }).id;
  }
  return null;
}

/**
 * src/policy dispatchRequest with chooseInstance's scores memoised (dispatchQuantised): the same answer as
 * dispatchRequest(req, views, profile, [req.type], { requestRate, headroom }) on the same views (a test checks it).
 * The memo is per simulation (one headroom).
 */
export function dispatchRequestMemo(req: { type: RequestType }, views: InstanceView[], profile: Profile, requestRate: number, memo: Map<string, DispatchScore>, headroom = 0): { id: string; atCapacity: boolean } {
  const id = dispatchQuantised(req, views, profile, requestRate, memo, headroom);
  if (id) return { id, atCapacity: false };
  return { id: leastOutstandingPerGpu(views).id, atCapacity: true };
}
