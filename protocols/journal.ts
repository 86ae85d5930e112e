/**
 * The gateways' resume journal (docs/PROTOCOL.md "Resumable streams"): ResumeEntry, on subjects.resume, kept by the
 * JetStream stream jetstream.resumeStream.
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { FINISH_REASONS, inferenceRequest, usage } from './messages.ts';
import { REQUEST_TYPES } from './request-types.ts';

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();

/** the longest response id a journal head keeps, characters (Node's default header limit, 16 KiB, bounds an X-Request-Id below it). */
export const RESPONSE_ID_MAX = 16384;

/** events one ResumeEntry carries at most (one engine read's events: far fewer). */
export const MAX_RESUME_EVENTS = 4096;

/**
 * gateway -> the resume journal (subjects.resume, JetStream jetstream.resumeStream): what a resumable SSE stream
 * (docs/PROTOCOL.md "Resumable streams") sent its client, so that another gateway replica can take it over after a
 * reconnect with Last-Event-ID. One entry per engine read (its events together), one per leg, one at the end.
 * Event `i` of the stream has SSE id `<id>:<i>`; a chat stream's event 0 is its role chunk (written from `head`).
 */
export const resumeEntry = z.object({
  v,
  /** the client's request id (the SSE ids' prefix). */
  id,
  /** the writer: 0 the gateway that took the request, one more per resume. A reader drops an entry older than one it has read. */
  gen: int,
  /** gen 0's first entry: the request (as the cluster got it, before any migration) and how its events are framed. */
  head: z.object({
    req: inferenceRequest,
    /** the events' `created`, s since the epoch. */
    created: int,
    includeUsage: z.boolean(),
    continuousUsage: z.boolean(),
    /** the events' id after `cmpl-` / `chatcmpl-` when it is not `id`: the client's (X-Request-Id, else request_id; Node's header limit bounds it). */
    responseId: z.string().max(RESPONSE_ID_MAX).optional(),
    /** a chat's role in its role chunk when it is not `assistant` (add_generation_prompt false: the last message's). */
    role: z.string().max(256).optional(),
  }).optional(),
  /** the index of `events[0]`: a reader keeps the events before it and replaces those from it on. */
  from: int.optional(),
  /** plain text events (a text delta each), in order. */
  events: z.array(z.object({ text: z.string(), tokens: int })).max(MAX_RESUME_EVENTS).optional(),
  /**
   * the leg now generating: its id and instance (a resume ends it there: LegReport end with `resumed`, then Cancel), the legs before it
   * (migrations and resumes), the tokens sent before it, and the energy of the legs before it (J); `energyEstimatedJ`:
   * of that energy, the gateway's estimate for legs whose instance did not answer their energy (absent: none).
   * `startedMs` (the writer's wall clock), `pool` and `type`: when and where the leg started streaming; a resume whose
   * end report gets no answer (the instance died too) estimates the leg's energy from that instance's telemetry since
   * then and publishes its RequestRecord (docs/DATAPATH.md "Request migration").
   */
  leg: z.object({
    id, instance: z.string().max(128).optional(), legs: int, sentBefore: int, energyJ: nonneg,
    energyEstimatedJ: nonneg.optional(), energySource: z.enum(['measured', 'modelled']).optional(),
    startedMs: nonneg.optional(), pool: z.string().max(128).optional(), type: z.enum(REQUEST_TYPES).optional(),
  }).optional(),
  /** the stream ended: its last event (index `at`: its text, finish_reason, stop_reason) and usage; the usage event (when asked for) and [DONE] follow it. */
  end: z.object({
    at: int, text: z.string(), tokens: int, finish: z.enum(FINISH_REASONS), stopReason: z.union([z.string(), z.number().int(), z.null()]), usage: usage.optional(),
  }).optional(),
  /** the stream can no longer be resumed (an event the journal does not keep, its size cap, an error event), and why. */
  stop: z.string().max(256).optional(),
  /**
   * an unresumable range: the client was sent events from `from` on without ids (its last event id reset), because
   * the journal did not hold them in time. Open (no `until`, with `why`): a resume from any event is refused (410).
   * Closed at `until` (the journal held every event before it, and the events from `until` on carry ids again): a
   * resume from an event before `until` is refused (410), one from `until` on is served. The last marker read counts.
   */
  unresumable: z.object({ from: int, until: int.optional(), why: z.string().max(256).optional() }).optional(),
});
export type ResumeEntry = z.infer<typeof resumeEntry>;
export const ResumeEntry = codec('ResumeEntry', resumeEntry);
