/**
 * The instance epoch's clocks (./engine.ts): at step fidelity the instance machines' own epoch; in fluid the
 * machine's rule on each instance's share of its pool's arrivals; the oracle's clock for the known coming load.
 */
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import type { LoadByType } from '../policy/types.ts';
import * as decide from './decide.ts';
import { decideClock, epochLoad } from '../policy/machines/instance.ts';
import { LOAD_FLOOR, quantSlot, quantiseLoad } from './quantise.ts';
import { SimControl } from './control.ts';
import { TYPE_INDEX, type SimInstance, type SimPool } from './state.ts';

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
  /** Instance epoch: src/policy chooseClock on each instance's load estimate. */
  protected instanceEpoch(now: number): void {
    // step: the instance machines' epoch (the load window, and their clock unless the oracle sets it below)
    if (this.fidelity === 'step') {
      for (const pool of this.pools) for (const inst of pool.instances) if (inst.state === 'active') inst.brain?.step({ type: 'epoch' }, now);
      if (!this.knobs.oracle) return;
    }
    if (!this.knobs.dynamicClock) return;
    if (!this.knobs.oracle) return this.fluidClockEpoch(now);
    // the oracle's clock (fluid and step): chooseClock for the recent peak and the known coming load
    type Rep = { tp: number; clock: number; load: Float64Array; cur: Float64Array; prev: Float64Array; mhz: number };
    for (const pool of this.pools) {
      // fluid gives every instance of a (pool, TP, clock) group the same load, so its chooseClock inputs are
      // identical: an instance whose (TP, clock, load, peaks) equal an earlier one's in this epoch takes its answer
      // (exact equality, so the decision is the one chooseClock would give it; saves the key building per instance)
      const reps: Rep[] = [];
      const known = this.knobs.oracle ? this.oracleKnownRates(pool, now) : null;
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        this.decayLoad(inst, now);
        let rep: Rep | undefined;
        for (const r of reps) {
          if (r.tp === inst.tp && r.clock === inst.clockMhz && sameArr(r.load, inst.load) && sameArr(r.cur, inst.peakCur) && sameArr(r.prev, inst.peakPrev)) {
            rep = r;
            break;
          }
        }
        if (rep) {
          const pc = inst.peakCur, pp = inst.peakPrev, ld = inst.load;
          for (let k = 0; k < 9; k++) {
            pp[k] = pc[k];
            pc[k] = ld[k];
          }
          const m = Math.max(rep.mhz, this.prefillFloor(inst, now));
          if (m !== inst.clockMhz) this.scheduleClock(inst, m, now);
          continue;
        }
        const before: Rep | null = reps.length < 8 ? { tp: inst.tp, clock: inst.clockMhz, load: inst.load.slice(), cur: inst.peakCur.slice(), prev: inst.peakPrev.slice(), mhz: 0 } : null;
        // the load estimate on the memo grid (+-5%, under 0.02 req/s dropped): same-TP instances with nearly the
        // same load share one chooseClock call. The memo key is the grid slots, one UTF-16 code unit each: TP, per
        // type the load's slot + 2 (1: absent) and the peak's code (0 absent, 1 at the floor, slot + 2), below.
        const codes = this.clockCodes;
        codes[0] = inst.tp;
        let table = true; // every value on the tabulated grid (else: the number-string key of the values)
        for (let k = 0; k < 9; k++) {
          const i = quantSlot(inst.load[k]);
          if (i === -2) table = false;
          codes[1 + k] = i + 2;
        }
        // provision for the recent peak (this and the previous epoch's peak of the load estimate), not the mean;
        // the oracle also for its share of the pool's known load this and next minute
        const peakX = this.clockPeakX;
        for (let k = 0; k < 9; k++) {
          const kn = known ? known[k] * maxLoadOf(this.p, REQUEST_TYPES[k], inst.tp, this.maxClock) : 0;
          // a type present under the memo floor counts AT the floor: otherwise a trickle of a short type (spilled
          // into a long pool and split over 20 fluid instances) is invisible to the clock, which then drops to a
          // clock where that type's TTFT SLO is unmeetable (week, dynamollm: LS-pool TP2 at 800 MHz, u = 15)
          const x = Math.max(inst.peakCur[k], inst.peakPrev[k], kn);
          peakX[k] = x;
          if (x > 1e-4) {
            const i = quantSlot(x);
            if (i === -2) table = false;
            codes[10 + k] = i === -1 ? 1 : i + 2;
          } else codes[10 + k] = 0;
          inst.peakPrev[k] = inst.peakCur[k];
          inst.peakCur[k] = inst.load[k];
        }
        // chooseClock's inputs: the quantised load, and the peak (a present type at least at the floor)
        let q: LoadByType | null = null;
        let peak: LoadByType = {};
        const inputs = () => {
          q = {};
          peak = {};
          for (let k = 0; k < 9; k++) {
            const v = quantiseLoad(inst.load[k]);
            if (v > 1e-6) q[REQUEST_TYPES[k]] = v;
            if (peakX[k] > 1e-4) peak[REQUEST_TYPES[k]] = Math.max(LOAD_FLOOR, quantiseLoad(peakX[k]));
          }
          return q;
        };
        let key: string;
        if (table) key = String.fromCharCode.apply(null, codes as unknown as number[]);
        else {
          // off the table (a load beyond ~1e39 req/s, or NaN): the values' own strings
          const qq = inputs();
          key = `${inst.tp}`;
          for (const t of REQUEST_TYPES) if (qq[t]) key += `,${t}${qq[t]}`;
          key += '/';
          for (const t of REQUEST_TYPES) if (peak[t]) key += `,${t}${peak[t]}`;
        }
        let mhz = this.clockMemo.get(key);
        if (mhz === undefined) {
          q ??= inputs();
          if (this.clockMemo.size > 1_000_000) this.clockMemo.clear();
          this.clockMemo.set(key, (mhz = decide.chooseClock({ profile: this.p, tp: inst.tp, loadByType: q, peakLoadByType: peak, sloScale: this.sloScale * (this.knobs.oracle ? ORACLE_CLOCK_SLO_MARGIN : 1), headroom: this.headroom }).clockMhz));
        }
        if (before) reps.push(Object.assign(before, { mhz }));
        // not below what the prefill backlog needs (a long prompt still prefilling)
        mhz = Math.max(mhz, this.prefillFloor(inst, now));
        if (mhz !== inst.clockMhz) this.scheduleClock(inst, mhz, now);
      }
    }
  }

  /**
   * Fluid: each instance's clock by the live instance machine's rule (src/policy/machines/instance.ts): the
   * epoch's arrival rate into its load EWMA (epochLoad), then decideClock on max(EWMA, rate), memoised on the
   * +-5% load grid of ./quantise.ts. Fluid has no prompts in flight, so no prefill floor.
   */
  protected fluidClockEpoch(now: number): void {
    const codes = this.clockCodes;
    for (const pool of this.pools)
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        const dt = Math.max(1e-3, (now - (inst.epochAtMs ?? now)) / 1000);
        const rate: LoadByType = {};
        const a = inst.arrived;
        if (a) for (let k = 0; k < 9; k++) if (a[k] > 0) rate[REQUEST_TYPES[k]] = a[k] / dt;
        a?.fill(0);
        inst.epochAtMs = now;
        const { load, forClock } = epochLoad(inst.ewma ?? {}, rate);
        inst.ewma = load;
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
