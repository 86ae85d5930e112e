/**
 * Opening a KV bucket with no need for JetStream's management API when the bucket exists.
 *
 * nats.js's `Kvm.create` asks the account info and the stream info before anything else, and in a NATS cluster the
 * JetStream meta leader answers those; a NATS node's death takes that leader away until the others elect another
 * (seconds). A process that starts meanwhile (a restarted leader, a standby that just started) could then not open
 * the lease bucket, and so could not contend for its lease, although the bucket's own stream (its leader) answers
 * reads and writes all along. So the bucket is first bound (`Kvm.open`: no API call), and a read of a key no bucket
 * holds, within PROBE_MS, proves its stream is there; when that read fails (no such bucket yet, no answer) the
 * bucket is created through `Kvm.create`.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';

/** a key no bucket holds: its read answers null when the bucket's stream is there. */
const PROBE_KEY = '__dynamollm_probe';
/** deadline of that read, ms: past it the bucket is opened by `create`. */
const PROBE_MS = 1000;

export async function openKv(nc: NatsConnection, bucket: string, opts: Partial<KvOptions>): Promise<KV> {
  // reads through the stream's leader (what a replicated bucket is created with; right for any bucket)
  const bound = { ...opts, allow_direct: false };
  try {
    await (await new Kvm(jetstream(nc, { timeout: PROBE_MS })).open(bucket, bound)).get(PROBE_KEY);
    // the handle kept uses the JetStream context's usual deadlines, not the probe's
    return await new Kvm(nc).open(bucket, bound);
  } catch {
    return new Kvm(nc).create(bucket, opts);
  }
}
