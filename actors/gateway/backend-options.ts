/** The options of the gateway's backend over NATS (nats-backend.ts): deadlines, holds, the data path, migration. */
import type { Clock } from '../../src/runtime/clock.ts';
import type { RequestRouter } from './router.ts';
import type { Elections } from './elections.ts';
import type { LocalTokenizer } from './tokens.ts';
import type { EngineIdleSettings, IdleSlo } from '../../src/policy/engine-liveness.ts';

export interface NatsBackendOptions {
  /** the whole admission's budget (classification + dispatch + instance admission, retries included), ms. Default 10000. */
  admitTimeoutMs?: number;
  /**
   * the longest a request's admission is waited for in all, pool holds and leader elections included: each hold or
   * election extends the wait past admitTimeoutMs, never past this after the intake began (then the last attempt's
   * retryable error), ms; a request nothing was sent for is sent again as a new leg (its legs ended before they
   * started) only until this after its admission began. Default 60000.
   */
  holdLimitMs?: number;
  /** deadline of one intake attempt before it is sent again (same request id), ms. Default 3000. */
  admitAttemptMs?: number;
  /** the longest silence between two chunks (and before the first) before the request fails, ms. Default 60000. */
  chunkTimeoutMs?: number;
  /** chunks buffered per request before the stream fails as too slow a reader, count. Default 8192. */
  streamCapacity?: number;
  /** deadline of a tokenize/detokenize request to an instance, ms. Default 5000. */
  tokenizeTimeoutMs?: number;
  /** while the router's view expects an instance (none ready, one starting or restarting), a tokenize is retried up to this long, ms. Default 30000. */
  tokenizeHoldMs?: number;
  /** the engines' own tokenizer in the gateway (emulated engines): what no instance answers at the first attempt is answered here (legs.ts firstOrLocal). */
  localTokenizer?: LocalTokenizer;
  /** stream granted requests from the engine directly (docs/DATAPATH.md). Default true. */
  direct?: boolean;
  /** legs a request may continue on after its engine or instance died mid-stream. Default 3. */
  migrationLimit?: number;
  /** most bytes (UTF-8) of generated text kept per request for a migration (past it, no migration). Default 1 MiB. */
  migrationMaxBytes?: number;
  /** most bytes of generated text kept for migration by all of this gateway's streams together: past it, a stream's next piece makes it stop keeping text (no migration). Default 256 MiB. */
  migrationMaxTotalBytes?: number;
  /**
   * the idle deadline of a direct read of an engine (config timeouts.engineIdle, src/policy engine-liveness.ts): the
   * request's SLO, or `fallback` (the most lenient class's) for one without. Default the config's defaults.
   */
  engineIdle?: { settings: EngineIdleSettings; fallback: IdleSlo };
  /** deadline of the leg's end report to its instance, ms. Default 2000. */
  legReportTimeoutMs?: number;
  /** route requests itself and ask the chosen instance directly (absent: every request goes to the cluster intake). */
  router?: RequestRouter;
  /** deadline of one admission asked of an instance directly, ms. Default 2000 (at most admitAttemptMs). */
  directAdmitMs?: number;
  /** how often a routed leg waiting for its instance asks the router whether that instance's process is gone, ms. Default 250. */
  holderCheckMs?: number;
  /** the leader elections the intake may wait on (elections.ts): while one is under way, the intake's answer is waited for past admitTimeoutMs. */
  elections?: Elections;
  /** time and timers of every deadline, hold and backoff here (src/runtime/clock.ts). Default the system clock. */
  clock?: Clock;
}
