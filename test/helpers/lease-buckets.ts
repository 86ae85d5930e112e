/**
 * The lease buckets of a fresh NATS cluster, made once its JetStream meta leader is up (before that, making a
 * bucket fails): the majority layout's `replicas` one-replica buckets, and with `single` also the one-bucket layout.
 */
import { leaseBuckets } from '../../protocols/index.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';

export async function makeLeaseBuckets(bus: Bus, replicas: number, opts: { single?: boolean; withinMs?: number } = {}): Promise<void> {
  const until = Date.now() + (opts.withinMs ?? 30_000);
  for (;;) {
    try {
      await Promise.all([
        ...leaseBuckets(replicas).map((b, i) => openLeaseBucket(bus, b, i, replicas)),
        ...(opts.single ? [openLeaseBucket(bus, leaseBuckets(1)[0]!, 0, 1)] : []),
      ]);
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
