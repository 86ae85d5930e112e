/**
 * Decision events: every decision of an actor (scale, merge, re-shard, clock change, emergency step,
 * failure handling) is published on subjects.event(kind, actor) with the inputs that justified it. The
 * JetStream stream jetstream.eventsStream (created by the cluster manager, ensureEventsStream) keeps them.
 */
import type { Logger } from 'pino';
import { DecisionEvent, jetstream, subjects, type EventKind } from '../../protocols/index.ts';
import type { Bus } from '../../src/runtime/bus.ts';

export type EventPublisher = (kind: EventKind, summary: string, decision: Record<string, unknown>, inputs: Record<string, unknown>) => void;

/** A publisher for one actor. Never throws (an event that cannot be sent is logged, the decision stands). */
export function eventPublisher(bus: Bus, actor: string, log: Logger): EventPublisher {
  return (kind, summary, decision, inputs) => {
    const ev: DecisionEvent = { v: 1, kind, actor, atMs: Date.now(), summary: summary.slice(0, 1024), decision, inputs };
    log.info({ event: kind, decision }, summary);
    try {
      bus.publish(subjects.event(kind, actor), DecisionEvent, ev);
    } catch (err) {
      log.warn({ err: (err as Error).message, kind }, 'decision event not published');
    }
  };
}

/** Create the events stream when missing (idempotent; safe from several processes). */
export async function ensureEventsStream(bus: Bus, maxAgeS = 7 * 24 * 3600): Promise<void> {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(bus.nc);
  try {
    await jsm.streams.info(jetstream.eventsStream);
    return;
  } catch {
    // missing: create below
  }
  try {
    await jsm.streams.add({
      name: jetstream.eventsStream,
      subjects: [...jetstream.eventsSubjects],
      max_age: maxAgeS * 1_000_000_000,
      max_msgs: 1_000_000,
    });
  } catch (err) {
    // another replica created it meanwhile
    await jsm.streams.info(jetstream.eventsStream).catch(() => {
      throw err;
    });
  }
}
