/**
 * Decision events: every decision of an actor (scale, merge, re-shard, clock change, emergency step,
 * failure handling) is published on subjects.event(kind, actor) with the inputs that justified it. The
 * JetStream stream jetstream.eventsStream (created by the cluster manager, ensureEventsStream) keeps them.
 */
import type { Logger } from 'pino';
import { DecisionEvent, jetstream, subjects, type EventKind } from '../../protocols/index.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';

export type EventPublisher = (kind: EventKind, summary: string, decision: Record<string, unknown>, inputs: Record<string, unknown>) => void;

/** A publisher for one actor (events stamped by `clock`). Never throws (an event that cannot be sent is logged, the decision stands). */
export function eventPublisher(bus: Bus, actor: string, log: Logger, clock: Clock = systemClock): EventPublisher {
  return (kind, summary, decision, inputs) => {
    const ev: DecisionEvent = { v: 1, kind, actor, atMs: clock.now(), summary: summary.slice(0, 1024), decision, inputs };
    // the inputs too at debug level (the twin check compares the two sides' decisions event by event)
    log.info({ event: kind, decision, ...(log.isLevelEnabled('debug') ? { inputs } : {}) }, summary);
    try {
      bus.publish(subjects.event(kind, actor), DecisionEvent, ev);
    } catch (err) {
      log.warn({ err: (err as Error).message, kind }, 'decision event not published');
    }
  };
}

/**
 * Retention of the JetStream streams (docs/PROTOCOL.md): whichever limit is reached first removes the
 * oldest messages (discard 'old'), so a full stream never refuses a publication and never slows a publisher
 * (actors publish with core NATS, fire-and-forget; the server appends). File storage, one replica by default.
 */
export const STREAM_RETENTION = {
  /** DYN_V1_EVENTS: decision events, a few per minute per actor. */
  events: { maxAgeS: 7 * 24 * 3600, maxBytes: 256 * 2 ** 20, maxMsgs: 1_000_000, discard: 'old' as const },
  /** DYN_V1_REQUESTS: one RequestRecord (~250 B) per request; a billing consumer has a day to catch up. */
  requests: { maxAgeS: 24 * 3600, maxBytes: 1024 * 2 ** 20, maxMsgs: 10_000_000, discard: 'old' as const },
  /**
   * DYN_V1_RESUME: the resume journal of the opted-in SSE streams (one entry per engine read, ~100 B-1 KB). A stream
   * is resumable for maxAgeS after its last entry (a request's own deadline is the gateway's requestTimeoutS, 600 s by
   * default); maxMsgsPerSubject bounds one stream's entries (past it the oldest go, and a resume finds the journal cut: 410).
   */
  resume: { maxAgeS: 600, maxBytes: 256 * 2 ** 20, maxMsgs: 1_000_000, maxMsgsPerSubject: 65_536, discard: 'old' as const },
} as const;

/** Create the events stream when missing (idempotent; safe from several processes). */
export async function ensureEventsStream(bus: Bus): Promise<void> {
  await ensureStream(bus, jetstream.eventsStream, [...jetstream.eventsSubjects], STREAM_RETENTION.events);
}

/** Create the request-records stream when missing (idempotent; safe from several processes). */
export async function ensureRequestsStream(bus: Bus): Promise<void> {
  await ensureStream(bus, jetstream.requestsStream, [...jetstream.requestsSubjects], STREAM_RETENTION.requests);
}

/**
 * Create the resume journal's stream when missing (idempotent; safe from several processes). Gateways read it by
 * subject (actors/gateway/resume.ts readJournal): one replica by direct get (direct get on), a replicated stream
 * through its leader's message get (direct get off: a direct get may be answered by a follower that has not applied
 * an acknowledged append yet, e.g. one catching up after a restart, and a resume would find the stream missing).
 * A stream that exists with the other setting is updated to it.
 */
export async function ensureResumeStream(bus: Bus): Promise<void> {
  await ensureStream(bus, jetstream.resumeStream, [...jetstream.resumeSubjects], STREAM_RETENTION.resume, bus.jetstreamReplicas <= 1);
}

async function ensureStream(bus: Bus, name: string, subjects: string[], r: { maxAgeS: number; maxBytes: number; maxMsgs: number; maxMsgsPerSubject?: number; discard: 'old' }, allowDirect = false): Promise<void> {
  const { jetstreamManager, DiscardPolicy, StorageType } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(bus.nc);
  let info;
  try {
    info = await jsm.streams.info(name);
  } catch {
    // missing: create below
  }
  if (info) {
    if ((info.config.allow_direct ?? false) !== allowDirect) await jsm.streams.update(name, { ...info.config, allow_direct: allowDirect });
    return;
  }
  try {
    await jsm.streams.add({
      name,
      subjects,
      storage: StorageType.File,
      max_age: r.maxAgeS * 1_000_000_000,
      max_bytes: r.maxBytes,
      max_msgs: r.maxMsgs,
      discard: r.discard === 'old' ? DiscardPolicy.Old : DiscardPolicy.New,
      num_replicas: bus.jetstreamReplicas,
      ...(r.maxMsgsPerSubject !== undefined ? { max_msgs_per_subject: r.maxMsgsPerSubject } : {}),
      ...(allowDirect ? { allow_direct: true } : {}),
    });
  } catch (err) {
    // another replica created it meanwhile
    await jsm.streams.info(name).catch(() => {
      throw err;
    });
  }
}
