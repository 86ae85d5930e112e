/**
 * Fluid's pool-level spill (src/sim/fluid-model.ts fluidSpill) follows intake's walk (policy spillPasses): a pool at
 * its SLO cap passes its excess on to the next longer pool, and what the last pool cannot take either goes back to
 * the pool each request came to first, which queues it there at its cap. The last pool keeps its own type's
 * arrivals over its cap (their home), and no request is lost or counted twice.
 *
 * Three pools, as the coding hour's plan leaves them: MS on one TP8 instance, LS on one TP8 instance, LL on one TP2
 * instance. MS arrives at 40 req/s (its TP8 cap at max clock is ~7.3 req/s), LS at 0.1 req/s, LL at 0.5 req/s (its
 * TP2 cap at max clock is ~0.24 req/s). Ticks of 5 s, until the pools' accepted rates settle.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { Simulation } from '../../src/sim/engine.ts';
import { perfModelOfProfile } from '../../src/model/index.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import type { SimInstance, SimPool } from '../../src/sim/state.ts';
import type { TpDegree } from '../../src/policy/types.ts';

const profile = profileFor('llama2-70b', 'h100');
const MS = 3, LS = 6, LL = 8; // REQUEST_TYPES order
const DT_S = 5;

class Spill extends Simulation {
  install(pools: SimPool[]): void {
    this.pools = pools;
  }
  spill(counts: Map<SimPool, Float64Array>): void {
    this.fluidSpill(DT_S, counts, new Set(this.pools));
  }
}

function pool(id: string, order: number, tp: TpDegree): SimPool {
  const inst = { id: `${id}-0`, tp, state: 'active' } as unknown as SimInstance;
  return { id, order, types: [], gpus: tp, instances: [inst] };
}

describe('fluid spill: the overflow no pool takes goes home, not to the last pool', () => {
  it('the last pool keeps its own arrivals and its share at its cap of the others; the rest queue at their first pool', () => {
    const sim = new Spill({
      opts: { policy: 'multi-pool', fidelity: 'fluid', model: 'llama2-70b', gpu: 'h100', servers: 2, rateScale: 1, predictorAccuracy: 1, trace: { kind: 'file', path: '-' } },
      profile, perf: perfModelOfProfile(profile), records: () => [], carbonAt: () => 0,
    });
    const ms = pool('pool-MS', 3, 8), ls = pool('pool-LS', 6, 8), ll = pool('pool-LL', 8, 2);
    sim.install([ms, ls, ll]);
    const arrivals = new Map<SimPool, number[]>([[ms, [MS, 40]], [ls, [LS, 0.1]], [ll, [LL, 0.5]]]);
    let counts = new Map<SimPool, Float64Array>();
    for (let tick = 0; tick < 200; tick++) {
      counts = new Map();
      for (const [p, [k, perS]] of arrivals) {
        const c = new Float64Array(9);
        c[k!] = perS! * DT_S;
        counts.set(p, c);
      }
      sim.spill(counts);
    }
    const at = (p: SimPool, k: number) => counts.get(p)?.[k] ?? 0;
    // nothing lost or counted twice
    for (const [k, perS] of [[MS, 40], [LS, 0.1], [LL, 0.5]] as const) expect(at(ms, k) + at(ls, k) + at(ll, k)).toBeCloseTo(perS * DT_S, 9);
    // the last pool keeps its own arrivals, though over its cap
    expect(at(ll, LL)).toBeCloseTo(0.5 * DT_S, 9);
    expect(0.5).toBeGreaterThan(maxLoadOf(profile, 'LL', 2, profile.clocksMhz.at(-1)!));
    // over its cap with its own arrivals alone (u >= 0.5 / its LL cap), it keeps at most 0.8 / u of what reaches it
    const top = profile.clocksMhz.at(-1)!;
    const keepLl = 0.8 / (0.5 / maxLoadOf(profile, 'LL', 2, top));
    expect(at(ll, MS)).toBeLessThanOrEqual(keepLl * 40 * DT_S);
    // the MS pool, over its cap (~0.8 x 7.3 req/s), queues what no pool took: most of the tick's 200 MS requests
    expect(0.8 * maxLoadOf(profile, 'MS', 8, top)).toBeLessThan(40 / 4);
    expect(at(ms, MS)).toBeGreaterThan((40 * DT_S) / 2);
  });
});
