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
 * Only the JetStream owner creates (`create`: the cluster manager, an admin's setup, actors/common/jetstream-setup.ts):
 * the first creator of a bucket's stream defines the subjects it captures, so an actor of another role (whose NATS user
 * may not create streams, protocols/permissions.ts) binds a bucket that exists and otherwise fails with
 * KvBucketMissing, retryable: its caller tries again at its next attempt, within its own deadline, until the cluster
 * manager has made the bucket.
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
import { systemClock, type Clock } from './clock.ts';
import { DynError } from '../../protocols/errors.ts';

/** A bucket that does not exist (or did not answer) opened by an actor that may not create it: retry later. */
export class KvBucketMissing extends DynError {
  override name = 'KvBucketMissing';
  constructor(readonly bucket: string, cause?: unknown) {
    super('unavailable', `KV bucket ${bucket} does not exist yet (or its stream did not answer within ${PROBE_MS} ms): the cluster manager creates it; retry`, { retryable: true, retryAfterS: 1, cause });
  }
}

/** deadline of the stream info probe, ms: past it the bucket is opened by `create`. */
const PROBE_MS = 1000;
/** an open of a bucket still pending this long is joined by a new attempt (KvOpens), ms. */
export const KV_OPEN_AGAIN_MS = PROBE_MS;
/**
 * attempts to open one bucket in flight at most (KvOpens): one lasts up to ~11 s (the 1-s probe, then nats.js's create
 * with its 5-s default on the account info and the stream info), so one a second keeps going through such a stall.
 */
const MAX_OPENS_IN_FLIGHT = 12;

/** Opens `bucket`; creates it where missing when `create` (the JetStream owner), else fails with KvBucketMissing (retryable). */
export async function openKv(nc: NatsConnection, bucket: string, opts: Partial<KvOptions>, create = true): Promise<KV> {
  let direct: boolean | undefined;
  let probeErr: unknown;
  try {
    const info = await (await jetstreamManager(nc, { timeout: PROBE_MS, checkAPI: false })).streams.info(`KV_${bucket}`);
    // direct get where the stream has it and no follower could answer it before the last write reached it
    direct = info.config.allow_direct && info.config.num_replicas <= 1;
  } catch (err) {
    direct = undefined;
    probeErr = err;
  }
  if (direct !== undefined) return new Kvm(nc).open(bucket, { ...opts, allow_direct: direct });
  if (!create) throw new KvBucketMissing(bucket, probeErr);
  return new Kvm(nc).create(bucket, opts);
}

/**
 * The KV buckets of one connection, each opened once (Bus.kv): callers of one bucket share its open. An open can stay
 * pending for seconds after it stopped being needed: one that began while the bucket's server was down (its stream
 * info unanswered, then nats.js's create waiting the JetStream context's 5-s default on each of its calls) answers only
 * at those deadlines, although the server came back a second later. So an open pending for `againMs` is joined by a new
 * attempt (at most MAX_OPENS_IN_FLIGHT at once), and the bucket is whichever attempt opens it first; the open fails
 * only when every attempt failed, and a failed open is tried anew at the next call. A restarted manager that began
 * opening its lease buckets during a NATS server's death thus contends as soon as the server answers again.
 */
export class KvOpens {
  readonly #opens = new Map<string, Opening>();

  constructor(private readonly clock: Clock = systemClock, private readonly againMs = KV_OPEN_AGAIN_MS) {}

  /** The bucket `name`, from its open in flight or done, or from a new attempt `open()` (see the class comment). */
  open(name: string, open: () => Promise<KV>): Promise<KV> {
    const now = this.clock.now();
    let o = this.#opens.get(name);
    if (o && (o.done || now - o.sinceMs < this.againMs || o.inFlight >= MAX_OPENS_IN_FLIGHT)) return o.p;
    if (!o) {
      let resolve!: (kv: KV) => void;
      let reject!: (err: unknown) => void;
      const p = new Promise<KV>((res, rej) => ((resolve = res), (reject = rej)));
      // a failure is its callers' to handle; none may be listening any more
      p.catch(() => undefined);
      o = { p, resolve, reject, sinceMs: now, inFlight: 0, done: false };
      this.#opens.set(name, o);
    }
    const cur = o;
    cur.sinceMs = now;
    cur.inFlight++;
    new Promise<KV>((res) => res(open())).then(
      (kv) => {
        cur.inFlight--;
        cur.done = true;
        cur.resolve(kv);
      },
      (err: unknown) => {
        cur.inFlight--;
        if (cur.done || cur.inFlight > 0) return;
        // every attempt failed: the open fails, and the next call tries anew
        if (this.#opens.get(name) === cur) this.#opens.delete(name);
        cur.reject(err);
      },
    );
    return cur.p;
  }
}

/** One bucket's open: the promise its callers share, and the attempts in flight for it. */
interface Opening {
  p: Promise<KV>;
  resolve(kv: KV): void;
  reject(err: unknown): void;
  /** when the last attempt began. */
  sinceMs: number;
  inFlight: number;
  done: boolean;
}
