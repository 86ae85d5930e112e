/**
 * The simulator's sleep-mode standby (src/sim/sleep-standby.ts, SimOptions.sleepStandby): the pool leader never
 * dispatches to a sleeping instance (its status says 'sleeping') and holds a request while the only one wakes; a
 * run with it on puts instances to sleep and wakes them, charges their GPUs the unloaded idle power while asleep
 * (the asleep energy is the asleep GPU-hours at 69 W), and accounts for every request.
 */
import { describe, it, expect } from 'vitest';
import { SimPoolLeader, type LeaderInstance } from '../../src/sim/pool-leader.ts';
import { simulate } from '../../src/sim/index.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import type { SimOptions } from '../../src/sim/types.ts';

const cfg: PoolMachineConfig = {
  pool: 'pool-all', holder: 'sim', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 10_000,
  initialTp: 1, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
class Inst implements LeaderInstance {
  clockMhz = 1980;
  tp = 1;
  /** its instance machine's lifecycle: 'sleeping' from the sleep command until it has woken (src/policy/machines/instance-sleep.ts). */
  brain = { s: { lifecycle: 'ready' }, report: () => ({ queued: 0, running: 0, loadByType: {}, pendingPrefillTokens: 0 }) };
  constructor(public id: string, public state: LeaderInstance['state'] = 'active') {}
}
const req = (id: string): InferenceRequest => ({ v: 1, id, model: '', kind: 'completion', inputTokens: 100, maxTokens: 50, arrivalMs: 0, giveUpAtMs: 600_000, streamSubject: '', type: 'SS', moves: 0 });

describe('pool leader and sleeping instances', () => {
  it('dispatches only to awake instances; with none awake it holds the request and answers once one has woken', () => {
    const a = new Inst('a'), b = new Inst('b');
    a.brain.s.lifecycle = 'sleeping'; // asleep
    const answers: [string, Admission][] = [];
    const l = new SimPoolLeader<Inst>(cfg, ['SS'], { admit: (i, r) => ({ v: 1, id: r.id, ok: true, instance: i.id }), answer: (id, x) => answers.push([id, x]) }, 0);
    for (let k = 0; k < 4; k++) expect(l.dispatch(req(`r${k}`), [a, b], k * 10)?.instance).toBe('b');
    b.brain.s.lifecycle = 'sleeping'; // finishing its requests before its engine sleeps
    // a: waking (still 'sleeping')
    expect(l.dispatch(req('held'), [a, b], 1000)).toBeUndefined();
    expect(l.holding()).toBe(true);
    a.brain.s.lifecycle = 'ready'; // woken
    l.tick([a, b], 2600);
    expect(answers).toMatchObject([['held', { id: 'held', ok: true, instance: 'a' }]]);
  });
});

describe('simulate: sleep standby', () => {
  // ten minutes of the coding trace (bursts between quiet minutes) on 12 servers, the shipped coding profile; the
  // forecast remembers a burst for 60 s (the default 180 s sleeps little here: the mechanics are under test)
  const run = (sleepStandby: 'on' | 'off') => simulate({
    policy: 'dynamollm', fidelity: 'step', model: 'llama2-70b', gpu: 'h100', servers: 12, rateScale: 0.81, sleepStandby, sleepStandbyWindow: { windowMs: 60_000 },
    profilePath: 'profiles/llama2-70b.h100.code.json', trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_code.csv', durationMs: 600_000 },
  } satisfies SimOptions);

  it('sleeps and wakes instances, charges them 69 W a GPU asleep, and serves every request', async () => {
    const [off, on] = await Promise.all([run('off'), run('on')]);
    expect(off.sleepStandby).toBeUndefined();
    expect(off.energyBreakdown!.instanceAsleepKWh).toBeUndefined();
    const s = on.sleepStandby!;
    expect(s.sleeps).toBeGreaterThan(0);
    expect(s.wakes).toBeGreaterThan(0);
    expect(s.wakes).toBeLessThanOrEqual(s.sleeps);
    expect(s.asleepGpuHours).toBeGreaterThan(0);
    expect(on.energyBreakdown!.instanceAsleepKWh!).toBeCloseTo((s.asleepGpuHours * 69) / 1000, 6);
    expect(on.energyBreakdown!.instanceAsleepKWh!).toBeLessThanOrEqual(on.energyBreakdown!.instanceIdleKWh);
    // asleep instead of idle at loaded idle power: less idle energy and less energy in all
    expect(on.energyBreakdown!.instanceIdleKWh).toBeLessThan(off.energyBreakdown!.instanceIdleKWh);
    expect(on.energyKWh).toBeLessThan(off.energyKWh);
    const served = (r: typeof on) => Object.values(r.latency.byType).reduce((a, x) => a + (x?.requests ?? 0), 0);
    for (const r of [off, on]) expect(served(r) + r.rejected + r.refusedOverContext + r.unservable).toBe(r.requests);
  }, 120_000);
});
