/**
 * The simulator's policy layer: every decision the simulated cluster takes is ONE call into src/policy,
 * the code the live actors run (actors/common/policy.ts adapts the same functions to wire messages). The
 * bindings below are the very same function objects as src/policy's (a test checks identity), not copies.
 * The only function of its own here is `mixedPowerW`, the fluid simulator's power read (an accounting
 * helper, not a decision).
 */
import type { Profile } from '../model/profile-types.ts';
import { interpolate, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import { utilisationOf, typesOf, totalLoad } from '../policy/energy.ts';
import type { LoadByType } from '../policy/types.ts';

export { planCluster } from '../policy/cluster.ts';
export { planSharding, overheadTable } from '../policy/sharding.ts';
export { chooseClock } from '../policy/frequency.ts';
export { chooseInstance } from '../policy/dispatch.ts';
export { emergencyStep, initialEmergencyState } from '../policy/emergency.ts';
export { solveEq1 } from '../policy/milp.ts';

/** Utilisation of one instance (sum of load_t / SLO max load_t): src/policy's own function. */
export const utilisation = utilisationOf;

/**
 * Instance power (W) at a mixed load, with src/policy/energy.ts's model (busy-time-weighted single-type
 * powers at the same utilisation), extended past the SLO cap (u > 1) up to each type's profile grid so
 * the fluid simulator can price an overloaded instance.
 */
export function mixedPowerW(p: Profile, tp: number, clockMhz: number, load: LoadByType): number {
  const types = typesOf(load);
  if (types.length === 0) return idlePowerOf(p, tp, clockMhz);
  const total = totalLoad(load);
  let k = 0;
  const ml: number[] = [];
  for (const t of types) {
    const m = maxLoadOf(p, t, tp, clockMhz);
    const grid = p.loads[t]!;
    // a type infeasible at this (tp, clock) still runs: use its grid top as its capacity
    ml.push(m > 0 ? m : grid[grid.length - 1]);
    k += load[t]! / total / ml[ml.length - 1];
  }
  const u = total * k;
  let w = 0;
  types.forEach((t, i) => {
    const grid = p.loads[t]!;
    const c = load[t]! / total / ml[i] / k;
    w += c * interpolate(p, t, tp, clockMhz, Math.min(u * ml[i], grid[grid.length - 1])).powerW;
  });
  return w;
}
