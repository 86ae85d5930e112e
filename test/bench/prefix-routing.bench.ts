/**
 * Cache-aware routing live (issue 17): concurrent multi-turn chat sessions through the gateway's direct dispatch
 * with `policy.prefixRouting` on and off, on one cluster of emulated engines with automatic prefix caching (real
 * nats-server, the cluster, pool and node actors as processes, three TP1 Llama-3.1-8B instances on emulated H100s;
 * test/integration/prefix-sessions.ts). Each session resends its whole conversation every turn (a system prompt all
 * sessions share, its turns so far, a new user message). Runs alternate off, on, on, off (each with its own text,
 * so no run finds another's blocks cached) and the figures are the means of the two runs of each.
 * - prefix hit: the share of prompt tokens the engines served from their prefix caches (their own counters,
 *   vLLM's prefix_cache_hits / _queries, as the instance managers report them);
 * - same instance: turns after a session's first served where its previous turn was;
 * - TTFT: client side (to the first content delta), wall time on this shared machine;
 * - energy: MODELLED (emulated GPUs): the requests' own energy (the emulator's per-request figure, RequestRecord),
 *   and the instances' energy over the run, idle included (InstanceTelemetry).
 * DYN_BENCH_PREFIX_SESSIONS / _TURNS / _USER_WORDS / _SYSTEM_WORDS change the shape.
 */
import { loadavg } from 'node:os';
import type { BenchSection } from './types.ts';
import { startSessionsCluster, type SessionsResult } from '../integration/prefix-sessions.ts';

const SESSIONS = Number(process.env.DYN_BENCH_PREFIX_SESSIONS ?? 24);
const TURNS = Number(process.env.DYN_BENCH_PREFIX_TURNS ?? 6);
const USER_WORDS = Number(process.env.DYN_BENCH_PREFIX_USER_WORDS ?? 400);
const SYSTEM_WORDS = Number(process.env.DYN_BENCH_PREFIX_SYSTEM_WORDS ?? 600);

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function bench(): Promise<BenchSection> {
  const load0 = loadavg()[0]!;
  const c = await startSessionsCluster({ instances: 3 });
  const runs: SessionsResult[] = [];
  try {
    let seed = 1;
    for (const routing of [false, true, true, false]) {
      runs.push(await c.run({ routing, seed: seed++, sessions: SESSIONS, turns: TURNS, userWords: USER_WORDS, systemWords: SYSTEM_WORDS, outputTokens: 32, thinkMs: 1500 }));
    }
  } finally {
    await c.stop();
  }
  const load1 = loadavg()[0]!;
  const f = (x: number, d = 1) => x.toFixed(d);
  const row = (routing: boolean) => {
    const rs = runs.filter((r) => r.routing === routing);
    return {
      routing: routing ? 'on' : 'off',
      requests: rs.reduce((a, r) => a + r.requests, 0),
      'failed (retried)': `${rs.reduce((a, r) => a + r.failed, 0)} (${rs.reduce((a, r) => a + r.retried, 0)})`,
      'prefix hit (runs)': `${f(100 * mean(rs.map((r) => r.hitShare)))}% (${rs.map((r) => f(100 * r.hitShare)).join(', ')})`,
      'same instance': `${f(100 * mean(rs.map((r) => r.sameInstanceShare)))}%`,
      'prompt tokens looked up / hit': `${Math.round(mean(rs.map((r) => r.lookupTokens)))} / ${Math.round(mean(rs.map((r) => r.hitTokens)))}`,
      'TTFT p50 / p90 / p99 ms': `${f(mean(rs.map((r) => r.ttftP50Ms)), 0)} / ${f(mean(rs.map((r) => r.ttftP90Ms)), 0)} / ${f(mean(rs.map((r) => r.ttftP99Ms)), 0)}`,
      'request energy J (modelled)': f(mean(rs.map((r) => r.requestEnergyJ)), 0),
      'instance energy J (modelled, idle incl.)': f(mean(rs.map((r) => r.energyJ)), 0),
      'wall s': f(mean(rs.map((r) => r.wallS))),
    };
  };
  const off = row(false), on = row(true);
  const hit = (routing: boolean) => mean(runs.filter((r) => r.routing === routing).map((r) => r.hitShare));
  const rq = (routing: boolean) => mean(runs.filter((r) => r.routing === routing).map((r) => r.requestEnergyJ));
  const failed = runs.flatMap((r) => r.errors);
  return {
    title: 'Cache-aware routing live: concurrent chat sessions through the gateway, routing on vs off (emulated engines, prefix caching)',
    notes: [
      `${SESSIONS} concurrent sessions x ${TURNS} turns per run (system prompt ${SYSTEM_WORDS} words shared by all sessions, ${USER_WORDS} words a user message, 32-token answers, 0.75-2.25 s between a session's turns); 3 TP1 Llama-3.1-8B instances on emulated H100s (engine.prefixCaching: true, timeScale 1); runs off, on, on, off on one cluster, each with its own text; load average ${f(load0, 2)} before, ${f(load1, 2)} after.`,
      `Routing on vs off: prefix hit ${f(100 * hit(true))}% vs ${f(100 * hit(false))}%; the requests' modelled energy ${f(100 * (rq(true) / rq(false) - 1))}%.`,
      ...(failed.length ? [`errors: ${failed.slice(0, 3).join(' | ')}`] : []),
    ],
    rows: [off, on],
  };
}
