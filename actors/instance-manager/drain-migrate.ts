/**
 * Scale-in and re-shard with request migration, live (config `scaling.drainMigrateS`): when its pool drains the
 * instance, the requests src/policy drainMigrations picks (more than drainMigrateS of decode left) are ended with a
 * retryable error, and the gateway continues each on a peer with its prompt and the text already sent (request
 * migration, docs/DATAPATH.md); the pool stops the instance once nothing runs on it. The simulator runs the same rule
 * (src/sim/drain-migration.ts).
 *
 * Only direct legs (the gateway reads the engine, InferenceRequest.direct) that sent their first token are ended: the
 * gateway migrates those mid-stream; a relayed leg that already sent text would end the client's stream, and a leg not
 * started yet is sent again only within its first-token budget; a leg whose prompt the gateway cannot extend (token
 * ids, echo) is not migrated at all. The instance does not see a direct leg's tokens: it
 * counts them from the first token's report at the TBT it measures (its own recent TBT samples).
 */
import { DynError } from '../../protocols/index.ts';
import { TBT_SLO_MS } from '../../src/model/request-types.ts';
import { continuable, drainMigrations, type DrainingRequest } from '../../src/policy/drain-migration.ts';

/** A request running on the instance, as the instance manager holds it. */
export interface RunningView {
  req: { id: string; direct?: boolean; maxTokens: number; migration?: number; prompt?: unknown; messages?: unknown; params?: { echo?: unknown } };
  /** first token's arrival, ms on the instance's clock (a direct leg's from the gateway's report). */
  firstTokenMs?: number;
  tbtSum: number;
  tbtN: number;
}

/**
 * What the policy reads of each direct leg: its tokens so far (counted from its first token at its TBT: its own when
 * reported, else the mean of the instance's recent samples `tbtSamplesMs`, else the TBT SLO), those left of maxTokens.
 */
export function drainingRequests(running: Iterable<RunningView>, now: number, tbtSamplesMs: readonly number[]): DrainingRequest[] {
  const fallback = tbtSamplesMs.length ? tbtSamplesMs.reduce((a, b) => a + b, 0) / tbtSamplesMs.length : TBT_SLO_MS;
  const out: DrainingRequest[] = [];
  for (const r of running) {
    // a leg without its first token is left: the gateway sends a leg that ended before it started again only within
    // the request's first-token budget, and past it the client would get the error
    // and one the gateway cannot continue (a token-id prompt, echo: src/policy continuable) would end its client's stream
    if (r.req.direct !== true || r.firstTokenMs === undefined || !continuable(r.req)) continue;
    const tbt = r.tbtN > 0 ? r.tbtSum / r.tbtN : fallback;
    const generated = r.firstTokenMs === undefined ? 0 : Math.max(r.tbtN + 1, 1 + Math.floor(Math.max(0, now - r.firstTokenMs) / Math.max(1, tbt)));
    out.push({ id: r.req.id, generated, remaining: Math.max(0, r.req.maxTokens - generated), tbtMs: tbt, continued: (r.req.migration ?? 0) > 0 });
  }
  return out;
}

/** The direct legs a draining instance ends for the gateway to continue on peers. */
export function legsToMigrate(running: Iterable<RunningView>, now: number, tbtSamplesMs: readonly number[], minRemainingS: number): string[] {
  return drainMigrations(drainingRequests(running, now, tbtSamplesMs), { minRemainingS });
}

/**
 * A drained instance's part (`minS` = scaling.drainMigrateS; nothing when unset): its queue to its peers (`evacuate`),
 * then the legs legsToMigrate picks ended with a retryable 'unavailable' error, which their gateways migrate.
 */
export function endForPeers(minS: number | undefined, instance: string, running: ReadonlyMap<string, RunningView & { ac: AbortController }>, now: number, tbtSamplesMs: readonly number[], evacuate: () => void): void {
  if (minS === undefined) return;
  evacuate();
  const gone = new DynError('unavailable', `instance ${instance} is draining: the request continues on a peer`, { retryable: true, retryAfterS: 0 });
  for (const id of legsToMigrate(running.values(), now, tbtSamplesMs, minS)) running.get(id)?.ac.abort(gone);
}
