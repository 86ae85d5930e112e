/**
 * Scale-in and re-shard with request migration, live (config `scaling.drainMigrateS`): when its pool drains the
 * instance, the requests src/policy drainMigrations picks (more than drainMigrateS of decode left) are ended with a
 * retryable error, and the gateway continues each on a peer with its prompt and the text already sent (request
 * migration, docs/DATAPATH.md); the pool stops the instance once nothing runs on it. The simulator runs the same rule,
 * src/policy legsToMigrate (src/sim/drain-migration.ts).
 *
 * Only direct legs (the gateway reads the engine, InferenceRequest.direct) that sent their first token are ended: the
 * gateway migrates those mid-stream; a relayed leg that already sent text would end the client's stream, and a leg not
 * started yet is sent again only within its first-token budget; a leg whose prompt the gateway cannot extend (token
 * ids, echo, guided decoding: continuable) is not migrated at all, nor one that may answer with a tool call (mayCallTools: a
tool call already streamed would end the client's stream, the gateway cannot continue it). The instance does not see a direct leg's tokens: the policy counts them from the
 * first token's report at the TBT it measures (its own recent TBT samples), and estimates those left from the request's
 * predicted output and its max_tokens (src/policy remainingTokens).
 */
import { DynError } from '../../protocols/index.ts';
import { continuable, legsToMigrate, mayCallTools, type RunningLeg } from '../../src/policy/drain-migration.ts';

/** A request running on the instance, as the instance manager holds it. */
export interface RunningView {
  req: { id: string; direct?: boolean; maxTokens: number; predictedOutputTokens?: number; migration?: number; prompt?: unknown; messages?: unknown; params?: Readonly<Record<string, unknown>> };
  /** first token's arrival, ms on the instance's clock (a direct leg's from the gateway's report). */
  firstTokenMs?: number;
  tbtSum: number;
  tbtN: number;
}

/**
 * What src/policy legsToMigrate reads of a running request: its max_tokens and its predicted output (the gateway
 * router's or the cluster intake's, InferenceRequest.predictedOutputTokens); only a direct leg whose prompt the gateway
 * can extend, and that may not call a tool, is movable.
 */
export function legOf(r: RunningView): RunningLeg {
  return {
    id: r.req.id, ...(r.firstTokenMs !== undefined ? { firstTokenMs: r.firstTokenMs } : {}), tbtSumMs: r.tbtSum, tbtN: r.tbtN, maxTokens: r.req.maxTokens,
    ...(r.req.predictedOutputTokens !== undefined ? { predictedTokens: r.req.predictedOutputTokens } : {}),
    continued: (r.req.migration ?? 0) > 0, movable: r.req.direct === true && continuable(r.req) && !mayCallTools(r.req.params),
  };
}

/**
 * A drained instance's part (`minS` = scaling.drainMigrateS; nothing when unset): its queue to its peers (`evacuate`),
 * then the legs src/policy legsToMigrate picks ended with a retryable 'unavailable' error, which their gateways migrate.
 */
export function endForPeers(minS: number | undefined, instance: string, running: ReadonlyMap<string, RunningView & { ac: { abort(reason?: unknown): void } }>, now: number, tbtSamplesMs: readonly number[], evacuate: () => void): void {
  if (minS === undefined) return;
  evacuate();
  const gone = new DynError('unavailable', `instance ${instance} is draining: the request continues on a peer`, { retryable: true, retryAfterS: 0 });
  for (const id of legsToMigrate([...running.values()].map(legOf), now, tbtSamplesMs, { minRemainingS: minS })) running.get(id)?.ac.abort(gone);
}
