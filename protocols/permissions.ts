/**
 * Who may publish and subscribe where: the ONE table of NATS rights of dynamollm's roles. The server
 * configs (nats.conf, deploy/nats/cluster.conf, deploy/k8s/nats.conf and the per-actor config `up`
 * writes) are generated from it (src/runtime/nats-server-config.ts); pubsub and the tests read it too.
 *
 * Every right is a function of the actor: with its id (and an instance's pool) the rights are the
 * actor's own (per-actor users: an instance may publish status only as itself, read only its own admit
 * subject, a node agent write only its own inventory key); without them, the rights of any actor of the
 * role (id tokens become `*`), for configs with one user per role.
 *
 * Principles (issue 12):
 * - inboxes are prefixed per actor (`_INBOX.<kind>.<id>`, inboxPrefix()); nobody subscribes `_INBOX.>`;
 * - a responder may publish into the inboxes of the roles whose requests it serves, and no other (ANSWERS): the
 *   right to answer survives its reconnect, which `allow_responses` (kept, for the rest) does not;
 * - KV keys are written only by their owner: leases `cluster.planner` by cluster managers, `pool.<p>` by
 *   pool managers; the inventory's `pool.<p>` (assignments) by cluster managers, `node.<n>` by node n;
 * - the events stream (subjects `evt.>`) is written only by control roles (cluster, pool, instance, node),
 *   each only under its own id (pool leaders under the pools' ids);
 * - the gateway may only submit requests (to the cluster intake, or to an instance's admission when it routes
 *   the request itself: `inst.<id>.admit`, which the instance checks like any admission), read token streams,
 *   the routing table and the instances' status (its routing view), cancel, report the legs of the requests
 *   it streams from an engine directly (`inst.<id>.leg`), append to and read back the resume journal of its
 *   resumable streams (`resume.<request>`, direct get on that one stream), publish the RequestRecord of a leg whose
 *   instance died before recording it (`tel.req.<pool>`, its energy estimated and labelled so), read telemetry, events and
 *   heartbeats (its dashboard), and answer the observer's request for its own routing view (`view.gateway.<id>`):
 *   no command subject, no other JetStream;
 * - the observer reads (telemetry, events live and through its own consumer of the events stream,
 *   heartbeats, the lease records), asks the cluster status and each gateway's and pool manager's dispatch view
 *   (`view.<kind>.<id>`, which each answers for itself only) and sends NATS Service API requests; it changes nothing;
 * - the disconnect advisories of the cluster's account (controlSubjects.connectionEnded, imported from the server's
 *   system account) are read by those that keep a dispatch view (cluster and pool managers, gateways) and
 *   published by no actor: only the server writes them;
 * - every actor serves the NATS Service API: `$SRV.PING|INFO|STATS` and `$SRV.<verb>.dynamollm-<kind>[.<id>]`.
 */
import { controlSubjects, dispatchedKeys, inventoryKeys } from './control.ts';
import { SERVICE_VERBS, serviceName, serviceSubjects } from './service.ts';
import { DISPATCH_VIEW_KINDS, ROOT, allLeaseBuckets, jetstream, kvKeySubject, leaseKeys, subjects, token, type ActorKind } from './subjects.ts';

export const ROLES = ['gateway', 'cluster', 'pool', 'instance', 'node', 'observer', 'admin'] as const;
export type Role = (typeof ROLES)[number];
/** Roles whose actors take control decisions (may write the events stream). */
export const CONTROL_ROLES = ['cluster', 'pool', 'instance', 'node'] as const satisfies readonly Role[];

export interface Permissions {
  publish: string[];
  subscribe: string[];
  /** may answer requests it received (on their reply subjects). */
  allowResponses: boolean;
}

export interface ActorIdentity {
  role: Role;
  /** actor id; absent: any actor of the role. */
  id?: string;
  /** instance: its pool; absent: any pool. */
  pool?: string;
  /** pool manager: the pools it may lead; absent: any pool. */
  pools?: string[];
  /** gateway: its worker processes (gateway.workers) share its credentials, each as `workerId(id, i)`; default 1. */
  workers?: number;
}

/** The actor id of worker `index` of the actor `id` (src/runtime/workers.ts): its own inbox, heartbeat and service subjects. */
export function workerId(id: string, index: number): string {
  return `${id}-w${index}`;
}

const ANY = '__ANY__';
/** A subject function's output with the placeholder token(s) turned into `*`. */
const wild = (s: string): string => s.split(ANY).join('*');
const idOr = (id: string | undefined): string => (id === undefined ? ANY : token(id));

/** Inbox prefix of an actor's connection (nats.js `inboxPrefix`): requests' replies arrive under it. */
export function inboxPrefix(kind: ActorKind | 'admin' | 'tool', id: string): string {
  return `_INBOX.${kind}.${token(id)}`;
}

function inboxOf(role: Role, id: string | undefined): string {
  return `_INBOX.${role}.${id === undefined ? '*' : token(id)}.>`;
}

/** Subjects an actor of `kind` (with `id`, or any) answers NATS Service API requests on. */
function serviceSubs(kind: ActorKind, id: string | undefined): string[] {
  const name = serviceName(kind);
  return SERVICE_VERBS.flatMap((v) => [serviceSubjects.control(v), serviceSubjects.control(v, name), wild(serviceSubjects.control(v, name, idOr(id)))]);
}

/**
 * The JetStream owner's rights on a KV bucket (the cluster manager's): create its stream (the first creator of a stream
 * defines the subjects it captures, so no other role may), read it, and watch it. No write to any key.
 */
function kvOwn(bucket: string): string[] {
  const st = `KV_${bucket}`;
  return [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${st}`,
    `$JS.API.STREAM.CREATE.${st}`,
    `$JS.API.STREAM.MSG.GET.${st}`,
    `$JS.API.DIRECT.GET.${st}`,
    `$JS.API.DIRECT.GET.${st}.>`,
    `$JS.API.CONSUMER.CREATE.${st}`,
    `$JS.API.CONSUMER.CREATE.${st}.>`,
    `$JS.API.CONSUMER.INFO.${st}.>`,
    `$JS.API.CONSUMER.DELETE.${st}.>`,
    `$JS.FC.${st}.>`,
  ];
}
/**
 * Rights to bind a KV bucket that exists and nothing more: its stream info (src/runtime/kv-open.ts asks it, and an
 * actor that may not create the bucket waits for it by it). An actor that only writes its own keys (a node agent) has
 * this and its keys' publish: no read, no consumer (nats-server checks neither a push consumer's deliver subject nor a
 * JetStream API request's reply subject against the caller's rights, so either would carry the bytes of a key it wrote
 * to any subject of the account).
 */
const kvBind = (bucket: string): string[] => [`$JS.API.STREAM.INFO.KV_${bucket}`];
/** Rights to read keys of a KV bucket that exists: bind it, and kv.get (a stream message get, or a direct get). No consumer. */
function kvGet(bucket: string): string[] {
  const st = `KV_${bucket}`;
  return [...kvBind(bucket), `$JS.API.STREAM.MSG.GET.${st}`, `$JS.API.DIRECT.GET.${st}`, `$JS.API.DIRECT.GET.${st}.>`];
}
/**
 * JetStream API rights to read a KV bucket that exists, and nothing more: kvGet, and its own watch or key listing (kv.watch,
 * kv.keys: an ordered push consumer created with a name and its filter in the API subject, the filter inside `keys` of the
 * bucket, delivered to the reader's own inbox; its info, its delete, its flow control). No stream creation, no key
 * write, no purge. The consumer's deliver subject is not confined by nats-server 2.9/2.10 (its body, unchecked): what
 * such a consumer could deliver elsewhere is dropped by every actor's Bus (src/runtime/jetstream-origin.ts).
 */
function kvRead(bucket: string, keys = '>'): string[] {
  const st = `KV_${bucket}`;
  return [
    ...kvGet(bucket),
    `$JS.API.CONSUMER.CREATE.${st}.*.${kvKeySubject(bucket, keys)}`,
    `$JS.API.CONSUMER.INFO.${st}.*`,
    `$JS.API.CONSUMER.DELETE.${st}.*`,
    `$JS.FC.${st}.>`,
  ];
}
/**
 * The reads of the resume journal (`{seq, next_by_subj}` in the body): a gateway reads a stream's entries, nothing
 * else. One replica: direct get. Replicated: the stream leader's message get (a direct get may be answered by a
 * follower that has not applied an acknowledged append yet; actors/common/events.ts ensureResumeStream).
 */
export const resumeDirectGet = (): string => `$JS.API.DIRECT.GET.${jetstream.resumeStream}`;
export const resumeLeaderGet = (): string => `$JS.API.STREAM.MSG.GET.${jetstream.resumeStream}`;

/** Write right on some keys of a bucket (a KV put is a publish on `$KV.<bucket>.<key>`). */
const kvWrite = (bucket: string, keys: string[]): string[] => keys.map((k) => kvKeySubject(bucket, k));

function eventsOf(ids: string[] | undefined): string[] {
  if (ids === undefined) return [`${ROOT}.evt.*.*`];
  return ids.map((id) => `${ROOT}.evt.*.${token(id)}`);
}

const uniq = (xs: string[]): string[] => [...new Set(xs)];

/**
 * Whose requests each role answers: the roles whose rights publish on a request-reply subject
 * (protocols/catalog.ts, pattern 'req') that the role subscribes; test/unit/nats-config.test.ts derives it from
 * the two and fails when this table differs. NATS Service API requests (`$SRV.>`, monitoring) are left out.
 *
 * A responder gets publish on those roles' inboxes (`_INBOX.<role>.*.>`), on top of `allow_responses`: nats-server
 * records the right to answer a request on the connection that received it, so a responder whose connection
 * reconnected (its NATS server died while it held the request, or the reply was sent while it was disconnected
 * and went out at the reconnect) was refused its reply ("Permissions Violation for Publish to _INBOX...") and the
 * caller waited out its deadline. This is the responder's rights of NATS's authorization guide (publish on
 * `_INBOX.>`) narrowed to the callers' own prefixes: a responder cannot reach another role's inbox, and a reply
 * subject ends in a random token (nats.js's request mux) that it learns only from a request it received.
 */
export const ANSWERS: Readonly<Record<Role, readonly Role[]>> = {
  gateway: ['observer'],
  cluster: ['gateway', 'observer'],
  pool: ['cluster', 'instance', 'observer'],
  instance: ['gateway', 'pool'],
  node: ['pool', 'cluster'],
  observer: [],
  admin: [],
};
/** The inboxes of the roles whose requests `role` answers. */
const replyInboxes = (role: Role): string[] => ANSWERS[role].map((r) => inboxOf(r, undefined));

/** The rights of one actor (or, without id, of any actor of its role). */
export function permissionsOf(a: ActorIdentity): Permissions {
  const id = a.id;
  const I = idOr(id);
  const hbOwn = (k: ActorKind) => wild(subjects.heartbeat(k, I));
  switch (a.role) {
    case 'gateway': {
      // with workers, the user is each worker's too (one identity per worker process, same credentials)
      const ids: (string | undefined)[] = id !== undefined && (a.workers ?? 1) > 1 ? Array.from({ length: a.workers! }, (_, i) => workerId(id, i)) : [id];
      return {
        publish: uniq([
          subjects.clusterIntake(), wild(subjects.instanceAdmit(ANY)), subjects.clusterStatus(), subjects.tokenize(), subjects.detokenize(), wild(subjects.cancel(ANY)), wild(subjects.instanceLeg(ANY)),
          // the resume journal: append to it (the stream's PubAck comes to the inbox), read it back by subject (direct
          // get of one replica, the leader's message get of a replicated stream)
          wild(subjects.resume(ANY)), resumeDirectGet(), resumeLeaderGet(),
          // the record of a leg whose instance died before recording it, with the gateway's estimate of its energy
          wild(subjects.telRequest(ANY)),
          ...ids.map((w) => wild(subjects.heartbeat('gateway', idOr(w)))), ...replyInboxes('gateway'),
        ]),
        subscribe: uniq([
          wild(subjects.stream(ANY)), controlSubjects.routing(), controlSubjects.instanceStatusAll(), controlSubjects.connectionEnded(), subjects.telAll(), subjects.eventAll(), subjects.heartbeatAll(),
          ...ids.flatMap((w) => [inboxOf('gateway', w), wild(subjects.dispatchView('gateway', idOr(w))), ...serviceSubs('gateway', w)]),
        ]),
        allowResponses: true,
      };
    }
    case 'cluster':
      return {
        publish: uniq([
          wild(subjects.poolDispatch(ANY)), wild(subjects.poolControl(ANY)),
          // the leader's answer to a node's lost instances (NodeStatus.lost): start one again under its id, or forget it
          wild(subjects.nodeControl(ANY)),
          ...eventsOf(id === undefined ? undefined : [id]), hbOwn('cluster'),
          // intake tells the caller of a request it holds for a pool's election (a hold notice on its stream subject)
          wild(subjects.stream(ANY)),
          // the owner of the KV buckets and streams: it creates them (actors/common/jetstream-setup.ts), the dispatched
          // requests' bucket too (the pool leaders write it)
          ...allLeaseBuckets().flatMap((b) => [...kvOwn(b), ...kvWrite(b, [leaseKeys.clusterPlanner()])]),
          ...kvOwn(jetstream.inventoryBucket), ...kvWrite(jetstream.inventoryBucket, [wild(inventoryKeys.pool(ANY)), inventoryKeys.energy()]),
          `$JS.API.STREAM.INFO.KV_${jetstream.dispatchedBucket}`, `$JS.API.STREAM.CREATE.KV_${jetstream.dispatchedBucket}`,
          `$JS.API.STREAM.INFO.${jetstream.eventsStream}`, `$JS.API.STREAM.CREATE.${jetstream.eventsStream}`,
          `$JS.API.STREAM.INFO.${jetstream.requestsStream}`, `$JS.API.STREAM.CREATE.${jetstream.requestsStream}`,
          `$JS.API.STREAM.INFO.${jetstream.resumeStream}`, `$JS.API.STREAM.CREATE.${jetstream.resumeStream}`,
          // the journal's direct get turned off once replicated (its reads go through the stream leader)
          `$JS.API.STREAM.UPDATE.${jetstream.resumeStream}`,
          // the leader's pool and cluster telemetry, and the routing table the gateways route by
          wild(subjects.telPool(ANY)), subjects.telCluster(), controlSubjects.routing(),
          ...replyInboxes('cluster'),
        ]),
        subscribe: uniq([
          subjects.clusterIntake(), subjects.clusterStatus(), wild(subjects.telRequest(ANY)), wild(subjects.telInstance(ANY)), wild(subjects.telNode(ANY)),
          controlSubjects.instanceStatusAll(), controlSubjects.nodeStatusAll(), controlSubjects.poolStatusAll(), controlSubjects.connectionEnded(), subjects.heartbeatAll(),
          inboxOf('cluster', id), ...serviceSubs('cluster', id),
        ]),
        allowResponses: true,
      };
    case 'pool': {
      const pools = a.pools;
      const P = (f: (p: string) => string) => (pools === undefined ? [wild(f(ANY))] : pools.map(f));
      return {
        publish: uniq([
          wild(subjects.instanceAdmit(ANY)), wild(subjects.instanceControl(ANY)), wild(subjects.nodeControl(ANY)),
          // a pool leader ends the token streams of an instance that died holding them
          wild(subjects.stream(ANY)),
          ...eventsOf(pools), ...P(controlSubjects.poolStatus), hbOwn('pool'),
          // the buckets exist (the cluster manager makes them): a pool manager binds them, reads and writes its keys
          ...allLeaseBuckets().flatMap((b) => [...kvGet(b), ...kvWrite(b, P(leaseKeys.poolLeader))]),
          ...kvGet(jetstream.inventoryBucket),
          // the leader's list of dispatched requests (its successor lists and re-dispatches or ends them)
          ...(pools === undefined ? kvRead(jetstream.dispatchedBucket) : pools.flatMap((p) => kvRead(jetstream.dispatchedBucket, dispatchedKeys.pool(p)))),
          ...kvWrite(jetstream.dispatchedBucket, P(dispatchedKeys.pool)),
          ...replyInboxes('pool'),
        ]),
        subscribe: uniq([
          ...P(subjects.poolDispatch), ...P(subjects.poolControl), ...P(subjects.poolMove),
          ...P(controlSubjects.instanceStatusPool), ...P(subjects.telRequest), controlSubjects.connectionEnded(), subjects.heartbeatAll(),
          inboxOf('pool', id), wild(subjects.dispatchView('pool', I)), ...serviceSubs('pool', id),
        ]),
        allowResponses: true,
      };
    }
    case 'instance': {
      const Q = idOr(a.pool);
      return {
        publish: uniq([
          wild(subjects.stream(ANY)), wild(subjects.poolMove(Q)), wild(controlSubjects.instanceStatus(Q, I)), wild(subjects.telInstance(I)),
          wild(subjects.telRequest(Q)), ...eventsOf(id === undefined ? undefined : [id]), hbOwn('instance'),
          ...replyInboxes('instance'),
        ]),
        subscribe: uniq([
          wild(subjects.instanceAdmit(I)), wild(subjects.instanceControl(I)), wild(subjects.instanceLeg(I)), subjects.tokenize(), subjects.detokenize(), wild(subjects.cancel(ANY)), wild(controlSubjects.instanceStatusPool(Q)),
          // the gateways' heartbeats: a direct leg whose gateway process is gone frees its seat
          subjects.heartbeatsOf('gateway'),
          inboxOf('instance', id), ...serviceSubs('instance', id),
        ]),
        allowResponses: true,
      };
    }
    case 'node':
      return {
        publish: uniq([
          wild(controlSubjects.nodeStatus(I)), wild(subjects.telNode(I)), ...eventsOf(id === undefined ? undefined : [id]), hbOwn('node'),
          // its inventory key: written, never read (kvBind)
          ...kvBind(jetstream.inventoryBucket), ...kvWrite(jetstream.inventoryBucket, [wild(inventoryKeys.node(I))]),
          ...replyInboxes('node'),
        ]),
        subscribe: uniq([wild(subjects.nodeControl(I)), inboxOf('node', id), ...serviceSubs('node', id)]),
        allowResponses: true,
      };
    case 'observer': {
      // read-only consumers of the events and per-request streams (the consumer SDK's pull consumers, named, with their
      // filter in the API subject: src/client): made, read, acknowledged; never deleted (an ephemeral one ends after its
      // inactive threshold, a durable one stays until an admin deletes it), so no other reader's durable goes
      const consume = (st: string) => [
        `$JS.API.STREAM.INFO.${st}`, `$JS.API.STREAM.MSG.GET.${st}`, `$JS.API.DIRECT.GET.${st}`, `$JS.API.DIRECT.GET.${st}.>`,
        `$JS.API.CONSUMER.CREATE.${st}.>`, `$JS.API.CONSUMER.INFO.${st}.*`,
        `$JS.API.CONSUMER.MSG.NEXT.${st}.*`, `$JS.ACK.${st}.>`, `$JS.FC.${st}.>`,
      ];
      return {
        publish: uniq([
          subjects.clusterStatus(), hbOwn('observer'),
          // each dispatcher's view of the instances it sends requests to (dynamollm chaos times a dead instance's leave by them)
          ...DISPATCH_VIEW_KINDS.map((k) => wild(subjects.dispatchView(k, ANY))),
          ...SERVICE_VERBS.flatMap((v) => [serviceSubjects.control(v), `${serviceSubjects.control(v)}.*`, `${serviceSubjects.control(v)}.*.*`]),
          '$JS.API.INFO', ...consume(jetstream.eventsStream), ...consume(jetstream.requestsStream),
          // who leads: the lease records (dynamollm chaos times a new leader by them)
          ...allLeaseBuckets().flatMap((b) => kvRead(b)),
        ]),
        subscribe: uniq([subjects.telAll(), subjects.eventAll(), subjects.heartbeatAll(), inboxOf('observer', id)]),
        allowResponses: false,
      };
    }
    case 'admin':
      return { publish: ['>'], subscribe: ['>'], allowResponses: false };
  }
}
