/**
 * Every NATS subject of dynamollm, rooted at `dyn.v1` (the protocol version is part of the subject).
 * Nothing outside protocols/ spells a subject. Ids are validated so a hostile id cannot inject tokens
 * (`.`, `*`, `>`, whitespace) into a subject.
 */
import { ProtocolError } from './errors.ts';

export const ROOT = 'dyn.v1' as const;

const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

/** Throws when `id` cannot be used as one subject token. */
export function token(id: string, what = 'id'): string {
  if (!TOKEN.test(id)) throw new ProtocolError(`invalid ${what} '${id}': use 1-128 of [A-Za-z0-9_-]`);
  return id;
}

export const ACTOR_KINDS = ['gateway', 'cluster', 'pool', 'instance', 'node', 'observer'] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

export const subjects = {
  /** gateway -> cluster managers (queue group CLUSTER_INTAKE_QUEUE): InferenceRequest -> Admission. */
  clusterIntake: () => `${ROOT}.cluster.intake`,
  /** anyone -> cluster leader: StatusRequest -> ClusterStatus. */
  clusterStatus: () => `${ROOT}.cluster.status`,
  /** cluster manager -> pool leader: InferenceRequest -> Admission. */
  poolDispatch: (pool: string) => `${ROOT}.pool.${token(pool, 'pool')}.dispatch`,
  /** cluster leader -> pool leader: PoolCommand -> Ack. */
  poolControl: (pool: string) => `${ROOT}.pool.${token(pool, 'pool')}.ctl`,
  /** instance -> pool leader (emergency step 3): MoveRequest -> MoveReply. */
  poolMove: (pool: string) => `${ROOT}.pool.${token(pool, 'pool')}.move`,
  /**
   * observer -> one gateway (worker process) or pool manager: StatusRequest -> DispatchView, the instances it sends
   * requests to now (its own routing view, or each pool's dispatch view); answered on demand, nothing computed otherwise.
   */
  dispatchView: (kind: DispatchViewKind, id: string) => `${ROOT}.view.${kind}.${token(id)}`,
  /** pool leader -> instance manager: InferenceRequest -> Admission. */
  instanceAdmit: (instance: string) => `${ROOT}.inst.${token(instance, 'instance')}.admit`,
  /** every instance's admissions (observers, tests). */
  instanceAdmitAll: () => `${ROOT}.inst.*.admit`,
  /** gateway -> the instance that granted a direct request: LegReport (first token: no reply; end: -> LegReply; credited: a credit spent); a relayed request's credit (no reply). */
  instanceLeg: (instance: string) => `${ROOT}.inst.${token(instance, 'instance')}.leg`,
  /** every instance's leg reports (observers, tests). */
  instanceLegAll: () => `${ROOT}.inst.*.leg`,
  /** pool leader -> instance manager: InstanceCommand -> Ack. */
  instanceControl: (instance: string) => `${ROOT}.inst.${token(instance, 'instance')}.ctl`,
  /** cluster/pool leader -> node agent (owns a server's GPUs): NodeCommand -> Ack. */
  nodeControl: (node: string) => `${ROOT}.node.${token(node, 'node')}.ctl`,
  /** instance -> gateway: TokenChunk stream of one request. */
  stream: (requestId: string) => `${ROOT}.stream.${token(requestId, 'request id')}`,
  /** every request's stream subject: a gateway reads the ones it holds through this one subscription. */
  streamAll: () => `${ROOT}.stream.*`,
  /** gateway -> whoever holds the request: Cancel. */
  cancel: (requestId: string) => `${ROOT}.cancel.${token(requestId, 'request id')}`,
  /** every request's Cancel (an instance manager's one subscription; it acts on the ids it holds). */
  cancelAll: () => `${ROOT}.cancel.*`,
  /** gateway -> the resume journal (JetStream jetstream.resumeStream): ResumeEntry of one resumable stream. */
  resume: (requestId: string) => `${ROOT}.resume.${token(requestId, 'request id')}`,
  /** gateway -> instance managers (queue group TOKENIZER_QUEUE): TokenizeRequest -> TokenizeReply. */
  tokenize: () => `${ROOT}.tokenize`,
  /** gateway -> instance managers (queue group TOKENIZER_QUEUE): DetokenizeRequest -> DetokenizeReply. */
  detokenize: () => `${ROOT}.detokenize`,
  /** Heartbeat of one actor. */
  heartbeat: (kind: ActorKind, id: string) => `${ROOT}.hb.${kind}.${token(id)}`,
  heartbeatAll: () => `${ROOT}.hb.>`,
  /** Heartbeats of every actor of one kind. */
  heartbeatsOf: (kind: ActorKind) => `${ROOT}.hb.${kind}.*`,
  /** Telemetry. */
  telInstance: (instance: string) => `${ROOT}.tel.inst.${token(instance, 'instance')}`,
  telInstanceAll: () => `${ROOT}.tel.inst.*`,
  telNode: (node: string) => `${ROOT}.tel.node.${token(node, 'node')}`,
  telNodeAll: () => `${ROOT}.tel.node.*`,
  telRequest: (pool: string) => `${ROOT}.tel.req.${token(pool, 'pool')}`,
  telRequestAll: () => `${ROOT}.tel.req.*`,
  telPool: (pool: string) => `${ROOT}.tel.pool.${token(pool, 'pool')}`,
  telPoolAll: () => `${ROOT}.tel.pool.*`,
  telCluster: () => `${ROOT}.tel.cluster`,
  telAll: () => `${ROOT}.tel.>`,
  /** Decision and reconfiguration events (kept in the EVENTS_STREAM JetStream stream). */
  event: (kind: EventKind, actor: string) => `${ROOT}.evt.${kind}.${token(actor)}`,
  eventAll: () => `${ROOT}.evt.>`,
  eventsOfKind: (kind: EventKind) => `${ROOT}.evt.${kind}.*`,
} as const;

/** The actors that dispatch requests to instances themselves, and answer subjects.dispatchView. */
export const DISPATCH_VIEW_KINDS = ['gateway', 'pool'] as const satisfies readonly ActorKind[];
export type DispatchViewKind = (typeof DISPATCH_VIEW_KINDS)[number];

export const CLUSTER_INTAKE_QUEUE = 'cluster-intake';
export const TOKENIZER_QUEUE = 'tokenizer';

export const EVENT_KINDS = ['scale', 'merge', 'reshard', 'clock', 'emergency', 'instance', 'lease', 'failure', 'plan', 'power'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** JetStream names. */
export const jetstream = {
  eventsStream: 'DYN_V1_EVENTS',
  eventsSubjects: [`${ROOT}.evt.>`],
  /** the per-request records (RequestRecord), kept so billing consumers read them at least once. */
  requestsStream: 'DYN_V1_REQUESTS',
  requestsSubjects: [`${ROOT}.tel.req.*`],
  leasesBucket: 'dyn_v1_leases',
  membersBucket: 'dyn_v1_members',
  inventoryBucket: 'dyn_v1_inventory',
  /** the resume journal: what each resumable SSE stream sent its client (ResumeEntry, one per engine read), kept minutes. */
  resumeStream: 'DYN_V1_RESUME',
  resumeSubjects: [`${ROOT}.resume.*`],
  /** each pool leader's dispatched requests until their record (DispatchedEntry, keys dispatchedKeys); entries expire after an hour. */
  dispatchedBucket: 'dyn_v1_dispatched',
} as const;

/** The subject a write of `key` in KV bucket `bucket` is published on (a KV put is a JetStream publish there). */
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${key}`;

/** JetStream's API subject that returns a KV bucket's last message of a subject (`last_by_subj`): a read that makes no bucket. */
export const kvLastMessageSubject = (bucket: string): string => `$JS.API.STREAM.MSG.GET.KV_${bucket}`;

/**
 * The lease buckets of a NATS deployment whose buckets keep `replicas` copies (src/runtime/lease.ts). One: the one
 * bucket `jetstream.leasesBucket`. More (a NATS cluster): `replicas` buckets of one copy each, bucket i on the one
 * server whose `server_tags` hold leasePlacementTag(i); a lease is held on a majority of them.
 */
export const leaseBuckets = (replicas: number): string[] => {
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_LEASE_BUCKETS) throw new RangeError(`lease buckets: replicas must be 1..${MAX_LEASE_BUCKETS}, got ${replicas}`);
  return replicas === 1 ? [jetstream.leasesBucket] : Array.from({ length: replicas }, (_, i) => `${jetstream.leasesBucket}_${i}`);
};
/** JetStream keeps at most 5 replicas of a stream: as many lease buckets at most. */
export const MAX_LEASE_BUCKETS = 5;
/** Every lease bucket name any deployment uses (the rights: protocols/permissions.ts). */
export const allLeaseBuckets = (): string[] => [...new Set(Array.from({ length: MAX_LEASE_BUCKETS }, (_, i) => leaseBuckets(i + 1)).flat())];
/** The placement tag of lease bucket `i` of several: one NATS server's `server_tags` holds it (nats-server configs). */
export const leasePlacementTag = (i: number): string => `dyn-lease-${i}`;

/** Lease keys (KV keys: letters, digits, -, _, /, =, .). */
export const leaseKeys = {
  clusterPlanner: () => 'cluster.planner',
  poolLeader: (pool: string) => `pool.${token(pool, 'pool')}`,
} as const;
