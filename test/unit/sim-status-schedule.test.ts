/**
 * The simulated pool dispatch sees its instances as the live dispatch does: each instance publishes its status on its
 * own timer (every 500 ms from its start, SimOptions.instanceStatusPhaseMs for those the cluster starts with), and a
 * dispatch between two statuses reads the load of the last one (plus what it sent since), not the instance's load at
 * the dispatch. On the twin check's clock window the status phases alone move a third of the requests to the other
 * instance (docs/SIMULATION.md, twin check).
 */
import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { SimPoolLeader, type LeaderInstance } from '../../src/sim/pool-leader.ts';
import { parseProfile } from '../../src/model/index.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import type { LoadByType } from '../../src/policy/types.ts';

const profile = parseProfile(JSON.parse(readFileSync('profiles/llama3.1-8b.h100.tp1.json', 'utf8')));
const cfg: PoolMachineConfig = { pool: 'p', holder: 'sim', profile, headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 600_000, initialTp: 1, moveQueueAbove: 16, retryAfterS: 1, planner: 'heuristic' };

type Fake = LeaderInstance & { now: { queued: number; running: number; loadByType: LoadByType; pendingPrefillTokens: number } };
const idle = () => ({ queued: 0, running: 0, loadByType: {}, pendingPrefillTokens: 0 });
function fake(id: string): Fake {
  const f: Fake = { id, tp: 1, clockMhz: 1980, state: 'active', now: idle(), brain: { report: () => f.now } };
  return f;
}
const req = (id: string, at: number): InferenceRequest => ({ v: 1, id, model: '', kind: 'completion', inputTokens: 400, maxTokens: 100, arrivalMs: at, giveUpAtMs: at + 600_000, streamSubject: '', type: 'MS', ttftDeadlineMs: at + 400, moves: 0 });

describe('simulated dispatch: each instance publishes its status on its own timer', () => {
  it('a dispatch between two statuses reads the last status, not the instance as it is at the dispatch', () => {
    // which of two idle instances the dispatch picks (a tie its order breaks)
    const a0 = fake('a'), b0 = fake('b');
    const first = new SimPoolLeader(cfg, ['MS'], { admit: (i, m) => ({ v: 1, id: m.id, ok: true, instance: i.id }), answer: () => {} }, 0).dispatch(req('r0', 0), [a0, b0], 0);
    const tie = first?.instance;
    expect(tie === 'a' || tie === 'b').toBe(true);

    const a = fake('a'), b = fake('b');
    const both = [a, b];
    const chosen = tie === 'a' ? a : b;
    const other = tie === 'a' ? b : a;
    const leader = new SimPoolLeader(cfg, ['MS'], { admit: (i, m) => ({ v: 1, id: m.id, ok: true, instance: i.id }), answer: () => {} }, 0);
    // both publish idle at t = 0 (the statuses the cluster's first dispatch finds)
    leader.sync(both, 0);
    // by t = 700 the instance the tie picks carries a heavy load; its timer has not fired since t = 0
    chosen.now = { queued: 6, running: 12, loadByType: { MS: 4, LL: 1 }, pendingPrefillTokens: 6000 };
    // 700 ms after its last status the dispatch still sees it idle: it picks it as at t = 0
    expect(leader.dispatch(req('r1', 700), both, 700)?.instance).toBe(chosen.id);
    // its timer fires: from its status on, the dispatch sees the load and picks the other one
    leader.publish(chosen, both, 750);
    expect(leader.dispatch(req('r2', 760), both, 760)?.instance).toBe(other.id);
  });

  /** the twin check's clock window (test/bench/twin.bench.ts: deploy/replay-ci.yaml, 2 TP1 instances), its 60 s. */
  const clockWindow = (status?: number | number[]): SimOptions => ({
    policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
    profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
    knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
    instanceLimits: { maxInEngine: 96, maxQueued: 512 }, dispatch: 'policy', predictor: 'online',
    trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 60_000, speed: 1 },
    instanceEpochPhaseMs: [3730, 3843],
    ...(status !== undefined ? { instanceStatusPhaseMs: status } : {}),
  });

  /** Which instance took each request, in arrival order. */
  async function placements(o: SimOptions): Promise<string[]> {
    const out: string[] = [];
    await simulate(o, undefined, {
      onInstanceStep: (instance, _cfg, ev, _t, fx) => {
        if (ev.type === 'admit' && ev.req.moves === 0 && fx.some((e) => e.kind === 'admitted' || e.kind === 'start')) out.push(`${ev.req.id}@${instance}`);
      },
    });
    return out;
  }

  it('the instances\' status phases decide where requests land', async () => {
    const early = await placements(clockWindow([100, 100]));
    const late = await placements(clockWindow([400, 100]));
    expect(early.length).toBe(late.length);
    expect(early.length).toBeGreaterThan(150);
    // the same requests, other instances: i0's status 300 ms later leaves the dispatch a staler view of it
    // (66 of 191): a request placed otherwise changes the loads every later choice reads
    expect(early.filter((p, k) => p !== late[k]).length).toBeGreaterThan(30);
  }, 60_000);

  it('the statuses come at the interval the timer keeps: 1.6 ms late a time moves where requests land', async () => {
    // a live instance's status timer fires a little late each time and runs on from then: on this 2-core VM at load 10-17
    // its statuses came every 501.6 ms (the twin run at 18:08 UTC), so they drift 200 ms against the arrivals in a minute
    const exact = await placements({ ...clockWindow([421, 199]), instanceStatusIntervalMs: 500 });
    const late = await placements({ ...clockWindow([421, 199]), instanceStatusIntervalMs: 501.6 });
    expect(late.length).toBe(exact.length);
    expect(exact.filter((p, k) => p !== late[k]).length).toBeGreaterThan(30);
    // the default is the live interval of the twin configs
    expect(await placements(clockWindow([421, 199]))).toEqual(exact);
  }, 60_000);

  it('a status phase is within the status interval, and needs the policy dispatch at step fidelity', async () => {
    await expect(simulate({ ...clockWindow([100, 100]), instanceStatusIntervalMs: 0.5 })).rejects.toThrow(/instanceStatusIntervalMs/);
    await expect(simulate({ ...clockWindow([100, 450]), instanceStatusIntervalMs: 400 })).rejects.toThrow(/instanceStatusPhaseMs/);
    await expect(simulate(clockWindow(0))).rejects.toThrow(/instanceStatusPhaseMs/);
    await expect(simulate(clockWindow([100, 501]))).rejects.toThrow(/instanceStatusPhaseMs/);
    await expect(simulate(clockWindow([100, Number.NaN]))).rejects.toThrow(/instanceStatusPhaseMs/);
    await expect(simulate({ ...clockWindow(100), dispatch: 'least-loaded' })).rejects.toThrow(/instanceStatusPhaseMs/);
  });
});
