/**
 * Issue 5, the cluster scale epoch: real nats-server, real actor processes and emulated Llama2-70B engines
 * on three 8-GPU servers, no configured pools (the paper's plan: planCluster over the forecast). With no
 * load the longest pool keeps one server; a sustained rise of LS requests makes the leader run the epoch
 * early (forecast change, long before the 60 s timer) and grant servers to pool-LS, whose new instances
 * then serve; when the load falls and the recent window has passed, an early epoch retires pool-LS
 * (merged into the pool serving longer requests) and its GPUs return. Decisions are read back from the
 * JetStream stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLoop, startHarness, type Harness } from './control-harness.ts';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    model: 'llama2-70b', gpu: 'h100', profile: 'profiles/llama2-70b.h100.json',
    servers: [{ id: 'n0', gpus: 8 }, { id: 'n1', gpus: 8 }, { id: 'n2', gpus: 8 }],
    epochs: { clusterS: 60, poolS: 600, instanceS: 1 },
    scaling: { instanceStartupS: 0, minEpochGapS: 2, recentWindowS: 6 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 8, maxInEngine: 32, maxQueued: 128 },
  });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  for (const n of ['n0', 'n1', 'n2']) h.startActor('node', n);
  await h.waitReady(1);
}, 60_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

const readyIn = (s: Awaited<ReturnType<Harness['status']>>, pool: string) =>
  (s?.pools.find((p) => p.id === pool)?.instances ?? []).filter((i) => i.state === 'ready');

describe('control plane: scale epoch', () => {
  it('a sustained rise scales out early (forecast change) and a fall scales in', async () => {
    const t0 = Date.now();
    const before = await h.status();
    expect(before!.pools.map((p) => p.id)).toEqual(['pool-LL']);
    // rise: LS (long prompt, short output; one TP8 server carries ~0.23 req/s of it within SLO)
    const load = openLoop(h, 1, { maxTokens: 30, inputTokens: 2000 });
    let out: Awaited<ReturnType<Harness['status']>>;
    const until = Date.now() + 30_000;
    for (;;) {
      out = await h.status();
      if (readyIn(out, 'pool-LS').length >= 1 || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const outAt = Date.now();
    expect(readyIn(out, 'pool-LS').length, JSON.stringify(out)).toBeGreaterThanOrEqual(1);
    // keep the load a little so the new instances serve
    const firstAfter = load.sent();
    await new Promise((r) => setTimeout(r, 5000));
    const outs = await load.stop();
    const lsIds = new Set(readyIn(await h.status(), 'pool-LS').map((i) => i.id));
    const servedByNew = outs.slice(firstAfter).filter((o) => o.ok && o.admitted && lsIds.has(o.admitted)).length;
    // fall: no load; once the recent window has passed the plan needs one server again
    const fallAt = Date.now();
    let inn: Awaited<ReturnType<Harness['status']>>;
    const until2 = Date.now() + 35_000;
    for (;;) {
      inn = await h.status();
      const gone = !inn?.pools.some((p) => p.id === 'pool-LS');
      if ((gone && inn!.freeGpus >= 16) || Date.now() > until2) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const inAt = Date.now();
    const evs = await h.streamEvents();
    console.log(evs.filter((e) => ['scale', 'merge'].includes(e.kind) && e.actor.startsWith('cm')).map((e) => `${e.atMs - t0} ${e.summary} ${e.actor === "cm-0" && e.decision.epoch ? JSON.stringify(e.inputs.forecast) + " servers " + JSON.stringify(e.inputs.servers) : ""}`).join('\n'));
    // every request completed
    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    expect(servedByNew).toBeGreaterThan(0);
    // scale-out: an early epoch (forecast change) granted servers to pool-LS, with its inputs
    const scaleOut = evs.find((e) => e.kind === 'scale' && e.actor === 'cm-0' && String(e.decision.why).startsWith('forecast change')
      && (e.decision.changes as { pool: string; state: string; gpus: number }[]).some((c) => c.pool === 'pool-LS' && c.state === 'active' && c.gpus >= 8));
    expect(scaleOut, 'no scale-out event').toBeDefined();
    expect(scaleOut!.atMs - t0).toBeLessThan(60_000); // before the 60 s timer
    expect((scaleOut!.inputs.forecast as Record<string, number>).LS).toBeGreaterThan(0.23);
    expect((scaleOut!.inputs.observed as Record<string, number>).LS).toBeGreaterThan(0);
    // the pool leader started the instances (events of a pool leader carry the pool id as actor)
    expect(evs.some((e) => e.kind === 'scale' && e.actor === 'pool-LS' && typeof e.decision.start === 'string' && e.decision.start.startsWith('pool-LS-'))).toBe(true);
    // scale-in: pool-LS retired, merged into a pool serving longer requests, its GPUs free again
    expect(inn!.pools.map((p) => p.id), JSON.stringify(inn)).toEqual(['pool-LL']);
    expect(inn!.freeGpus).toBe(16);
    const scaleIn = evs.find((e) => e.kind === 'scale' && e.actor === 'cm-0' && e.atMs > fallAt
      && (e.decision.changes as { pool: string; state: string }[]).some((c) => c.pool === 'pool-LS' && c.state === 'retired'));
    expect(scaleIn, 'no scale-in event').toBeDefined();
    expect(evs.some((e) => e.kind === 'merge' && e.atMs > fallAt && e.decision.from === 'pool-LS')).toBe(true);
    expect(evs.some((e) => e.kind === 'scale' && e.actor === 'pool-LS' && typeof e.decision.stop === 'string' && e.decision.stop.startsWith('pool-LS-'))).toBe(true);
    console.log(`scale: out after ${outAt - t0} ms (${readyIn(out, 'pool-LS').length} pool-LS instance(s) ready), ${servedByNew} requests served by them; ` +
      `in after ${inAt - fallAt} ms of no load; ${outs.length} requests, ${outs.filter((o) => o.ok).length} ok`);
  }, 90_000);
});
