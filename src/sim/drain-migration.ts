/**
 * Scale-in and re-shard with request migration (SimOptions.drainMigration, `simulate --drain-migrate-s S`): when a
 * pool drains an instance (a scale-in, a retired pool, a re-shard's old layout), the requests src/policy
 * legsToMigrate picks (the live instance manager's rule: a first token sent, an expected remaining decode, from the
 * request's predicted output and max_tokens, longer than S at the TBT they have been getting) continue on the pool's
 * ready peers, as the live gateway's request migration continues a request whose instance went away
 * (docs/DATAPATH.md "Request migration"): the peer's prompt is the prompt plus the tokens already sent (prefilled
 * again: no KV transfer), its output the tokens left; the client's stream goes on (its TTFT stays the first leg's;
 * the gap to the continuation's first token is one of its TBTs). The peer is the pool leader machine's 'move' (ready
 * peers with room, not the draining one); a request no peer takes stays. The machine's queue moves the same way
 * (its 'evacuate'). DrainLog measures every drain: from the pool's decision to the instance's GPUs free.
 */
import type { CoreRequest } from '../engine/core-types.ts';
import { legsToMigrate, type DrainMigrationConfig, type RunningLeg } from '../policy/drain-migration.ts';
import { simRequest, type SimPoolLeader } from './pool-leader.ts';
import type { ReqState, SimInstance, SimPool } from './state.ts';

export interface MigrationHost {
  readonly reqs: Map<string, ReqState>;
  readonly admitted: Map<string, CoreRequest>;
  leaderOf(pool: SimPool, now: number): SimPoolLeader<SimInstance>;
}

/** Drains measured: decision to GPUs free; requests moved and the tokens their peers prefilled again. */
export class DrainLog {
  private readonly freeMs: number[] = [];
  migrated = 0;
  /** tokens generated before a move, prefilled again on the peer. */
  reprefillTokens = 0;

  drained(inst: SimInstance, now: number): void {
    inst.drainAtMs ??= now;
  }

  /** Its GPUs are free (its engine exited). */
  freed(inst: SimInstance, now: number): void {
    if (inst.drainAtMs !== undefined) this.freeMs.push(now - inst.drainAtMs);
  }

  summary(): DrainSummary | undefined {
    if (!this.freeMs.length) return undefined;
    const s = [...this.freeMs].sort((a, b) => a - b);
    const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]! / 1000;
    return { count: s.length, meanS: s.reduce((a, b) => a + b, 0) / s.length / 1000, p50S: q(0.5), p99S: q(0.99), maxS: s.at(-1)! / 1000, migrated: this.migrated, reprefillTokens: this.reprefillTokens };
  }
}

export interface DrainSummary {
  /** drains whose instance stopped within the run. */
  count: number;
  /** time from the pool's drain to the instance's GPUs free, s. */
  meanS: number;
  p50S: number;
  p99S: number;
  maxS: number;
  /** requests handed to a peer. */
  migrated: number;
  reprefillTokens: number;
}

/**
 * The draining instance's requests src/policy legsToMigrate picks (the live instance manager's rule, on what the
 * instance knows: each request's first token and TBT samples, its predicted output and its max_tokens), moved to its
 * pool's peers; its queue evacuated. The prediction is the classifier's (ReqState.predTokens: ./classifier.ts, the
 * live router's token estimate for the class the sim predicted). The trace carries no request limit: max_tokens is
 * the request's output length, as `replay` sends it (ignore_eos), the stand-in for a client that set max_tokens (a
 * client that sets none lets a request run to the context, which only the prediction bounds). Every simulated request
 * is a direct leg whose prompt the gateway can extend. The continuation's prompt is the prompt plus the tokens the
 * engine did generate (what the gateway sent), its output the rest of its true output.
 */
export function migrateDraining(inst: SimInstance, now: number, host: MigrationHost, cfg: DrainMigrationConfig, log: DrainLog): void {
  const core = inst.core, brain = inst.brain;
  if (!core || !brain || !inst.pool.instances.some((i) => i !== inst && i.state === 'active' && i.brain)) return;
  if (brain.s.queue.length) brain.step({ type: 'evacuate', why: 'draining: queued requests to peers' }, now);
  const legs: RunningLeg[] = [];
  for (const id of brain.s.running.keys()) {
    const r = core.requestOf(id), st = host.reqs.get(id);
    if (!r || !st || st.inst !== inst) continue;
    legs.push({
      id, ...(st.firstMs >= 0 ? { firstTokenMs: st.firstMs } : {}), tbtSumMs: st.tbtSum, tbtN: st.tbtN, maxTokens: r.outputTokens,
      ...(st.predTokens !== undefined ? { predictedTokens: st.predTokens } : {}), continued: st.continued === true, movable: true,
    });
  }
  for (const id of legsToMigrate(legs, now, [], cfg)) {
    const r = core.requestOf(id)!, st = host.reqs.get(id)!;
    const generated = Math.max(0, core.generatedOf(id));
    if (generated >= r.outputTokens) continue;
    const cont: CoreRequest = { ...r, promptTokens: r.promptTokens + generated, outputTokens: r.outputTokens - generated, ttftDeadlineMs: now };
    host.admitted.set(id, cont);
    const placed = host.leaderOf(inst.pool, now).move(inst.id, [simRequest(cont, st.pred, st.moves + 1)], inst.pool.instances, now);
    if (!placed.some((p) => p.id === id)) {
      if (st.inst === inst) host.admitted.delete(id);
      continue;
    }
    st.continued = true;
    core.cancel(id);
    brain.step({ type: 'finished', id, ok: false }, now);
    log.migrated++;
    log.reprefillTokens += generated;
  }
}
