/**
 * The public catalog of dynamollm's NATS traffic: every subject, its message, who publishes it and how often.
 * docs/PROTOCOL.md's subject table and protocols/json-schema/ are generated from this and the codecs
 * (`npx tsx src/cli/gen-protocol.ts`; test/unit/protocol-schemas.test.ts fails when they are stale).
 */
import type { z } from 'zod';
import { ALL_CODECS } from './messages.ts';
import { CONTROL_CODECS } from './control.ts';
import { LeaseValue } from './lease.ts';
import { ResumeEntry } from './journal.ts';
import { DispatchView } from './dispatch-view.ts';
import { ClientDisconnect } from './nats-advisory.ts';
import { LegReportBatch } from './leg-batch.ts';
import { MAX_LEASE_BUCKETS, jetstream, leaseBuckets } from './subjects.ts';
import { serviceInfoResponse, servicePingResponse, serviceStatsResponse } from './service.ts';

export interface CatalogEntry {
  /** subject pattern; <x> is one token. */
  subject: string;
  /** the NATS wildcard matching every subject of the entry. */
  wildcard: string;
  /** 'pub' publication, 'req' request -> reply, 'kv' JetStream KV value. */
  pattern: 'pub' | 'req' | 'kv';
  /** message name (a codec in protocols/, or a JSON Service API schema); request: request -> reply. */
  message: string;
  reply?: string;
  publisher: string;
  rate: string;
  /** kept in this JetStream stream. */
  stream?: string;
  /** who may read it with the observer's read-only credentials. */
  observer: boolean;
  notes?: string;
}

export const CATALOG: readonly CatalogEntry[] = [
  { subject: 'dyn.v1.tel.inst.<instance>', wildcard: 'dyn.v1.tel.inst.*', pattern: 'pub', message: 'InstanceTelemetry', publisher: 'instance manager', rate: '1/s per instance', observer: true },
  { subject: 'dyn.v1.tel.node.<node>', wildcard: 'dyn.v1.tel.node.*', pattern: 'pub', message: 'NodeTelemetry', publisher: 'node agent', rate: '1/s per node', observer: true, notes: 'power and energy of the GPUs no instance holds' },
  { subject: 'dyn.v1.tel.pool.<pool>', wildcard: 'dyn.v1.tel.pool.*', pattern: 'pub', message: 'PoolTelemetry', publisher: 'cluster manager (leader)', rate: '1/s per pool', observer: true },
  { subject: 'dyn.v1.tel.cluster', wildcard: 'dyn.v1.tel.cluster', pattern: 'pub', message: 'ClusterTelemetry', publisher: 'cluster manager (leader)', rate: '1/s', observer: true },
  { subject: 'dyn.v1.tel.req.<pool>', wildcard: 'dyn.v1.tel.req.*', pattern: 'pub', message: 'RequestRecord', publisher: 'instance manager; gateway for a leg whose instance died (energy estimated)', rate: 'one per finished, failed or cancelled request or leg', stream: jetstream.requestsStream, observer: true },
  { subject: 'dyn.v1.evt.<kind>.<actor>', wildcard: 'dyn.v1.evt.>', pattern: 'pub', message: 'DecisionEvent', publisher: 'cluster/pool/instance managers, node agents', rate: 'one per decision (scale, merge, reshard, clock change, emergency step, instance start/stop, lease change, failure, plan, server power)', stream: jetstream.eventsStream, observer: true },
  { subject: 'dyn.v1.hb.<kind>.<id>', wildcard: 'dyn.v1.hb.>', pattern: 'pub', message: 'Heartbeat', publisher: 'every actor', rate: '1/s per actor (and on each state change)', observer: true },
  { subject: 'dyn.v1.ctl.istat.<pool>.<instance>', wildcard: 'dyn.v1.ctl.istat.*.*', pattern: 'pub', message: 'InstanceStatus', publisher: 'instance manager', rate: 'every liveness.instanceStatusIntervalMs (default 250 ms) per instance', observer: false },
  { subject: 'dyn.v1.ctl.nstat.<node>', wildcard: 'dyn.v1.ctl.nstat.*', pattern: 'pub', message: 'NodeStatus', publisher: 'node agent', rate: 'every liveness.statusIntervalMs per node', observer: false },
  { subject: 'dyn.v1.ctl.pstat.<pool>', wildcard: 'dyn.v1.ctl.pstat.*', pattern: 'pub', message: 'PoolStatus', publisher: 'pool manager (leader)', rate: 'every liveness.statusIntervalMs per pool', observer: false },
  { subject: 'dyn.v1.ctl.route', wildcard: 'dyn.v1.ctl.route', pattern: 'pub', message: 'RoutingTable', publisher: 'cluster manager (leader) -> gateways', rate: 'on every routing change and 1/s', observer: false },
  { subject: 'dyn.v1.ctl.connend', wildcard: 'dyn.v1.ctl.connend', pattern: 'pub', message: 'ClientDisconnect', publisher: 'nats-server (its system account\'s $SYS.ACCOUNT.<cluster id>.DISCONNECT, imported into the cluster\'s account) -> cluster managers, pool managers, gateways', rate: 'one per connection of the cluster\'s account that ends', observer: false, notes: 'JSON, not msgpack (the server\'s advisory io.nats.server.advisory.v1.client_disconnect); an instance whose status names the ended connection leaves dispatch at once' },
  { subject: 'dyn.v1.stream.<request>', wildcard: 'dyn.v1.stream.*', pattern: 'pub', message: 'TokenChunk', publisher: 'instance manager (pool leader for a dead instance, or for a request it holds; cluster manager for a request it holds for a pool election)', rate: "NATS relay: one per token chunk of a request; direct data path: a grant (none when the admission reply carries it), an error ended out of turn; before the admission, a `hold` notice (a pool holds the request for a ready instance, or the intake for a pool's leader election, and answers within `forMs`)", observer: false },
  { subject: 'dyn.v1.inst.<instance>.leg', wildcard: 'dyn.v1.inst.*.leg', pattern: 'req', message: 'LegReport | LegReportBatch', reply: 'LegReply', publisher: 'gateway -> the instance that granted a direct request, or that relays a request\'s tokens', rate: 'one to three per direct request (credited on a credit; the first token unless its batch ended the leg; the end; started only for a first token slower than the grant\'s reportWithinMs), one when the leg\'s later reports join its report still held; to an instance whose loan says `batches`, the reports held for it in one hold (a LEG_REPORT_HOLD_MS window while reports come often, else the event-loop turn) as one LegReportBatch (published); a relayed request\'s credit (a leg its instance paces: its first chunk\'s relayCredit): one per half window its client took (128 KiB of chunks), and one a second while a leg past a window is silent', observer: false },
  { subject: 'dyn.v1.cancel.<request>', wildcard: 'dyn.v1.cancel.*', pattern: 'pub', message: 'Cancel', publisher: 'gateway', rate: 'one per cancelled request', observer: false },
  { subject: 'dyn.v1.resume.<request>', wildcard: 'dyn.v1.resume.*', pattern: 'pub', message: 'ResumeEntry', publisher: 'gateway', rate: 'resumable streams only (opt-in, docs/PROTOCOL.md): one per engine read at most (one in flight per stream), one per leg, one at the end', stream: jetstream.resumeStream, observer: false, notes: 'appended with the stream\'s acknowledgement (PubAck); read back by the gateway replica a client reconnects to with Last-Event-ID' },
  { subject: 'dyn.v1.cluster.intake', wildcard: 'dyn.v1.cluster.intake', pattern: 'req', message: 'InferenceRequest', reply: 'Admission', publisher: 'gateway -> cluster managers (queue group cluster-intake)', rate: 'one per request the gateway cannot route itself (no routing table, no ready instance in its view, an admit timed out)', observer: false },
  { subject: 'dyn.v1.cluster.status', wildcard: 'dyn.v1.cluster.status', pattern: 'req', message: 'StatusRequest', reply: 'ClusterStatus', publisher: 'anyone -> cluster leader', rate: 'on demand', observer: true },
  { subject: 'dyn.v1.view.<kind>.<id>', wildcard: 'dyn.v1.view.*.*', pattern: 'req', message: 'StatusRequest', reply: 'DispatchView', publisher: 'observer -> one gateway (worker process; kind gateway) or pool manager (kind pool)', rate: 'on demand (dynamollm chaos: every 100 ms per gateway and pool manager)', observer: true, notes: 'the instances it dispatches to now and those it tracks that take no request, with why (state, dead, lapsed, conn_ended); computed only when asked' },
  { subject: 'dyn.v1.pool.<pool>.dispatch', wildcard: 'dyn.v1.pool.*.dispatch', pattern: 'req', message: 'InferenceRequest', reply: 'Admission', publisher: 'cluster manager -> pool leader', rate: 'one per request through intake', observer: false },
  { subject: 'dyn.v1.pool.<pool>.ctl', wildcard: 'dyn.v1.pool.*.ctl', pattern: 'req', message: 'PoolCommand', reply: 'Ack', publisher: 'cluster leader -> pool leader', rate: 'one per cluster decision', observer: false },
  { subject: 'dyn.v1.pool.<pool>.move', wildcard: 'dyn.v1.pool.*.move', pattern: 'req', message: 'MoveRequest', reply: 'MoveReply', publisher: 'instance -> pool leader', rate: 'emergency step 3 only', observer: false },
  { subject: 'dyn.v1.inst.<instance>.admit', wildcard: 'dyn.v1.inst.*.admit', pattern: 'req', message: 'InferenceRequest', reply: 'Admission', publisher: 'gateway (its own routing) or pool leader -> instance manager', rate: 'one per request', observer: false },
  { subject: 'dyn.v1.inst.<instance>.ctl', wildcard: 'dyn.v1.inst.*.ctl', pattern: 'req', message: 'InstanceCommand', reply: 'Ack', publisher: 'pool leader -> instance manager', rate: 'one per pool decision', observer: false },
  { subject: 'dyn.v1.tokenize', wildcard: 'dyn.v1.tokenize', pattern: 'req', message: 'TokenizeRequest', reply: 'TokenizeReply', publisher: 'gateway -> instance managers (queue group)', rate: 'one per /tokenize call', observer: false },
  { subject: 'dyn.v1.detokenize', wildcard: 'dyn.v1.detokenize', pattern: 'req', message: 'DetokenizeRequest', reply: 'DetokenizeReply', publisher: 'gateway -> instance managers (queue group)', rate: 'one per /detokenize call', observer: false },
  { subject: 'dyn.v1.node.<node>.ctl', wildcard: 'dyn.v1.node.*.ctl', pattern: 'req', message: 'NodeCommand', reply: 'Ack', publisher: 'cluster/pool leader -> node agent', rate: 'one per instance start/stop (the cluster leader: per instance a node lists as lost)', observer: false },
  { subject: `KV ${jetstream.leasesBucket} cluster.planner, pool.<pool>`, wildcard: `$KV.${jetstream.leasesBucket}.>`, pattern: 'kv', message: 'LeaseValue', publisher: 'cluster and pool managers', rate: 'every min(leaseTtlMs, deadAfterMs)/3 per lease', observer: true, notes: 'one NATS server (jetstreamReplicas 1)' },
  // one entry per bucket of the N > 1 layout (a NATS wildcard cannot match part of a bucket name)
  ...leaseBuckets(MAX_LEASE_BUCKETS).map((b, i): CatalogEntry => ({ subject: `KV ${b} cluster.planner, pool.<pool>`, wildcard: `$KV.${b}.>`, pattern: 'kv', message: 'LeaseValue', publisher: 'cluster and pool managers', rate: 'every min(leaseTtlMs, deadAfterMs)/3 per lease, on each bucket', observer: true, notes: `a NATS cluster (jetstreamReplicas N > ${i}): bucket ${i} of N, one replica, on the server tagged dyn-lease-${i}; a lease is held on a majority (leaseBuckets)` })),
  { subject: `KV ${jetstream.inventoryBucket} node.<node>`, wildcard: `$KV.${jetstream.inventoryBucket}.node.*`, pattern: 'kv', message: 'NodeStatus', publisher: 'node agent', rate: 'every liveness.statusIntervalMs per node', observer: false },
  { subject: `KV ${jetstream.inventoryBucket} pool.<pool>`, wildcard: `$KV.${jetstream.inventoryBucket}.pool.*`, pattern: 'kv', message: 'PoolAssignment', publisher: 'cluster leader', rate: 'one per cluster decision', observer: false },
  { subject: `KV ${jetstream.inventoryBucket} energy.cluster`, wildcard: `$KV.${jetstream.inventoryBucket}.energy.cluster`, pattern: 'kv', message: 'EnergyLedger', publisher: 'cluster leader', rate: 'every cluster telemetry tick (1/s)', observer: false, notes: "the cluster's energy ledger, read by the next leader" },
  { subject: `KV ${jetstream.dispatchedBucket} <pool>.<request>`, wildcard: `$KV.${jetstream.dispatchedBucket}.*.*`, pattern: 'kv', message: 'DispatchedEntry', publisher: 'pool manager (leader)', rate: 'one put per request it dispatches, one purge at its record', observer: false, notes: "read by the pool's next leader; entries expire after an hour" },
  { subject: `KV ${jetstream.dispatchedBucket} <pool>.reshard.target`, wildcard: `$KV.${jetstream.dispatchedBucket}.*.reshard.target`, pattern: 'kv', message: 'ReshardRecord', publisher: 'pool manager (leader)', rate: 'at the start and the end of each re-shard', observer: false, notes: "read by the pool's next leader (a re-shard cut short is finished)" },
  { subject: '$SRV.PING|INFO|STATS[.<name>[.<id>]]', wildcard: '$SRV.>', pattern: 'req', message: '(empty)', reply: 'ServicePingResponse | ServiceInfoResponse | ServiceStatsResponse (JSON)', publisher: 'anyone (nats micro) -> every actor', rate: 'on demand', observer: true, notes: 'NATS Service API, io.nats.micro.v1; JSON, not msgpack' },
];

/** Every message schema by name: the msgpack messages and the (JSON) Service API answers. */
export function messageSchemas(): Record<string, z.ZodTypeAny> {
  const out: Record<string, z.ZodTypeAny> = {};
  for (const c of [...Object.values(ALL_CODECS), ...Object.values(CONTROL_CODECS), LeaseValue, ResumeEntry, DispatchView, ClientDisconnect, LegReportBatch]) out[c.name] = c.schema;
  out.ServicePingResponse = servicePingResponse;
  out.ServiceInfoResponse = serviceInfoResponse;
  out.ServiceStatsResponse = serviceStatsResponse;
  return out;
}
