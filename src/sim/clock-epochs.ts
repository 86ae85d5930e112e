/**
 * The instance epoch's clocks (./engine.ts): at step fidelity the instance machines' own epoch; in fluid the
 * machine's rule on each instance's share of its pool's arrivals; the oracle's clock for the known coming load.
 */
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import type { LoadByType } from '../policy/types.ts';
import * as decide from './decide.ts';
import { closeWindow, decideClock } from '../policy/machines/instance.ts';
import { LOAD_FLOOR, quantSlot, quantiseLoad } from './quantise.ts';
import { SimControl } from './control.ts';
import { MACHINE_TIME, TYPE_INDEX, type SimInstance, type SimPool } from './state.ts';

const sameArr = (a: Float64Array, b: Float64Array) => {
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
};
/**
 * Oracle clocks target this fraction of the SLO (env SIM_ORACLE_CLOCK_MARGIN for experiments; default 0.9):
 * the profile's p99 cells are steady-state, and the oracle's MILP-sized pools (one TP2 instance for a
 * small type) run so close to them that Poisson bursts in the core push p99 TBT 4-6% over at margin 1.
 */
const ORACLE_CLOCK_SLO_MARGIN = Number(process.env.SIM_ORACLE_CLOCK_MARGIN ?? 0.9);

export abstract class SimClocks extends SimControl {
  /**
   * Instance epoch: each active instance's epoch closes its load window by its machine's rule (policy closeWindow): in
   * step fidelity its machine's own epoch, in fluid the same function on its share of its pool's arrivals. Then the
   * clock: the machine's (step: its epoch; fluid: fluidClockEpoch) or the oracle's (oracleClockEpoch).
   */
  protected instanceEpoch(now: number): void {
    const oracle = this.knobs.oracle && this.knobs.dynamicClock;
    // the clock's view of each instance's load at this epoch (policy closeWindow's forClock)
    const views = new Map<SimInstance, LoadByType>();
    for (const pool of this.pools)
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        if (inst.brain) {
          // the view the machine's epoch closes its window on (it takes the same closeWindow next)
          if (oracle) views.set(inst, closeWindow(inst.brain.s, now, MACHINE_TIME).forClock);
          inst.brain.step({ type: 'epoch' }, now);
        } else if (inst.window) {
          const { window, forClock } = closeWindow(inst.window, now, MACHINE_TIME);
          inst.window = window;
          views.set(inst, forClock);
        }
      }
    if (!this.knobs.dynamicClock) return;
    if (oracle) this.oracleClockEpoch(now, views);
    else if (this.fidelity === 'fluid') this.fluidClockEpoch(now, views);
  }

  /**
   * The oracle's clock (fluid and step): chooseClock on each instance's machine load (its EWMA), provisioned for its
   * recent peak, the clock's view of its load (max(EWMA, the epoch's rate)) at this and the previous epoch, and for
   * its share of the pool's known load this and next minute; not below what its prefill backlog needs.
   */
  protected oracleClockEpoch(now: number, views: Map<SimInstance, LoadByType>): void {
    type Rep = { tp: number; clock: number; load: Float64Array; peak: Float64Array; mhz: number };
    const ld = new Float64Array(9);
    const peakX = this.clockPeakX;
    for (const pool of this.pools) {
      // fluid gives every instance of a (pool, TP, clock) group the same load, so its chooseClock inputs are
      // identical: an instance whose (TP, clock, load, peak) equal an earlier one's in this epoch takes its answer
      // (exact equality, so the decision is the one chooseClock would give it; saves the key building per instance)
      const reps: Rep[] = [];
      const known = this.oracleKnownRates(pool, now);
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        const view = views.get(inst) ?? {};
        const ewma = (inst.brain ? inst.brain.s.load : inst.window?.load) ?? {};
        const prev = inst.clockPrev ?? {};
        inst.clockPrev = view;
        for (let k = 0; k < 9; k++) {
          const t = REQUEST_TYPES[k];
          ld[k] = ewma[t] ?? 0;
          peakX[k] = Math.max(view[t] ?? 0, prev[t] ?? 0, known[k] * maxLoadOf(this.p, t, inst.tp, this.maxClock));
        }
        const rep = reps.find((r) => r.tp === inst.tp && r.clock === inst.clockMhz && sameArr(r.load, ld) && sameArr(r.peak, peakX));
        let mhz = rep?.mhz ?? this.oracleClock(inst.tp, ld, peakX);
        if (!rep && reps.length < 8) reps.push({ tp: inst.tp, clock: inst.clockMhz, load: ld.slice(), peak: peakX.slice(), mhz });
        // not below what the prefill backlog needs (a long prompt still prefilling)
        mhz = Math.max(mhz, this.prefillFloor(inst, now));
        if (mhz !== inst.clockMhz) this.scheduleClock(inst, mhz, now);
      }
    }
  }

  /**
   * chooseClock for the oracle: the load `ld` and the peak `peakX` by type index, on the memo grid (+-5%, under 0.02
   * req/s dropped): same-TP instances with nearly the same load share one chooseClock call. The memo key is the grid
   * slots, one UTF-16 code unit each: TP, per type the load's slot + 2 (1: absent) and the peak's code (0 absent, 1 at
   * the floor, slot + 2).
   */
  protected oracleClock(tp: number, ld: Float64Array, peakX: Float64Array): number {
    const codes = this.clockCodes;
    codes[0] = tp;
    let table = true; // every value on the tabulated grid (else: the number-string key of the values)
    for (let k = 0; k < 9; k++) {
      const i = quantSlot(ld[k]);
      if (i === -2) table = false;
      codes[1 + k] = i + 2;
      // a type present under the memo floor counts AT the floor: otherwise a trickle of a short type (spilled
      // into a long pool and split over 20 fluid instances) is invisible to the clock, which then drops to a
      // clock where that type's TTFT SLO is unmeetable (week, dynamollm: LS-pool TP2 at 800 MHz, u = 15)
      if (peakX[k] > 1e-4) {
        const j = quantSlot(peakX[k]);
        if (j === -2) table = false;
        codes[10 + k] = j === -1 ? 1 : j + 2;
      } else codes[10 + k] = 0;
    }
    // chooseClock's inputs: the quantised load, and the peak (a present type at least at the floor)
    const q: LoadByType = {};
    const peak: LoadByType = {};
    for (let k = 0; k < 9; k++) {
      const v = quantiseLoad(ld[k]);
      if (v > 1e-6) q[REQUEST_TYPES[k]] = v;
      if (peakX[k] > 1e-4) peak[REQUEST_TYPES[k]] = Math.max(LOAD_FLOOR, quantiseLoad(peakX[k]));
    }
    let key: string;
    if (table) key = String.fromCharCode.apply(null, codes as unknown as number[]);
    else {
      // off the table (a load beyond ~1e39 req/s, or NaN): the values' own strings
      key = `${tp}`;
      for (const t of REQUEST_TYPES) if (q[t]) key += `,${t}${q[t]}`;
      key += '/';
      for (const t of REQUEST_TYPES) if (peak[t]) key += `,${t}${peak[t]}`;
    }
    let mhz = this.clockMemo.get(key);
    if (mhz === undefined) {
      if (this.clockMemo.size > 1_000_000) this.clockMemo.clear();
      this.clockMemo.set(key, (mhz = decide.chooseClock({ profile: this.p, tp, loadByType: q, peakLoadByType: peak, sloScale: this.sloScale * ORACLE_CLOCK_SLO_MARGIN, headroom: this.headroom }).clockMhz));
    }
    return mhz;
  }

  /**
   * Fluid: each instance's clock by the live instance machine's rule (src/policy/machines/instance.ts): decideClock on
   * the clock's view of its epoch's load (`views`: max(EWMA, the epoch's rate), policy closeWindow), memoised on the
   * +-5% load grid of ./quantise.ts. Fluid has no prompts in flight, so no prefill floor.
   */
  protected fluidClockEpoch(now: number, views: Map<SimInstance, LoadByType>): void {
    const codes = this.clockCodes;
    for (const [inst, forClock] of views) {
      codes[0] = inst.tp;
      let table = true;
      // a type the machine counts (over 1e-3 req/s) but under the grid's floor counts AT the floor: a trickle
      // of a short type spilled into a long pool and split over many instances must still hold the clock up
      for (let k = 0; k < 9; k++) {
        const v = forClock[REQUEST_TYPES[k]] ?? 0;
        const i = quantSlot(v);
        if (i === -2) table = false;
        codes[1 + k] = v > 1e-3 ? (i === -1 ? 1 : i + 2) : 0;
      }
      const key = table ? String.fromCharCode.apply(null, codes.subarray(0, 10) as unknown as number[]) : undefined;
      let mhz = key === undefined ? undefined : this.clockMemo.get(key);
      if (mhz === undefined) {
        const q: LoadByType = {};
        for (const t of REQUEST_TYPES) {
          const v = forClock[t] ?? 0;
          if (v > 1e-3) q[t] = table ? Math.max(LOAD_FLOOR, quantiseLoad(v)) : v;
        }
        mhz = decideClock({ profile: this.p, tp: inst.tp, headroom: this.headroom }, q, this.p.clocksMhz)?.clockMhz ?? inst.clockMhz;
        if (key !== undefined) {
          if (this.clockMemo.size > 1_000_000) this.clockMemo.clear();
          this.clockMemo.set(key, mhz);
        }
      }
      if (mhz !== inst.clockMhz) this.scheduleClock(inst, mhz, now);
    }
  }

  /**
   * Oracle only: per type, the pool's KNOWN arrival rate over the current and next minute (the per-minute
   * template by true type, the larger bin) divided by the pool's SLO throughput at max clock (sum over its
   * active instances): times an instance's own max load, its share when load is split by capacity. The oracle
   * provisions each 5-s clock for max(that share, the observed recent peak): the future it knows, plus the
   * within-minute burst and the uneven energy-order dispatch it does not model.
   */
  protected oracleKnownRates(pool: SimPool, now: number): Float64Array {
    const out = new Float64Array(9);
    const act = pool.instances.filter((i) => i.state === 'active');
    const b0 = Math.floor(now / 60000);
    for (const t of pool.types) {
      const a = this.template.perMin[t];
      const rate = Math.max(a[b0] ?? 0, a[b0 + 1] ?? 0) / 60;
      if (!(rate > 0)) continue;
      let capSum = 0;
      for (const i of act) capSum += maxLoadOf(this.p, t, i.tp, this.maxClock);
      if (capSum > 0) out[TYPE_INDEX[t]] = rate / capSum;
    }
    return out;
  }

  protected scheduleClock(inst: SimInstance, mhz: number, now: number): void {
    if (inst.brain) {
      // the oracle's clock reaches the instance as a pool's set_clock: the machine arbitrates (emergency first)
      inst.brain.step({ type: 'pool_set_clock', clockMhz: mhz, reason: 'oracle clock' }, now);
      return;
    }
    this.setClockNow(inst, mhz, now); // fluid: 65 ms is below the fluid tick
    this.reconf.clock++;
  }

  /** the clock a prefill backlog needs at least (./step-model.ts). */
  protected abstract prefillFloor(inst: SimInstance, now: number): number;
}
