/**
 * The NATS Service API responder of one actor (protocols/service.ts): answers `$SRV.PING|INFO|STATS`
 * for the whole cluster, for its service name and for its own id, listing every subject the actor serves
 * through its Bus as an endpoint with request, error and processing-time counters.
 *
 * The endpoints are the Bus's serve handles; the Bus records each request's processing time (receipt to
 * reply) and its errors here. Answers are JSON, as the protocol requires.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  SERVICE_VERBS, endpointName, serviceSubjects,
  type ServiceEndpointStats, type ServiceInfoResponse, type ServicePingResponse, type ServiceStatsResponse, type ServiceVerb,
} from '../../protocols/service.ts';

export interface ServiceIdentityOpts {
  name: string;
  id: string;
  version: string;
  description: string;
  metadata?: Record<string, string>;
}

/** Counters of one endpoint. */
export class EndpointStats {
  readonly name: string;
  readonly subject: string;
  readonly queue?: string;
  numRequests = 0;
  numErrors = 0;
  lastError = '';
  processingNs = 0;

  constructor(name: string, subject: string, queue?: string) {
    this.name = name;
    this.subject = subject;
    this.queue = queue;
  }

  /** One request answered (or refused: `error` set) after `ns` nanoseconds of processing. */
  record(ns: number, error?: string): void {
    this.numRequests++;
    this.processingNs += Math.max(0, Math.round(ns));
    if (error !== undefined) {
      this.numErrors++;
      this.lastError = error.slice(0, 1024);
    }
  }

  toJSON(): ServiceEndpointStats {
    const s: ServiceEndpointStats = {
      name: this.name,
      subject: this.subject,
      num_requests: this.numRequests,
      num_errors: this.numErrors,
      last_error: this.lastError,
      processing_time: this.processingNs,
      average_processing_time: this.numRequests > 0 ? Math.round(this.processingNs / this.numRequests) : 0,
    };
    if (this.queue) s.queue_group = this.queue;
    return s;
  }
}

export class ServiceResponder {
  readonly identity: ServiceIdentityOpts;
  readonly started = new Date();
  #endpoints = new Map<string, EndpointStats>();
  #subs: Subscription[] = [];
  #enc = new TextEncoder();

  constructor(identity: ServiceIdentityOpts) {
    this.identity = identity;
  }

  /** Register an endpoint (a served subject). Names are unique within the service (a suffix when needed). */
  addEndpoint(subject: string, queue?: string): EndpointStats {
    const base = endpointName(subject);
    let name = base;
    for (let i = 2; this.#endpoints.has(name); i++) name = `${base}-${i}`;
    const ep = new EndpointStats(name, subject, queue);
    this.#endpoints.set(name, ep);
    return ep;
  }

  removeEndpoint(ep: EndpointStats): void {
    if (this.#endpoints.get(ep.name) === ep) this.#endpoints.delete(ep.name);
  }

  get endpoints(): EndpointStats[] {
    return [...this.#endpoints.values()];
  }

  ping(): ServicePingResponse {
    return { type: 'io.nats.micro.v1.ping_response', ...this.#identity() };
  }

  info(): ServiceInfoResponse {
    return {
      type: 'io.nats.micro.v1.info_response',
      ...this.#identity(),
      description: this.identity.description,
      endpoints: this.endpoints.map((e) => (e.queue ? { name: e.name, subject: e.subject, queue_group: e.queue, metadata: null } : { name: e.name, subject: e.subject, metadata: null })),
    };
  }

  stats(): ServiceStatsResponse {
    return { type: 'io.nats.micro.v1.stats_response', ...this.#identity(), started: this.started.toISOString(), endpoints: this.endpoints.map((e) => e.toJSON()) };
  }

  #identity() {
    const { name, id, version, metadata } = this.identity;
    return { name, id, version, metadata: metadata ?? null };
  }

  /** Subscribe to the control subjects of the three verbs (no queue group: every instance answers). */
  start(nc: NatsConnection, log: Logger): void {
    const { name, id } = this.identity;
    for (const verb of SERVICE_VERBS) {
      for (const subject of serviceSubjects.controlAll(verb, name, id)) {
        this.#subs.push(
          nc.subscribe(subject, {
            callback: (err, m) => {
              if (err) {
                log.warn({ subject, err: err.message }, 'service api subscription error');
                return;
              }
              if (!m.reply) return;
              try {
                m.respond(this.#enc.encode(JSON.stringify(this.#answer(verb))));
              } catch (e) {
                log.debug({ subject, err: (e as Error).message }, 'service api reply failed');
              }
            },
          }),
        );
      }
    }
  }

  #answer(verb: ServiceVerb): ServicePingResponse | ServiceInfoResponse | ServiceStatsResponse {
    return verb === 'PING' ? this.ping() : verb === 'INFO' ? this.info() : this.stats();
  }

  stop(): void {
    for (const s of this.#subs) if (!s.isClosed()) s.unsubscribe();
    this.#subs = [];
  }
}
