/**
 * Value of a leader lease in the JetStream KV bucket `jetstream.leasesBucket` (added by the runtime).
 * nats-server 2.9 has no per-key TTL, so the expiry travels in the value: a lease is free once
 * `expiresMs < now` (ms since epoch, read on the contender's clock; assumes clocks agree within a small
 * fraction of the TTL, exact on one machine, NTP-level across nodes).
 */
import { z } from 'zod';
import { codec } from './codec.ts';

export const leaseValue = z.object({
  v: z.literal(1),
  /** who holds it (actor id). Empty string: released. */
  holder: z.string().max(128),
  /** when the holder took it, ms since epoch. */
  acquiredMs: z.number().finite().nonnegative(),
  /** when it lapses unless renewed, ms since epoch. */
  expiresMs: z.number().finite().nonnegative(),
  /** grows by one at each change of holder (fencing token). */
  term: z.number().int().nonnegative(),
  /**
   * the holder's process, `<boot id>/<pid namespace>/<pid>` (Linux): a later process of the same holder id on the
   * same machine and pid namespace (a supervisor's restart) sees whether it is gone and may take the lease at once.
   */
  proc: z.string().max(160).optional(),
});
export type LeaseValue = z.infer<typeof leaseValue>;
export const LeaseValue = codec('LeaseValue', leaseValue);
