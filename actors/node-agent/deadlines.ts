/**
 * A node agent's shutdown deadlines (the ActorOptions its process runs with), the bound they give, and its grace before
 * it SIGKILLs an instance manager. Whatever supervises a node agent (dynamollm up, deploy/k8s, deploy/systemd) gives it at
 * least NODE_AGENT_SHUTDOWN_LIMIT_MS between its SIGTERM and its SIGKILL.
 */
import { KILL_MARGIN_MS, shutdownLimitMs, type ActorOptions } from '../../src/runtime/actor.ts';
import { INSTANCE_SHUTDOWN_LIMIT_MS } from '../instance-manager/deadlines.ts';

/**
 * ms an instance manager gets between its SIGTERM and its SIGKILL when it is stopped (a start_instance's graceMs is at
 * most this): its own shutdown bound (actors/instance-manager/deadlines.ts: its drain, its engine's stop, its last status
 * and its connection's close, by their deadlines) plus KILL_MARGIN_MS (3 s) for the process's start of exit and
 * its signal's delivery.
 */
export const INSTANCE_STOP_GRACE_MS = INSTANCE_SHUTDOWN_LIMIT_MS + KILL_MARGIN_MS;
/**
 * A node agent's stop hook deadline (ActorOptions.stopHookMs), ms: its instance managers stop together within
 * INSTANCE_STOP_GRACE_MS, and 5 s for its records, its GPU reads and its last status. Its whole shutdown bound is
 * src/runtime/actor.ts shutdownLimitMs of it (deploy/k8s: terminationGracePeriodSeconds covers it).
 */
export const NODE_AGENT_STOP_HOOK_MS = INSTANCE_STOP_GRACE_MS + 5000;

/** drain grace, force and stop hook of a node agent (absent: src/runtime/actor.ts defaults). */
export const NODE_AGENT_DEADLINES: Pick<ActorOptions, 'drainGraceMs' | 'drainForceMs' | 'stopHookMs'> = { stopHookMs: NODE_AGENT_STOP_HOOK_MS };

/** The longest a node agent takes from its SIGTERM to its exit by its deadlines, ms. */
export const NODE_AGENT_SHUTDOWN_LIMIT_MS = shutdownLimitMs(NODE_AGENT_DEADLINES);
