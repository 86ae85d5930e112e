/**
 * The NATS Service API (ADR-32, `io.nats.micro.v1`) as dynamollm's actors speak it: every actor is a
 * service named `dynamollm-<kind>` whose id is the actor id, and every subject it serves is an endpoint.
 * Unlike dynamollm's own messages these are JSON (the protocol says so), so `nats micro ls|info|stats`
 * and every NATS services client read them.
 *
 * Subjects: `$SRV.<VERB>` (all services), `$SRV.<VERB>.<name>` (all instances of one service) and
 * `$SRV.<VERB>.<name>.<id>` (one instance), VERB one of PING, INFO, STATS; the request body is ignored.
 */
import { z } from 'zod';
import type { ActorKind } from './subjects.ts';
import { token } from './subjects.ts';

export const SERVICE_VERBS = ['PING', 'INFO', 'STATS'] as const;
export type ServiceVerb = (typeof SERVICE_VERBS)[number];

/** Service name of an actor kind (`[A-Za-z0-9_-]+`, as the protocol requires). */
export function serviceName(kind: ActorKind): string {
  return `dynamollm-${kind}`;
}

export const serviceSubjects = {
  /** `$SRV.VERB`, `$SRV.VERB.name` or `$SRV.VERB.name.id`. */
  control: (verb: ServiceVerb, name?: string, id?: string): string => {
    if (id !== undefined && name === undefined) throw new RangeError('a service id needs its name');
    let s = `$SRV.${verb}`;
    if (name !== undefined) s += `.${token(name, 'service name')}`;
    if (id !== undefined) s += `.${token(id, 'service id')}`;
    return s;
  },
  /** The three subjects one instance answers on for one verb. */
  controlAll: (verb: ServiceVerb, name: string, id: string): string[] => [
    serviceSubjects.control(verb),
    serviceSubjects.control(verb, name),
    serviceSubjects.control(verb, name, id),
  ],
} as const;

const NAME = /^[A-Za-z0-9_-]+$/;
// semantic version 2.0.0, as the protocol requires of `version`
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
const metadata = z.record(z.string()).nullable().optional();
const identity = {
  name: z.string().min(1).regex(NAME),
  id: z.string().min(1),
  version: z.string().min(5).regex(SEMVER),
  metadata,
};
/** integer nanoseconds (the protocol's durations). */
const nanos = z.number().int();

export const servicePingResponse = z.object({ type: z.literal('io.nats.micro.v1.ping_response'), ...identity });
export type ServicePingResponse = z.infer<typeof servicePingResponse>;

export const serviceEndpointInfo = z.object({
  name: z.string().min(1).regex(NAME),
  subject: z.string().min(1),
  queue_group: z.string().optional(),
  metadata,
});
export type ServiceEndpointInfo = z.infer<typeof serviceEndpointInfo>;

export const serviceInfoResponse = z.object({
  type: z.literal('io.nats.micro.v1.info_response'),
  ...identity,
  description: z.string(),
  endpoints: z.array(serviceEndpointInfo),
});
export type ServiceInfoResponse = z.infer<typeof serviceInfoResponse>;

export const serviceEndpointStats = z.object({
  name: z.string().min(1).regex(NAME),
  subject: z.string().min(1),
  queue_group: z.string().optional(),
  num_requests: z.number().int().nonnegative(),
  num_errors: z.number().int().nonnegative(),
  /** '' when no error happened yet. */
  last_error: z.string(),
  processing_time: nanos,
  average_processing_time: nanos,
  data: z.record(z.unknown()).optional(),
});
export type ServiceEndpointStats = z.infer<typeof serviceEndpointStats>;

export const serviceStatsResponse = z.object({
  type: z.literal('io.nats.micro.v1.stats_response'),
  ...identity,
  /** RFC 3339 time the service started. */
  started: z.string().datetime({ offset: true }),
  endpoints: z.array(serviceEndpointStats),
});
export type ServiceStatsResponse = z.infer<typeof serviceStatsResponse>;

/** Endpoint name of a served subject: its tokens after the protocol root, joined by '-'. */
export function endpointName(subject: string): string {
  const rest = subject.replace(/^dyn\.v1\./, '');
  const name = rest.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '');
  return name || 'endpoint';
}
