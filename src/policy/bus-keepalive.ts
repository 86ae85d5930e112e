/**
 * The keep-alive of every actor's NATS connection (src/runtime/bus.ts) against the liveness death window
 * (liveness.deadAfterMs). A NATS node that goes silent without a reset (SIGSTOP, a frozen host, a partition) loses
 * what its clients publish until each client finds its connection stale (BUS_MAX_PING_OUT pings unanswered) and
 * reconnects to another node. An instance manager on that node sends no status meanwhile: unless it is back on another
 * node within deadAfterMs of its last status, its pool leader declares it dead and ends its healthy streams. So the
 * ping period follows the death window (busPingMs: stale within three quarters of what it leaves after a reconnect), and config validation
 * refuses a window too short for stale detection plus a reconnect (deathWindowProblem). Pure: the actors' mains, the
 * Bus and the config read it.
 */

/** Pings outstanding at which the client calls its connection stale and reconnects (nats.js maxPingOut). */
export const BUS_MAX_PING_OUT = 3;
/** The ping period's bounds, ms. */
export const BUS_PING_MIN_MS = 50;
export const BUS_PING_MAX_MS = 1000;
/**
 * What a reconnect to an answering node takes after the stale verdict, ms: the client's reconnect wait (250 ms), the
 * dial of a local server, and the instance's next status on the new connection (every 250 ms by default).
 */
export const BUS_RECONNECT_MS = 600;

/**
 * The ping period of a connection whose actor's peers are declared dead after `deadAfterMs` of silence, ms: the stale
 * detection takes at most three quarters of what the window leaves after a reconnect (the last quarter is the margin
 * for a status on its way and a late timer), within BUS_PING_MIN_MS..BUS_PING_MAX_MS.
 */
export function busPingMs(deadAfterMs: number): number {
  const ping = Math.floor(((deadAfterMs - BUS_RECONNECT_MS) * 3) / (4 * (BUS_MAX_PING_OUT + 1)));
  return Math.min(BUS_PING_MAX_MS, Math.max(BUS_PING_MIN_MS, ping));
}

/** The ping period of a connection of no actor's config: that of the default death window (liveness.deadAfterMs 3000 ms). */
export const DEFAULT_BUS_PING_MS = busPingMs(3000);

/** The longest a connection to a silent node goes before its client calls it stale, ms: a ping period per ping outstanding, and one more. */
export function busStaleMs(pingMs: number): number {
  return pingMs * (BUS_MAX_PING_OUT + 1);
}

/**
 * Why a death window of `deadAfterMs` is too short for the keep-alive it sets (undefined: long enough): an instance
 * manager on a NATS node gone silent must notice it (busStaleMs) and be heard again through another node
 * (BUS_RECONNECT_MS) before its pool leader's verdict.
 */
export function deathWindowProblem(deadAfterMs: number): string | undefined {
  if (deathWindowFits(deadAfterMs)) return undefined;
  const ping = busPingMs(deadAfterMs);
  const need = busStaleMs(ping) + BUS_RECONNECT_MS;
  return `liveness.deadAfterMs: ${deadAfterMs} ms must exceed a NATS connection's stale detection (${busStaleMs(ping)} ms: a ping every ${ping} ms, ${BUS_MAX_PING_OUT + 1} periods) plus a reconnect to another node (${BUS_RECONNECT_MS} ms), ${need} ms: an instance on a silent NATS node would be declared dead, and its healthy streams ended, before it is heard again; set it to at least ${minDeadAfterMs()} ms`;
}

/** Whether a death window of `deadAfterMs` outlasts the stale detection and reconnect of the keep-alive it sets. */
export function deathWindowFits(deadAfterMs: number): boolean {
  return deadAfterMs > busStaleMs(busPingMs(deadAfterMs)) + BUS_RECONNECT_MS;
}

/** The shortest death window that fits (deathWindowFits), to 50 ms, ms. */
export function minDeadAfterMs(): number {
  let d = BUS_RECONNECT_MS;
  while (!deathWindowFits(d)) d += 50;
  return d;
}
