/**
 * The lease records of the OTHER bucket layout (lease.ts's module comment, "Layouts"): a contender reads them and
 * treats a live record of another holder there as a held lease, so that two managers configured with different
 * `nats.jetstreamReplicas` (a rolling upgrade, a mistaken config) never both lead. Read only: a bucket that does not
 * exist is never made here (it has no holder); a record is fetched with one JetStream stream message get by
 * subject, which answers "stream not found" for a missing bucket.
 *
 * Which: one bucket (N = 1) reads `dyn_v1_leases_0` .. `_<MAX_LEASE_BUCKETS-1>` (any N > 1), several read the one
 * bucket. Layouts of two N > 1 need no read-across: the smaller's buckets are among the larger's, so a majority of
 * either shares a bucket with what the other reads, and any live record of another holder read there is held.
 * When: after the own layout's reads, only where those find the lease free or an acquisition of ours (a live holder
 * there holds it whatever the other layout says: a standby waiting on a live leader reads nothing more each attempt),
 * each within opTimeoutMs; and again after a majority of the own layout was written. Of two contenders on two layouts that both read the other free,
 * each wrote before reading the other's layout, so at least one reads the other's write afterwards and gives its
 * majority back (both may: each retries after a random while). A record of a previous process under our own id
 * that is gone does not count. Limit: a bucket of the other layout that exists but does not answer (its server
 * down) is skipped, so a mismatch is caught only while that server answers; the supported fix remains one N for
 * every manager (docs/PROTOCOL.md, "Leader leases").
 */
import { LeaseValue, MAX_LEASE_BUCKETS, jetstream, kvKeySubject, kvLastMessageSubject, leaseBuckets } from '../../protocols/index.ts';
import type { Bus } from './bus.ts';

/** The buckets of every layout but `own` (one bucket: the N > 1 buckets `_0` .. `_<MAX-1>`; several: the one bucket). */
export function otherLayoutBuckets(own: readonly string[]): string[] {
  if (own.length === 1 && own[0] === jetstream.leasesBucket) return leaseBuckets(MAX_LEASE_BUCKETS);
  if (own.length > 1) return [jetstream.leasesBucket];
  return [];
}

/** A record of another layout: its bucket and value (null: no bucket, no key, deleted, or undecodable). */
export interface OtherRecord {
  bucket: string;
  value: LeaseValue | null;
}

const dec = new TextDecoder();

/** The lease record of `key` in `bucket` if the bucket exists, within `timeoutMs` (rejects when unanswered or refused). */
export async function readOtherLayout(bus: Bus, bucket: string, key: string, timeoutMs: number): Promise<OtherRecord> {
  const req = new TextEncoder().encode(JSON.stringify({ last_by_subj: kvKeySubject(bucket, key) }));
  const m = await bus.nc.request(kvLastMessageSubject(bucket), req, { timeout: timeoutMs });
  const r = JSON.parse(dec.decode(m.data)) as { message?: { data?: string; hdrs?: string }; error?: { code?: number; err_code?: number; description?: string } };
  if (r.error) {
    // 10059 stream not found (no such bucket), 10037 no message found (no such key): no holder there
    if (r.error.err_code === 10059 || r.error.err_code === 10037) return { bucket, value: null };
    throw new Error(`lease record of ${bucket}: ${r.error.description ?? JSON.stringify(r.error)}`);
  }
  const hdrs = r.message?.hdrs ? dec.decode(Buffer.from(r.message.hdrs, 'base64')) : '';
  // a KV delete or purge marker (KV-Operation header): no holder
  if (/kv-operation:\s*(del|purge)/i.test(hdrs)) return { bucket, value: null };
  const data = Buffer.from(r.message?.data ?? '', 'base64');
  if (data.length === 0) return { bucket, value: null };
  try {
    return { bucket, value: LeaseValue.decode(new Uint8Array(data), kvKeySubject(bucket, key)) };
  } catch {
    return { bucket, value: null };
  }
}
