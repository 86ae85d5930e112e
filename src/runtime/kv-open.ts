/**
 * Opening a KV bucket with no need for JetStream's meta leader when the bucket exists.
 *
 * nats.js's `Kvm.create` asks the account info and the stream info before anything else, and in a NATS cluster the
 * JetStream meta leader answers the account info; a NATS node's death takes that leader away until the others elect
 * another (seconds). A process that starts meanwhile (a restarted leader, a standby that just started) could then
 * not open the lease bucket, and so could not contend for its lease, although the bucket's own stream (its leader)
 * answers all along. So the bucket's stream info is asked first, within PROBE_MS (a stream that exists answers it
 * through its own leader), and the bucket is bound (`Kvm.open`: no API call); when that fails (no such bucket yet,
 * no answer) the bucket is created through `Kvm.create`.
 *
 * How a bucket is read follows its stream: one replica made with direct get is read by direct get, a replicated one
 * (kvBucketOptions: made without) by a stream message get through its leader. A one-replica bucket is never probed
 * or read by a stream message get where it can be avoided: nats-server before 2.9.15 lists a stream before its store
 * is open, and a message get reaching it in that window (a bucket being made by another process, a server recovering
 * its streams after a restart) dereferences the missing store and crashes the server. The stream info and the direct
 * get wait for the store; a replicated stream's leader leads only once its store is open.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';

/** deadline of the stream info probe, ms: past it the bucket is opened by `create`. */
const PROBE_MS = 1000;

export async function openKv(nc: NatsConnection, bucket: string, opts: Partial<KvOptions>): Promise<KV> {
  let direct: boolean | undefined;
  try {
    const info = await (await jetstreamManager(nc, { timeout: PROBE_MS, checkAPI: false })).streams.info(`KV_${bucket}`);
    // direct get where the stream has it and no follower could answer it before the last write reached it
    direct = info.config.allow_direct && info.config.num_replicas <= 1;
  } catch {
    direct = undefined;
  }
  if (direct !== undefined) return new Kvm(nc).open(bucket, { ...opts, allow_direct: direct });
  return new Kvm(nc).create(bucket, opts);
}
