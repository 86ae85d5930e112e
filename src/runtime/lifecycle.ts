/**
 * Lifecycle of an actor, as a string union:
 * - starting: connecting and running onStart;
 * - running: serving;
 * - draining: refusing new work, finishing in-flight work under the grace deadline;
 * - stopped: done (terminal);
 * - failed: start or stop failed (terminal).
 */
export type LifecycleState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';
export const LIFECYCLE_STATES: readonly LifecycleState[] = ['starting', 'running', 'draining', 'stopped', 'failed'];
