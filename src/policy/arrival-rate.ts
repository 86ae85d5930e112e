/**
 * Arrival rates as the instance manager reads them (machines/instance.ts). Pure.
 */
import type { RequestType } from '../../protocols/request-types.ts';

type Load = Partial<Record<RequestType, number>>;

/**
 * The arrival rate by type that a check within the epoch reads from the epoch's `arrivals` over `dtS` seconds: the
 * (N - 1) / dt estimate of the whole arrival process, N arrivals in all, split by type in proportion to their counts.
 * The check runs because a request has just arrived, so its window ends at an arrival: the time to the N-th arrival
 * of a Poisson process of rate r is Gamma(N, r), for which (N - 1) / t is the unbiased estimate of r, while N / t
 * overestimates it by N / (N - 1) (without bound at N = 1: one request a second into the epoch reads as 1 req/s on an
 * instance whose load is 0.1 req/s, and raised its clock to the max). The epoch's own rate (epochLoad) is counted
 * over the whole epoch, a window that does not end at an arrival: N / t there.
 */
export function riseRate(arrivals: Load, dtS: number): Load {
  let n = 0;
  for (const v of Object.values(arrivals)) n += v ?? 0;
  const out: Load = {};
  if (!(n > 1) || !(dtS > 0)) return out;
  const k = (n - 1) / n / dtS;
  for (const [t, v] of Object.entries(arrivals) as [RequestType, number][]) if (v > 0) out[t] = v * k;
  return out;
}
