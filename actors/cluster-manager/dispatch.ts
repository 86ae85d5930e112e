/**
 * The cluster intake's dispatch to a pool leader (actors/cluster-manager/main.ts): poolDispatch, retried while
 * the pool's leader fails over, on no responders (no leader yet) and on a timeout (the leader died holding it:
 * its successor knows what it dispatched, and dispatch is idempotent by request id, so a retry never makes a
 * second stream), inside the request's give-up time.
 *
 * Meanwhile the request is held for the pool's election, and the caller waiting for its admission (the gateway
 * reads the stream subject before it asks) is told so with a hold notice (TokenChunk.hold), as a pool leader
 * tells of a request it holds (policy leaderlessHoldMs): it keeps retrying the intake instead of giving up at its
 * own budget, also when it saw no election itself (docs/DATAPATH.md "Elections").
 */
import type { Bus } from '../../src/runtime/bus.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import { Admission, InferenceRequest, TokenChunk, subjects, toWireError, type DynError } from '../../protocols/index.ts';
import { leaderlessHoldMs } from '../../src/policy/machines/cluster.ts';
import type { ClusterConfig } from '../common/config.ts';

/** a request held for a pool's election is told so again at most this often, ms. */
const HOLD_NOTICE_MS = 1000;

export class PoolDispatcher {
  /** per pool: since when its dispatch has found no leader to answer (absent: its last dispatch was answered). */
  #leaderless = new Map<string, number>();

  constructor(private readonly bus: Bus, private readonly clock: Clock, private readonly c: ClusterConfig) {}

  /** The pool's admission of `r` (or the last failure as a refusal once retrying is over). */
  async dispatch(r: InferenceRequest, pool: string): Promise<Admission> {
    const attemptMs = this.c.timeouts.dispatchMs + 1000;
    const until = this.clock.now() + Math.min(Math.max(2 * this.c.liveness.leaseTtlMs + 1000, 3 * attemptMs), Math.max(0, r.giveUpAtMs - this.clock.now()));
    let wait = 50;
    let toldMs = -Infinity;
    const tell = (now: number) => {
      const forMs = leaderlessHoldMs(this.#leaderless.get(pool) ?? now, now, until, this.c.timeouts.leaderHoldMs);
      if (forMs <= 0 || now - toldMs < HOLD_NOTICE_MS) return;
      toldMs = now;
      try {
        this.bus.publish(r.streamSubject, TokenChunk, { v: 1, id: r.id, seq: 0, text: '', tokens: 0, pool, hold: { forMs } });
      } catch {
        /* closing, or the link is down: told again at the next attempt */
      }
    };
    // a pool already known without a reachable leader: the caller is told at once
    if (this.#leaderless.has(pool)) tell(this.clock.now());
    for (;;) {
      try {
        const a = await this.bus.request(subjects.poolDispatch(pool), InferenceRequest, r, Admission, { timeoutMs: Math.max(1, Math.min(attemptMs, until - this.clock.now())) });
        this.#leaderless.delete(pool);
        return a;
      } catch (err) {
        const e = err as DynError;
        const now = this.clock.now();
        if ((e.code !== 'no_responders' && e.code !== 'timeout') || now + wait > until) {
          return { v: 1, id: r.id, ok: false, pool, error: { ...toWireError(err), retryable: e.retryable ?? true, retryAfterS: this.c.emergency.retryAfterS } };
        }
        if (!this.#leaderless.has(pool)) this.#leaderless.set(pool, now);
        tell(now);
        await this.clock.sleep(wait);
        wait = Math.min(500, wait * 2);
      }
    }
  }
}
