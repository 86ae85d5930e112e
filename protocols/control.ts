/**
 * Control-plane messages between the cluster, pool and instance managers and the node agents (issue 5):
 * pool assignments, instance and node commands, emergency moves, instance status and the GPU inventory.
 * Each carries `v: 1` like every other message; subjects for them are spelled here too (control plane
 * only: `dyn.v1.ctl.>`), everything else stays in subjects.ts.
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { REQUEST_TYPES } from './request-types.ts';
import { ROOT, token } from './subjects.ts';
import { inferenceRequest, wireError } from './messages.ts';

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();
const requestType = z.enum(REQUEST_TYPES);
const tp = z.union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)]);

export const controlSubjects = {
  /**
   * instance manager -> pool leader (and observers): InstanceStatus, every status interval. The subject
   * names the instance, so the server's permissions let an instance publish only its own status.
   */
  instanceStatus: (pool: string, instance: string) => `${ROOT}.ctl.istat.${token(pool, 'pool')}.${token(instance, 'instance')}`,
  instanceStatusPool: (pool: string) => `${ROOT}.ctl.istat.${token(pool, 'pool')}.*`,
  instanceStatusAll: () => `${ROOT}.ctl.istat.*.*`,
  /** node agent -> cluster leader: NodeStatus, every status interval (also kept in the inventory KV). */
  nodeStatus: (node: string) => `${ROOT}.ctl.nstat.${token(node, 'node')}`,
  nodeStatusAll: () => `${ROOT}.ctl.nstat.*`,
  /** pool leader -> cluster leader: PoolStatus (load by type, instances, GPUs in use), every status interval. */
  poolStatus: (pool: string) => `${ROOT}.ctl.pstat.${token(pool, 'pool')}`,
  poolStatusAll: () => `${ROOT}.ctl.pstat.*`,
  /**
   * cluster leader -> gateways: RoutingTable (type -> pool, the pools' types and which are retired), on every
   * change and as a snapshot every second; a gateway routes a request itself only with a table.
   */
  routing: () => `${ROOT}.ctl.route`,
  /**
   * nats-server -> cluster managers, pool managers, gateways: ClientDisconnect (protocols/nats-advisory.ts), a
   * connection of the cluster's account ended. The server configs import it from the system account's
   * `$SYS.ACCOUNT.<cluster id>.DISCONNECT`; no actor may publish it.
   */
  connectionEnded: () => `${ROOT}.ctl.connend`,
} as const;

/** KV keys of the inventory bucket (jetstream.inventoryBucket). */
export const inventoryKeys = {
  node: (node: string) => `node.${token(node, 'node')}`,
  pool: (pool: string) => `pool.${token(pool, 'pool')}`,
  /** the cluster's energy ledger (EnergyLedger), written by the cluster leader, read by its successor. */
  energy: () => 'energy.cluster',
} as const;

/** KV keys of the dispatched-requests bucket (jetstream.dispatchedBucket). */
export const dispatchedKeys = {
  /** a request the pool leader dispatched and that has no record yet (DispatchedEntry), read by its successor. */
  entry: (pool: string, requestId: string) => `${token(pool, 'pool')}.${token(requestId, 'request id')}`,
  /** every key of a pool (a KV key filter, and the pool's write right). */
  pool: (pool: string) => `${token(pool, 'pool')}.>`,
  /** the pool leader's last re-shard (ReshardRecord): three tokens, so no request's entry (two) is ever it. */
  reshard: (pool: string) => `${token(pool, 'pool')}.reshard.target`,
} as const;
/** how long a dispatched entry stays in its bucket without its record, ms (the bucket's TTL; requests give up well before). */
export const DISPATCHED_TTL_MS = 3_600_000;

/** GPUs of one server given to a pool. */
export const gpuGrant = z.object({ node: id, gpuIds: z.array(int).max(64) });
export type GpuGrant = z.infer<typeof gpuGrant>;

/**
 * What a pool owns, decided by the cluster leader: its request types and its GPUs. Kept in the inventory
 * KV under inventoryKeys.pool(pool) so a new pool leader (or cluster leader) picks it up after a failover.
 * `epoch` increases with every cluster decision; a pool ignores an assignment older than the one it has.
 */
export const poolAssignment = z.object({
  v,
  pool: id,
  types: z.array(requestType).min(1),
  grants: z.array(gpuGrant),
  epoch: int,
  /** 'active' serves; 'retired' was merged into `mergedInto`: drain and stop its instances. */
  state: z.enum(['active', 'retired']),
  mergedInto: id.optional(),
  /** forecast peak load the cluster planned for, req/s by type (for the pool's re-shard epoch). */
  forecast: z.record(requestType, nonneg).optional(),
  issuedBy: z.string().max(128),
  atMs: nonneg,
});
export type PoolAssignment = z.infer<typeof poolAssignment>;
export const PoolAssignment = codec('PoolAssignment', poolAssignment);

/** cluster leader -> pool leader (poolControl): apply this assignment; or report. Reply: Ack. */
export const poolCommand = z.object({
  v,
  op: z.enum(['assign', 'reshard_now']),
  assignment: poolAssignment.optional(),
  reason: z.string().max(512),
});
export type PoolCommand = z.infer<typeof poolCommand>;
export const PoolCommand = codec('PoolCommand', poolCommand);

/**
 * pool leader -> instance manager (instanceControl). Reply: Ack.
 * - set_clock: lock this SM clock (MHz, clamped) until the next epoch decides (the instance's own epoch
 *   keeps running; used by the pool to force max clock during a re-shard).
 * - drain: accept no new requests, finish the running and queued ones (re-shard/scale-in step).
 * - resume: accept again.
 * - sleep: vLLM sleep mode at `level` (1: weights to host RAM; 2: discarded): accept no new requests (status
 *   'sleeping'), finish the running and queued ones, then put the engine to sleep. Acked at once.
 * - wake: wake the engine (or, not asleep yet, just accept again); status 'ready' once it serves. Acked at once.
 */
export const instanceCommand = z.object({
  v,
  op: z.enum(['set_clock', 'drain', 'resume', 'sleep', 'wake']),
  clockMhz: nonneg.optional(),
  level: z.union([z.literal(1), z.literal(2)]).optional(),
  reason: z.string().max(512),
});
export type InstanceCommand = z.infer<typeof instanceCommand>;
export const InstanceCommand = codec('InstanceCommand', instanceCommand);

/**
 * cluster/pool leader -> node agent (nodeControl). Reply: Ack (detail: {instanceId}). The cluster leader sends one only
 * for an instance a node lists as lost (NodeStatus.lost): start it again, or stop it (forget it).
 */
export const nodeCommand = z.object({
  v,
  op: z.enum(['start_instance', 'stop_instance']),
  instanceId: id,
  pool: id.optional(),
  tp: tp.optional(),
  gpuIds: z.array(int).max(64).optional(),
  /** stop_instance: ms the instance gets to finish its requests before it is killed. */
  graceMs: nonneg.optional(),
  reason: z.string().max(512),
});
export type NodeCommand = z.infer<typeof nodeCommand>;
export const NodeCommand = codec('NodeCommand', nodeCommand);

/** instance -> pool leader (subjects.poolMove): place these not-yet-started requests on peers. */
export const moveRequest = z.object({
  v,
  from: id,
  pool: id,
  requests: z.array(inferenceRequest).max(256),
  reason: z.string().max(512),
});
export type MoveRequest = z.infer<typeof moveRequest>;
export const MoveRequest = codec('MoveRequest', moveRequest);

/** Which requests now live on a peer (the sender forgets them) and which stay with the sender. */
export const moveReply = z.object({
  v,
  placed: z.array(z.object({ id, instance: id })),
  refused: z.array(z.object({ id, error: wireError })),
});
export type MoveReply = z.infer<typeof moveReply>;
export const MoveReply = codec('MoveReply', moveReply);

/** sleeping: its engine in vLLM's sleep mode, falling asleep or waking (src/policy/sleep-standby.ts): no dispatch to it; one of its pool's layout. */
export const instanceStates = ['starting', 'ready', 'restarting', 'draining', 'stopped', 'failed', 'sleeping'] as const;

/**
 * An instance as it reports itself to its pool leader every status interval: the dispatcher's view and
 * the ids of its not-yet-started (queued) and running requests, so that when it dies the pool leader knows
 * which requests can be re-dispatched (queued) and which streams must end with a retryable error (running).
 */
export const instanceStatus = z.object({
  v,
  id,
  pool: id,
  node: z.string().max(128).optional(),
  tp,
  gpuIds: z.array(int).max(64),
  state: z.enum(instanceStates),
  startedMs: nonneg,
  seq: int,
  sentMs: nonneg,
  clockMhz: nonneg,
  maxClockMhz: nonneg,
  queued: int,
  running: int,
  /** ids of requests admitted but not yet started (<= admission queue bound). */
  queuedIds: z.array(id).max(1024),
  /** ids of requests streaming now, with the seq of the next chunk each would publish. */
  runningIds: z.array(id).max(1024),
  runningSeqs: z.array(int).max(1024).optional(),
  /** offered load, req/s by (classified) type, EWMA. */
  loadByType: z.record(requestType, nonneg),
  /** the load the pool's re-shard epoch sums, req/s by type: the EWMA projected to its epoch's close (the instance
   * machine's projectedLoad), the same wherever in the instance's epoch it is read; optional (older instance
   * managers: loadByType). */
  epochLoadByType: z.record(requestType, nonneg).optional(),
  /** requests admitted since this process started, by type (cumulative; the pool's burst window counts each
   * minute's arrivals from the increments); optional (older instance managers). */
  admittedByType: z.record(requestType, nonneg).optional(),
  /** prompt tokens not yet prefilled: queued requests and running ones without their first token (what a new
   * prompt waits behind); optional (older instance managers). */
  pendingPrefillTokens: int.optional(),
  /** prompt tokens this process looked up in its prefix cache and those it found there (cumulative since it
   * started; vLLM's prefix_cache_queries/hits): the pool's measured prefix reuse; optional (no prefix cache). */
  prefixCacheTokens: z.object({ lookup: nonneg, hit: nonneg }).optional(),
  /** current emergency step, if any. */
  emergency: z.string().max(64).optional(),
  /** the instance's admission credit epoch (docs/DATAPATH.md "Admission credits"): credits lent in an earlier one are void. */
  creditEpoch: int.optional(),
  /** credits lent to gateways and not spent (seats kept for them), count. */
  creditsOutstanding: int.optional(),
  /**
   * the NATS connection this status went out on, as the server named it to this process (its INFO's server_id and
   * client_id): a ClientDisconnect advisory naming both says that connection ended, and this status with it (its
   * process died, or its connection was cut: its next status, from its new connection, counts again). Optional
   * (older instance managers: only the statuses' lapse).
   */
  conn: z.object({ server: z.string().min(1).max(128), client: int }).optional(),
});
export type InstanceStatus = z.infer<typeof instanceStatus>;
export const InstanceStatus = codec('InstanceStatus', instanceStatus);

/** A server's GPUs as its node agent reports them (published and kept in the inventory KV). */
export const nodeStatus = z.object({
  v,
  node: id,
  gpus: int,
  free: z.array(int).max(64),
  instances: z.array(z.object({
    id, pool: id, tp, gpuIds: z.array(int).max(64), state: z.string().max(32),
    /**
     * when the node agent last saw this instance's manager process end (ms, the node's clock, as the instance's own
     * startedMs): an InstanceStatus whose startedMs is older comes from a dead process, whatever its age. Absent: none ended.
     */
    exitedMs: nonneg.optional(),
  })),
  /**
   * Instances this node agent found recorded (src/runtime/adoption.ts) with their manager process gone: they ended while
   * no node agent ran. None runs and their GPUs count as free; each stays listed until a leader decides: a
   * start_instance under its id starts it again, a stop_instance forgets it (as does a start on any of its GPUs).
   */
  lost: z.array(z.object({ id, pool: id, tp, gpuIds: z.array(int).max(64) })).max(64).optional(),
  startedMs: nonneg,
  sentMs: nonneg,
});
export type NodeStatus = z.infer<typeof nodeStatus>;
export const NodeStatus = codec('NodeStatus', nodeStatus);

/** A pool as its leader reports it to the cluster leader. */
export const poolStatus = z.object({
  v,
  pool: id,
  leader: z.string().max(128),
  types: z.array(requestType),
  /** measured offered load of the pool, req/s by type (sum over instances, EWMA). */
  loadByType: z.record(requestType, nonneg),
  instances: z.array(z.object({ id, tp, node: z.string().max(128).optional(), gpuIds: z.array(int), state: z.string().max(32), clockMhz: nonneg, queued: int, running: int })),
  gpus: int,
  epoch: int,
  sentMs: nonneg,
});
export type PoolStatus = z.infer<typeof poolStatus>;
export const PoolStatus = codec('PoolStatus', poolStatus);

/**
 * The cluster's energy since it started, as its planner leader keeps it (inventory KV, inventoryKeys.energy):
 * totals, and the last energy counter of each instance they include, so that a successor adds only what
 * the instances measured after it (an instance's counter restarts at 0 with its manager).
 */
export const energyLedger = z.object({
  v,
  /** J, since the cluster started (modelled for emulated GPUs, measured on NVML/SMI). */
  energyJ: nonneg,
  poolEnergyJ: z.record(id, nonneg),
  /** instance id -> its energy counter (InstanceTelemetry.energyJ) included in the totals. */
  counters: z.record(id, nonneg),
  leader: z.string().max(128),
  atMs: nonneg,
});
export type EnergyLedger = z.infer<typeof energyLedger>;
export const EnergyLedger = codec('EnergyLedger', energyLedger);

/** A request a pool leader dispatched, until its record (KV jetstream.dispatchedBucket, dispatchedKeys.entry): its successor's list. */
export const dispatchedEntry = z.object({
  v,
  req: inferenceRequest,
  instance: id,
  atMs: nonneg,
  /** the process of that instance (its status's startedMs) the request went to: a successor that sees another
   * process under the id knows this one is gone. */
  startedMs: nonneg.optional(),
});
export type DispatchedEntry = z.infer<typeof dispatchedEntry>;
export const DispatchedEntry = codec('DispatchedEntry', dispatchedEntry);

/**
 * A pool leader's re-shard (KV jetstream.dispatchedBucket, dispatchedKeys.reshard), written when it begins
 * (`running`) and ends (`complete`): a successor leading on the same assignment `epoch` finishes a running
 * one to its `target` (from the layout it finds), and fills the grants to the target of a complete one.
 */
export const reshardRecord = z.object({
  v,
  pool: id,
  /** the assignment epoch it was planned on. */
  epoch: int,
  /** the instances by TP degree (the re-shard planner's degrees). */
  target: z.array(z.object({ tp: z.union([z.literal(2), z.literal(4), z.literal(8)]), count: int })).max(64),
  state: z.enum(['running', 'complete']),
  leader: z.string().max(128),
  atMs: nonneg,
});
export type ReshardRecord = z.infer<typeof reshardRecord>;
export const ReshardRecord = codec('ReshardRecord', reshardRecord);

/**
 * The cluster's routing as its planner leader holds it (src/policy/machines/cluster.ts `route` and the pool
 * assignments): what a gateway needs to run intake's pool choice (intakePools) and each pool's dispatch
 * (dispatchRequest over the instances' statuses) itself, and ask the chosen instance directly.
 */
export const routingTable = z.object({
  v,
  /** request type -> the pool intake sends it to (a retired pool's entry may stay: `pools` says it is retired). */
  routes: z.record(requestType, id),
  /** the pools with an assignment: their types (dispatch scores an instance by them) and whether merged away. */
  pools: z.array(z.object({ pool: id, types: z.array(requestType).max(9), retired: z.boolean() })).max(64),
  /** the latest assignment epoch the table reflects. */
  epoch: int,
  issuedBy: z.string().max(128),
  sentMs: nonneg,
});
export type RoutingTable = z.infer<typeof routingTable>;
export const RoutingTable = codec('RoutingTable', routingTable);

export const CONTROL_CODECS = {
  RoutingTable, PoolAssignment, PoolCommand, InstanceCommand, NodeCommand, MoveRequest, MoveReply, InstanceStatus, NodeStatus, PoolStatus, EnergyLedger, DispatchedEntry, ReshardRecord,
} as const;
