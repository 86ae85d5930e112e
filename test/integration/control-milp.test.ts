/**
 * Issue 5, `planner: milp`: the pool re-shard epoch solves Eq. 1 exactly with HiGHS (worker thread, with
 * a deadline) instead of the heuristic. Real nats-server, real actor processes, emulated Llama2-70B engines
 * (2xTP4 on one 8-GPU server). The epoch's `reshard` decision event (JetStream stream) names the planner,
 * carries the MILP's solution and energy, and its target is the MILP's split; with a light load the
 * consolidation is carried out without failed requests. The load it plans for is in modelled req/s
 * (the instances divide their wall-clock rate by the emulator's timeScale).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLoop, startControlPlane, type Harness } from './control-harness.ts';
import { controlSubjects, InstanceStatus } from '../../protocols/index.ts';

let h: Harness;
/** every instance status seen: (time, instance, its SS load estimate in req/s). */
const statuses: { atMs: number; id: string; ss: number }[] = [];

beforeAll(async () => {
  h = await startControlPlane({
    model: 'llama2-70b', gpu: 'h100', profile: 'profiles/llama2-70b.h100.json',
    servers: [{ id: 'n0', gpus: 8 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 4, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
    engine: { kind: 'emulator', timeScale: 2, healthDeadlineMs: 30_000, initialTp: 4, maxInEngine: 32, maxQueued: 128 },
    planner: 'milp',
    milpDeadlineMs: 3_500, // shorter than the 4-s pool epoch (config validation); HiGHS solves this pool in milliseconds
  }, { ready: 2 });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void statuses.push({ atMs: Date.now(), id: st.id, ss: st.loadByType.SS ?? 0 }), { capacity: 10_000 });
}, 60_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

describe('control plane: planner milp', () => {
  it('the re-shard epoch uses the MILP (HiGHS) and carries out its split', async () => {
    const loadFrom = Date.now();
    const load = openLoop(h, 2, { maxTokens: 30, inputTokens: 100 });
    const until = Date.now() + 40_000;
    let decided: Awaited<ReturnType<Harness['streamEvents']>>[number] | undefined;
    let complete = false;
    while (Date.now() < until && !(decided && (complete || decided.decision.take !== true))) {
      await new Promise((r) => setTimeout(r, 1000));
      const evs = await h.streamEvents();
      decided = evs.find((e) => e.kind === 'reshard' && e.inputs.planner === 'milp');
      complete = evs.some((e) => e.kind === 'reshard' && e.decision.complete === true);
    }
    await new Promise((r) => setTimeout(r, 1500));
    const loadTo = Date.now();
    const outs = await load.stop();
    const evs = await h.streamEvents();
    const fallbacks = evs.filter((e) => e.kind === 'reshard' && e.inputs.milpFallback !== undefined).map((e) => e.inputs.milpFallback);
    expect(decided, `no MILP decision (fallbacks: ${JSON.stringify(fallbacks)})`).toBeDefined();
    const m = decided!.inputs.milp as { status: string; solveMs: number; config: { tp: number; count: number }[] };
    expect(m.status).toMatch(/Optimal/i);
    expect(m.solveMs).toBeGreaterThan(0);
    // the decision's target is the MILP's split, and its energy the MILP's optimum (<= the heuristic's)
    const fromMilp = m.config.filter((g) => g.count > 0).flatMap((g) => Array(g.count).fill(g.tp)).sort();
    const target = (decided!.decision.target as { tp: number; count: number }[]).flatMap((t) => Array(t.count).fill(t.tp)).sort();
    expect(target).toEqual(fromMilp);
    // load in modelled req/s: 2 req/s of wall time on emulators running 2x faster is ~1 req/s of the model (the
    // wall rate would read ~2). One epoch's reading is an EWMA over 1-s windows of ~1 arrival per instance: it
    // was seen anywhere from 0.28 to 1.61, so the units are checked on the time average of the instances'
    // reported estimates (summed over live instances, sampled every 250 ms) from 3 s into the load to its end, not on
    // one reading
    const ss = (decided!.inputs.loadByType as Record<string, number>).SS;
    expect(ss).toBeGreaterThan(0);
    const latest = new Map<string, { atMs: number; ss: number }>();
    const sums: number[] = [];
    for (const st of statuses) {
      latest.set(st.id, st);
      // instances heard from in the last second (a re-shard stops the old ones: their last word is not current)
      if (st.atMs >= loadFrom + 3000 && st.atMs <= loadTo) sums.push([...latest.values()].filter((x) => st.atMs - x.atMs <= 1000).reduce((a, x) => a + x.ss, 0));
    }
    expect(sums.length).toBeGreaterThan(8);
    const meanSs = sums.reduce((a, b) => a + b, 0) / sums.length;
    expect(meanSs).toBeGreaterThan(0.6);
    expect(meanSs).toBeLessThan(1.45);
    const heur = decided!.inputs.heuristic as { targetEnergyJ: number };
    expect(Number(decided!.inputs.targetEnergyJ)).toBeLessThanOrEqual(heur.targetEnergyJ * (1 + 1e-3) + 1e-6);
    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    if (decided!.decision.take === true) {
      expect(complete).toBe(true);
      const st = await h.status();
      const tps = st!.pools[0]!.instances.filter((i) => i.state === 'ready').map((i) => i.gpus.length).sort();
      expect(tps).toEqual(target);
    }
    console.log(`milp: SS load read ${ss.toFixed(2)} at the decision, ${meanSs.toFixed(2)} on average (modelled req/s); ${decided!.summary}; solve ${m.solveMs.toFixed(0)} ms; MILP ${Number(decided!.inputs.targetEnergyJ).toFixed(0)} J vs heuristic ${heur.targetEnergyJ.toFixed(0)} J; ` +
      `${outs.length} requests, ${outs.filter((o) => o.ok).length} ok`);
  }, 80_000);
});
