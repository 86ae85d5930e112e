/**
 * A pool at its SLO cap passes a request on to the next pool of its chain (InferenceRequest.spill, policy spillPasses).
 * The cluster plan gives a pool floor(D) servers and sizes the next pool of the chain for the rest of the load; a
 * pool that took every request at its cap kept that rest. On the synthetic week's first day at step fidelity (docs/
 * SIMULATION.md) the one-server ML pool then served ~1.8 req/s of ML on one TP8 instance, its engine slots never
 * full (no queue: no emergency step, no refusal), every M-input first token at 500-600 ms against the 400-ms SLO for
 * three hours, while the LL pool next in its chain had room. Driven event by event on a virtual clock: the pool machine (src/policy/machines/pool.ts), the
 * gateway's routing (src/policy/machines/router.ts routerPick) and the offers along a chain (spillPasses).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { initialRouterState, routerPick, routerStatus, routerTable, type RouterConfig } from '../../src/policy/machines/router.ts';
import { routePools, spillPasses } from '../../src/policy/machines/cluster.ts';
import type { InstanceStatus, RoutingTable } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const POOL = 'pool-ML';
const INST = `${POOL}-node-0-g0x8`;
const HEADROOM = 0.2; // the simulator's and the live default
const FMAX = profile.clocksMhz[profile.clocksMhz.length - 1]!;
/** what one TP8 instance carries of ML within its SLO at max clock, with the headroom kept free, req/s */
const CAP = maxLoadOf(profile, 'ML', 8, FMAX) * (1 - HEADROOM);

const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', profile, headroom: HEADROOM, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 8, moveQueueAbove: 16, retryAfterS: 1, planner: 'heuristic',
};

let n = 0;
function req(o: Partial<InferenceRequest> = {}): InferenceRequest {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 900, maxTokens: 600, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'ML' as RequestType, ...o };
}

let seq = 0;
function status(loadML: number, o: Partial<InstanceStatus> = {}): InstanceStatus {
  return {
    v: 1, id: INST, pool: POOL, node: 'node-0', tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7], state: 'ready', startedMs: T0, seq: ++seq, sentMs: T0,
    clockMhz: FMAX, maxClockMhz: FMAX, queued: 0, running: 30, queuedIds: [], runningIds: [], loadByType: { ML: loadML }, ...o,
  };
}

class Drive {
  s: PoolMachineState = initialPoolState(['ML']);
  ref = 0;
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const { state, effects } = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = state;
    return effects;
  }
  dispatch(ms: number, r: InferenceRequest): PoolEffect[] {
    return this.at(ms, { type: 'dispatch', ref: ++this.ref, req: r });
  }
}
const admits = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [e.instance] : []));
const replies = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'reply' ? [e.admission] : []));

function leaderWithOneInstance(loadML: number): Drive {
  const d = new Drive();
  d.at(0, { type: 'start' });
  d.at(0, { type: 'lead', term: 1 });
  d.at(10, { type: 'status', status: status(loadML) });
  return d;
}

describe('pool at its SLO cap: the request goes on to the next pool of its chain', () => {
  it('the one-server ML pool of the first day, at 1.8 req/s of ML (above its cap): a request that may spill is refused as overloaded; the last offer takes it', () => {
    expect(CAP).toBeGreaterThan(0.5);
    expect(CAP).toBeLessThan(1.8); // the day's ML load is above what one TP8 carries within its SLO
    const d = leaderWithOneInstance(1.8);
    // the intake's first pass: a longer pool (pool-LS) follows in the chain
    const spilled = req({ spill: true });
    const fx = d.dispatch(20, spilled);
    expect(admits(fx)).toEqual([]);
    const [a] = replies(fx);
    expect(a).toMatchObject({ id: spilled.id, ok: false, error: { code: 'overloaded', retryable: true } });
    expect(a!.error!.message).toMatch(/every instance at its SLO cap/);
    // every pool of the chain refused: the request's own pool takes it at its cap (spill absent)
    const again = d.dispatch(21, { ...spilled, spill: undefined });
    expect(admits(again)).toEqual([INST]);
  });

  it('a pool under its cap takes a request that may spill; above it (its next status), only the offer without spill', () => {
    const d = leaderWithOneInstance(CAP / 2);
    expect(admits(d.dispatch(20, req({ spill: true })))).toEqual([INST]);
    // the instance's load rises above the cap (its next status): the next spillable request goes on
    d.at(500, { type: 'status', status: status(1.8) });
    expect(replies(d.dispatch(510, req({ spill: true })))[0]).toMatchObject({ ok: false, error: { code: 'overloaded' } });
    expect(admits(d.dispatch(520, req()))).toEqual([INST]);
  });

  it('the gateway\'s routing passes the same pool on (routerPick with spill), and the offers along a chain end with the chain again without spill', () => {
    const rc: RouterConfig = { profile, headroom: HEADROOM, deadAfterMs: 3000 };
    const s = initialRouterState();
    const routes: RoutingTable['routes'] = { ML: POOL, LS: 'pool-LS', LM: 'pool-LM', LL: 'pool-LL' };
    routerTable(s, { v: 1, routes, pools: [], epoch: 1, issuedBy: 'cm-0', sentMs: T0 }, T0);
    routerStatus(s, status(1.8), T0 + 10);
    const r = { type: 'ML' as RequestType, inputTokens: 900, prompt: 'x' };
    expect(routerPick(s, POOL, r, new Set(), T0 + 20, rc, true)).toBeUndefined();
    expect(routerPick(s, POOL, r, new Set(), T0 + 20, rc)).toBe(INST);
    const chain = routePools(new Map(Object.entries(routes) as [RequestType, string][]), () => false, 'ML', () => true);
    expect(chain).toEqual([POOL, 'pool-LS', 'pool-LM', 'pool-LL']); // the pools after ML's in the plan's order (policy longerType)
    expect(spillPasses(chain.slice(0, 2))).toEqual([{ pool: POOL, spill: true }, { pool: 'pool-LS', spill: true }, { pool: POOL, spill: false }, { pool: 'pool-LS', spill: false }]);
    expect(spillPasses(['pool-LL'])).toEqual([{ pool: 'pool-LL', spill: false }]);
  });
});
