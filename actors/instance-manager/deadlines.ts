/**
 * An instance manager's shutdown deadlines (the ActorOptions its process runs with) and the bound they give: its node
 * agent's grace before SIGKILL (actors/node-agent/deadlines.ts INSTANCE_STOP_GRACE_MS) is derived from it.
 */
import { shutdownLimitMs, type ActorOptions } from '../../src/runtime/actor.ts';

/** drain grace, force and stop hook of an instance manager (absent: src/runtime/actor.ts defaults). */
export const INSTANCE_DEADLINES: Pick<ActorOptions, 'drainGraceMs' | 'drainForceMs' | 'stopHookMs'> = {};

/** The longest an instance manager takes from its SIGTERM to its exit by its deadlines, ms. */
export const INSTANCE_SHUTDOWN_LIMIT_MS = shutdownLimitMs(INSTANCE_DEADLINES);
