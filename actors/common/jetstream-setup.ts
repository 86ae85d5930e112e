/**
 * The KV buckets and streams of a cluster, made by their owner. The first creator of a stream defines the subjects it
 * captures, so only the cluster manager (its NATS user, protocols/permissions.ts) and an admin create them: the
 * cluster manager at its start (setUpJetStreamInBackground), an operator's or a test's admin connection at deploy
 * (setUpJetStream). Every other actor binds what exists and retries until it does (src/runtime/kv-open.ts).
 */
import type { Logger } from 'pino';
import type { Bus } from '../../src/runtime/bus.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { DISPATCHED_TTL_MS, jetstream, leaseBuckets } from '../../protocols/index.ts';
import { ensureEventsStream, ensureRequestsStream, ensureResumeStream } from './events.ts';

/** The KV buckets: inventory, dispatched requests, the lease buckets of the bus's replicas (lease-slot.ts places them). */
export async function setUpBuckets(bus: Bus): Promise<void> {
  const leases = leaseBuckets(bus.jetstreamReplicas);
  await Promise.all([
    bus.kv(jetstream.inventoryBucket),
    bus.kv(jetstream.dispatchedBucket, { ttl: DISPATCHED_TTL_MS }),
    ...leases.map((b, i) => openLeaseBucket(bus, b, i, leases.length)),
  ]);
}

/** Every bucket and stream (a connection that may create them: the cluster manager's, an admin's). */
export async function setUpJetStream(bus: Bus): Promise<void> {
  await Promise.all([setUpBuckets(bus), ensureEventsStream(bus), ensureRequestsStream(bus), ensureResumeStream(bus)]);
}

/** how long a cluster manager replica waits for the events stream to be made before it contends for the planner lease, ms */
export const EVENTS_STREAM_WAIT_MS = 2000;

/**
 * The events stream made (when missing) before a replica contends for the planner lease, so that the first planner's
 * lease event is stored (an event published before the stream exists reaches live subscribers only). Bounded by
 * EVENTS_STREAM_WAIT_MS (a stream API call waits out JetStream's 5-s deadline when its server does not answer): past it
 * the lead's setup makes it (setUpJetStreamInBackground), and an election's event published before then reaches live
 * subscribers only.
 */
export function eventsStreamBeforeLead(bus: Bus, clock: Clock = systemClock): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = clock.setTimeout(resolve, EVENTS_STREAM_WAIT_MS);
    void ensureEventsStream(bus).catch(() => {}).finally(() => (clock.clearTimeout(t), resolve()));
  });
}

/** attempts of the cluster manager's setup at most, SETUP_RETRY_MS apart (each call bounded by nats.js's deadline). */
const SETUP_ATTEMPTS = 30;
const SETUP_RETRY_MS = 2000;

/**
 * The cluster manager's setup, beside its start: tried again SETUP_RETRY_MS after a failure (a JetStream meta leader
 * being elected, a server restarting), SETUP_ATTEMPTS times at most; `stopped()` ends it.
 */
export function setUpJetStreamInBackground(bus: Bus, log: Logger, stopped: () => boolean, clock: Clock = systemClock): Promise<boolean> {
  return (async () => {
    for (let attempt = 1; attempt <= SETUP_ATTEMPTS && !stopped(); attempt++) {
      try {
        await setUpJetStream(bus);
        return true;
      } catch (err) {
        log.warn({ attempt, err: (err as Error).message }, 'JetStream buckets and streams not all made: trying again');
        await new Promise<void>((r) => clock.setTimeout(() => r(), SETUP_RETRY_MS));
      }
    }
    if (!stopped()) log.error({ attempts: SETUP_ATTEMPTS }, 'JetStream buckets and streams not made: pool managers and node agents wait for them');
    return false;
  })();
}
