/** What the lease tests watch: which contenders claim to lead, sampled, and a condition awaited within a bound. */
import type { LeaderLease } from '../../src/runtime/lease.ts';

/** Every 20 ms, which of `ls` claim to lead. */
export function sample(ls: LeaderLease[]): { samples: { t: number; leaders: string[] }[]; stop(): void } {
  const samples: { t: number; leaders: string[] }[] = [];
  const timer = setInterval(() => samples.push({ t: Date.now(), leaders: ls.filter((l) => l.isLeader()).map((l) => l.holder) }), 20);
  return { samples, stop: () => clearInterval(timer) };
}

/** Resolves once `ok()` holds, polled every 20 ms; throws naming `what` after `ms`. */
export async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
}
