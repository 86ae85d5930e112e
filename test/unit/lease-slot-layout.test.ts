/**
 * Lease buckets that cannot be made (src/runtime/lease-slot.ts): only a placement with no server for the bucket's
 * tag (nats-server 10005) is a LeaseLayoutError; a full store (10023 'insufficient resources') is an ordinary
 * failure, tried again. A bucket that cannot be placed is logged as an error periodically while it lasts.
 */
import { describe, expect, it } from 'vitest';
import type { Logger } from 'pino';
import { LeaseLayoutError, LeaseSlot, openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';

/** What openLeaseBucket uses of a Bus: kv(), refused with the JetStream API error `code`. */
const refusing = (code: number, description: string) => ({
  jetstreamReplicas: 3,
  kv: () => Promise.reject(Object.assign(new Error(description), { api_error: { code: 503, err_code: code, description } })),
}) as unknown as Bus;

describe('lease bucket creation refused', () => {
  it('no suitable peers for the tag: LeaseLayoutError; insufficient resources: the server\'s own error', async () => {
    const noPeers = await openLeaseBucket(refusing(10005, 'no suitable peers for placement'), 'dyn_v1_leases_1', 1, 3).catch((e: unknown) => e);
    expect(noPeers).toBeInstanceOf(LeaseLayoutError);
    const full = await openLeaseBucket(refusing(10023, 'insufficient resources'), 'dyn_v1_leases_1', 1, 3).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(Error);
    expect(full).not.toBeInstanceOf(LeaseLayoutError);
  });

  it('a bucket that cannot be placed is logged as an error every 30 s while it lasts', () => {
    const clock = new ManualClock(1_000_000);
    const errors: string[] = [];
    const log = { error: (_o: unknown, m: string) => errors.push(m), warn: () => {}, info: () => {}, debug: () => {} } as unknown as Logger;
    const slot = new LeaseSlot({ bus: refusing(10005, 'x'), key: 'pool.p', holder: 'h', opTimeoutMs: 500, clock, log }, 'dyn_v1_leases_1', 1, 3);
    const err = new LeaseLayoutError('dyn_v1_leases_1', 'dyn-lease-1', new Error('no suitable peers for placement'));
    for (let t = 0; t < 95_000; t += 500) {
      slot.failed(err);
      clock.advance(500);
    }
    expect(errors.length).toBe(4);
  });
});
