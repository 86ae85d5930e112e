/**
 * Issue 5, the pool re-shard epoch: real nats-server, real actor processes and emulated Llama2-70B
 * engines (timeScale 2) on one 8-GPU server, with a 15-s pool epoch (the gain over a shorter one does not pay the
 * overhead table's ~2.4 kJ of re-sharding four instances). The pool starts as 2xTP4; a SS load (2.5 req/s of the
 * model) makes the epoch (planSharding: Eq. 1 at max clock, gain vs the overhead table) re-shard to 4xTP2, then a
 * shift of the mix to ML (medium prompts, long outputs; 1.5 req/s of the model) makes it re-shard to a TP2/TP4 mix;
 * each re-shard is staggered (matchReshard + staggerSteps), is in the JetStream event stream with its inputs, and
 * no request fails. The pool's profile is the shipped one without TP8: with it, the epoch that sees the shift's
 * load half-measured may merge all eight GPUs into one TP8 instance, a re-shard that no staggering keeps serving
 * through (every GPU is in the one new instance); the pool machine keeps the layout instead while the pool carries
 * load (test/unit/machine-pool.test.ts), so the epoch would show no re-shard at all.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Profile } from '../../src/model/index.ts';
import { openLoop, startControlPlane, type Harness } from './control-harness.ts';

let h: Harness;
const POOL_EPOCH_S = 15;

/** The shipped Llama2-70B profile restricted to TP2 and TP4 (its cells for those degrees, unchanged). */
function tp2tp4Profile(): string {
  const p = JSON.parse(readFileSync('profiles/llama2-70b.h100.json', 'utf8')) as Profile;
  const keep = <T extends { tp: number }>(xs: T[] | undefined): T[] => (xs ?? []).filter((x) => x.tp !== 8);
  const out: Profile = { ...p, tpDegrees: p.tpDegrees.filter((t) => t !== 8), cells: keep(p.cells), maxLoad: keep(p.maxLoad), idlePowerW: keep(p.idlePowerW) };
  const f = join(mkdtempSync(join(tmpdir(), 'dyn-reshard-')), 'llama2-70b.h100.tp2-4.json');
  writeFileSync(f, JSON.stringify(out));
  return f;
}

beforeAll(async () => {
  h = await startControlPlane({
    model: 'llama2-70b', gpu: 'h100', profile: tp2tp4Profile(),
    servers: [{ id: 'n0', gpus: 8 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: POOL_EPOCH_S, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
    engine: { kind: 'emulator', timeScale: 2, healthDeadlineMs: 30_000, initialTp: 4, maxInEngine: 32, maxQueued: 128 },
  }); // one ready instance suffices: at zero load the pool's epoch (4 s) may consolidate 2xTP4 before both are seen ready
}, 90_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

describe('control plane: re-shard epoch', () => {
  it('a shift of the type mix triggers a staggered re-shard that completes without failed requests', async () => {
    const t0 = Date.now();
    // 5 req/s of wall time on emulators running 2x faster: 2.5 req/s of the model (the instances' load unit)
    const ss = openLoop(h, 5, { maxTokens: 30, inputTokens: 100 });
    // light SS: 2xTP4 -> fewer GPUs (the epoch consolidates)
    const until1 = Date.now() + 5 * POOL_EPOCH_S * 1000;
    let first: number | undefined;
    while (Date.now() < until1 && first === undefined) {
      await new Promise((r) => setTimeout(r, 1000));
      first = (await h.streamEvents()).find((e) => e.kind === 'reshard' && e.decision.complete === true)?.atMs;
    }
    expect(first, `first re-shard did not complete: ${(await h.streamEvents()).filter((e) => e.kind === 'reshard' || e.kind === 'scale').map((e) => `${e.atMs - t0} ${e.summary}`).join('\n')}`).toBeDefined();
    const outsA = await ss.stop();
    // shift the mix: long outputs (ML, 1.5 req/s of the model: 4xTP2 cannot carry it; 2xTP4 can)
    const shiftAt = Date.now();
    // (input 500: another input bucket of the output predictor, which learns the long outputs there within a few requests)
    const ls = openLoop(h, 3, { maxTokens: 360, inputTokens: 500, promptOfInputTokens: true }, 10_000);
    const until2 = Date.now() + 6 * POOL_EPOCH_S * 1000;
    let second: number | undefined;
    while (Date.now() < until2 && second === undefined) {
      await new Promise((r) => setTimeout(r, 1000));
      second = (await h.streamEvents()).find((e) => e.kind === 'reshard' && e.decision.complete === true && e.atMs > shiftAt)?.atMs;
    }
    // the layout right after the re-shard (a later epoch may move on once the load stops)
    const stAtSecond = await h.status();
    await new Promise((r) => setTimeout(r, 1500));
    const outsB = await ls.stop();
    const outs = [...outsA, ...outsB];
    const evs = await h.streamEvents();
    console.log(evs.filter((e) => e.kind === 'reshard' || e.kind === 'scale' || e.kind === 'failure').map((e) => `${e.atMs - t0} ${e.summary}`).join('\n'));
    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    expect(second, `re-shard after the mix shift did not complete; last loads ${JSON.stringify(evs.filter((e) => e.kind === 'reshard' && e.inputs.loadByType).slice(-2).map((e) => e.inputs.loadByType))}; events after the shift: ${evs.filter((e) => e.atMs > shiftAt && e.kind !== 'clock').map((e) => `${e.atMs - shiftAt} ${e.kind} ${e.summary}`).join(' | ')}`).toBeDefined();
    const events = await h.streamEvents();
    const takes = events.filter((e) => e.kind === 'reshard' && e.decision.take === true);
    const afterShift = takes.find((e) => e.atMs > shiftAt)!;
    expect(afterShift).toBeDefined();
    // inputs: the measured load (ML dominant), the energies and the reconfiguration cost
    const load = afterShift.inputs.loadByType as Record<string, number>;
    expect(load.ML ?? 0).toBeGreaterThan(load.SS ?? 0);
    // taken because the gain over the epoch pays the overhead-table cost, or because the current split
    // cannot carry the load within SLO (planSharding's two reasons to take a re-shard)
    const pays = Number(afterShift.inputs.currentEnergyJ) - Number(afterShift.inputs.targetEnergyJ) > Number(afterShift.inputs.costJ);
    expect(pays || afterShift.inputs.currentFeasible === false).toBe(true);
    expect(afterShift.inputs.costJ).toBeTypeOf('number');
    expect(afterShift.inputs.planner).toBe('heuristic');
    // staggered: the units ran one at a time
    const units = events.filter((e) => e.kind === 'reshard' && e.decision.kind !== undefined && e.atMs > shiftAt);
    expect(units.length).toBeGreaterThan(0);
    const tps = stAtSecond!.pools[0]!.instances.filter((i) => i.state === 'ready').map((i) => i.gpus.length).sort();
    const target = (afterShift.decision.target as { tp: number; count: number }[]).flatMap((t) => Array(t.count).fill(t.tp)).sort();
    expect(tps).toEqual(target);
    console.log(`reshard: first complete after ${first! - t0} ms; shift -> ${afterShift.summary} ; complete after ${second! - shiftAt} ms; ` +
      `${units.length} unit(s); ${outs.length} requests, ${outs.filter((o) => o.ok).length} ok; final TPs ${tps.join(',')}`);
  }, 300_000); // two staggered re-shards of 4 and 2 units take 25-50 s each on 2 shared cores
});
