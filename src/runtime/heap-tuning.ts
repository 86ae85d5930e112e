/**
 * The gateway's V8 heap tuning: no allocation-site pretenuring (docs/DATAPATH.md "Scavenges in the gateway: what they
 * copy"). V8 allocates the objects of a site whose objects survived its scavenges straight in the old generation
 * (pretenuring). Under a closed loop of many concurrent requests most of a request's objects outlive a scavenge,
 * so V8 pretenures the per-request sites; the same sites then keep allocating in the old generation when the
 * requests are short-lived again. Each such object is dead within the request but stays until the next full
 * collection, and a scavenge takes its pointers into the young generation as roots: the young objects it pointed to
 * are copied and promoted, scavenge after scavenge (~1.7 MB per scavenge of the sequential requests, a 2-5 ms pause
 * on the first token of the request it falls on). Without pretenuring a request's objects are born young and die
 * young: a scavenge copies only what is alive.
 */
import { setFlagsFromString } from 'node:v8';

/** The V8 flag (a heap flag read at each scavenge's end: it applies when set at run time). */
export const NO_PRETENURING_FLAG = '--no-allocation-site-pretenuring';

let applied = false;

/**
 * Turns V8's allocation-site pretenuring off for this process, once, unless `env.DYNAMOLLM_GATEWAY_PRETENURING` is
 * `1` (V8's default kept). Returns whether it is off.
 */
export function shortLivedHeap(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.DYNAMOLLM_GATEWAY_PRETENURING === '1') return false;
  if (!applied) setFlagsFromString(NO_PRETENURING_FLAG);
  applied = true;
  return true;
}
