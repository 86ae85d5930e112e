/**
 * One lease bucket of a LeaderLease (lease.ts): the lease key's record there, read and written with
 * compare-and-set, and what this contender knows of that record (the write of ours it holds there, a
 * corrupt record's age, our writes whose answer did not come). lease.ts holds a lease on a majority of these.
 *
 * Where the buckets live (leaseBuckets of the bus's replicas): one bucket with the bus's usual replicas (one NATS
 * server, or the single-bucket layout), or, with several, bucket i of one replica placed on the NATS server whose
 * `server_tags` hold leasePlacementTag(i). A bucket that cannot be made because no server carries its tag fails
 * with LeaseLayoutError: the lease never falls back to another layout (two contenders holding the lease on two
 * different layouts would both lead).
 */
import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { DynError } from '../../protocols/errors.ts';
import { LeaseValue, kvKeySubject, leasePlacementTag } from '../../protocols/index.ts';
import type { Bus } from './bus.ts';
import { within, type Clock } from './clock.ts';

/** writes without an answer remembered per bucket (one per failed attempt, cleared by an answer): a few TTLs of retries. */
const MAX_UNANSWERED = 32;
/** a bucket that cannot be placed (LeaseLayoutError) is logged as an error at most this often, ms. */
const LAYOUT_ERROR_LOG_MS = 30_000;

/**
 * A lease bucket of several could not be made: no NATS server carries its placement tag (or none that does is up
 * while the bucket is first made). Not retryable without a change of the servers' config (`server_tags`): the
 * lease keeps trying the other buckets and this one, and never uses another layout.
 */
export class LeaseLayoutError extends DynError {
  readonly bucket: string;
  readonly tag: string;
  constructor(bucket: string, tag: string, cause: unknown) {
    super('internal', `lease bucket ${bucket} cannot be placed: no NATS server with server_tags ["${tag}"] is up. Each server of the NATS cluster needs its own tag dyn-lease-<i> (server_tags in its config: deploy/nats/cluster.conf, deploy/k8s); server said: ${(cause as Error)?.message ?? String(cause)}`, { retryable: false, cause });
    this.name = 'LeaseLayoutError';
    this.bucket = bucket;
    this.tag = tag;
  }
}

/**
 * The server found no server for the bucket's placement tag (nats-server 10005 'no suitable peers for placement').
 * Other refusals (a full store: 10023 'insufficient resources') are the attempt's ordinary failure, tried again.
 */
function isPlacementFailure(err: unknown): boolean {
  const e = err as { message?: string; api_error?: { err_code?: number } };
  return e?.api_error?.err_code === 10005 || (e?.message ?? '').toLowerCase().includes('no suitable peers');
}

/** Opens lease bucket `index` of `of` (see the module comment). */
export async function openLeaseBucket(bus: Bus, bucket: string, index: number, of: number): Promise<KV> {
  if (of === 1) return bus.kv(bucket, { history: 1 });
  const tag = leasePlacementTag(index);
  try {
    return await bus.kv(bucket, { history: 1, replicas: 1, placement: { cluster: '', tags: [tag] } });
  } catch (err) {
    if (isPlacementFailure(err)) throw new LeaseLayoutError(bucket, tag, err);
    throw err;
  }
}

export interface SlotEnv {
  bus: Bus;
  key: string;
  holder: string;
  opTimeoutMs: number;
  clock: Clock;
  log?: Logger;
}

export class LeaseSlot {
  readonly bucket: string;
  readonly index: number;
  readonly #of: number;
  readonly #env: SlotEnv;
  #kv?: KV;
  /** an undecodable record: its revision and when we first saw it. */
  corrupt?: { revision: number; seenMs: number };
  /** our writes here whose answer did not come (newest last, bounded): any of them may have been applied. */
  unanswered: LeaseValue[] = [];
  /** the last operation here failed (logged once per change). */
  failing = false;
  /** when a LeaseLayoutError of this bucket was last logged. */
  #layoutLoggedMs = Number.NEGATIVE_INFINITY;

  constructor(env: SlotEnv, bucket: string, index: number, of: number) {
    this.#env = env;
    this.bucket = bucket;
    this.index = index;
    this.#of = of;
  }

  /**
   * The bucket, opened once. Until it is, each call asks the Bus (Bus.kv shares an open in flight, and joins one
   * pending past KV_OPEN_AGAIN_MS with a new attempt: one that began while the bucket's server was down answers only
   * at its own deadlines, seconds after the server came back); an open that failed is tried again at the next call.
   */
  open(): Promise<KV> {
    if (this.#kv) return Promise.resolve(this.#kv);
    return openLeaseBucket(this.#env.bus, this.bucket, this.index, this.#of).then((kv) => (this.#kv = kv));
  }

  /**
   * An operation here failed (with several buckets): a bucket that cannot be placed is logged as an error every
   * LAYOUT_ERROR_LOG_MS while it lasts (the lease keeps trying it), another failure once until one succeeds.
   */
  failed(err: unknown): void {
    const now = this.#env.clock.now();
    if (err instanceof LeaseLayoutError && now - this.#layoutLoggedMs >= LAYOUT_ERROR_LOG_MS) {
      this.#layoutLoggedMs = now;
      this.#env.log?.error({ key: this.#env.key, bucket: this.bucket, err: err.message }, 'lease bucket cannot be placed (tried again)');
    } else if (!this.failing) this.#env.log?.warn({ key: this.#env.key, bucket: this.bucket, err: (err as Error).message }, 'lease bucket unanswered (the others hold the lease)');
    this.failing = true;
  }

  /** The open bucket (after open() resolved once). */
  get kv(): KV | undefined {
    return this.#kv;
  }

  /** The lease record, within opTimeoutMs (opening the bucket too; KV reads take the JetStream context's 5-s default otherwise). */
  read(): Promise<KvEntry | null> {
    return within((async () => (await this.open()).get(this.#env.key))(), this.#env.opTimeoutMs, `$KV.${this.bucket}.${this.#env.key}`, this.#env.clock);
  }

  /** null: absent, deleted or empty (free); 'corrupt': a value that does not decode (not free). */
  decode(e: KvEntry | null): LeaseValue | null | 'corrupt' {
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return null;
    try {
      return LeaseValue.decode(e.value, `$KV.${this.bucket}.${this.#env.key}`);
    } catch (err) {
      this.#env.log?.warn({ key: this.#env.key, bucket: this.bucket, revision: e.revision, err: (err as Error).message }, 'undecodable lease record: held until it stays unchanged for a TTL');
      return 'corrupt';
    }
  }

  /** `e` is a write of ours whose answer did not come (lease.ts's module comment): its value, else undefined. */
  mine(e: KvEntry | null): LeaseValue | undefined {
    if (!this.unanswered.length) return undefined;
    const cur = this.decode(e);
    if (!cur || cur === 'corrupt' || cur.holder !== this.#env.holder) return undefined;
    return this.unanswered.find((u) => u.term === cur.term && u.acquiredMs === cur.acquiredMs && u.expiresMs === cur.expiresMs);
  }

  /**
   * Writes `v` only if the key's last revision here is still `expected` (0: the key is absent); resolves to the
   * new revision. Throws a CAS failure (isCasFailure) when another write came first, also when that write
   * expected the same revision and the server let both through its pre-check (the message id dedupes it).
   */
  async cas(v: LeaseValue, expected: number): Promise<number> {
    let pa;
    try {
      await within(this.open(), this.#env.opTimeoutMs, `KV ${this.bucket}`, this.#env.clock);
      pa = await this.#env.bus.jetstream().publish(kvKeySubject(this.bucket, this.#env.key), LeaseValue.encode(v), {
        msgID: `${this.#env.key}@${expected}`,
        expect: { lastSubjectSequence: expected },
        timeout: this.#env.opTimeoutMs,
      });
    } catch (err) {
      // no answer (or no verdict): the write may still be applied; a record equal to it is ours
      if (!isCasFailure(err) && v.holder) {
        this.unanswered.push(v);
        if (this.unanswered.length > MAX_UNANSWERED) this.unanswered.shift();
      }
      throw err;
    }
    if (pa.duplicate) throw new LeaseCasLost(`wrong last sequence: revision ${expected} was already written over (seq ${pa.seq})`);
    this.unanswered = [];
    return pa.seq;
  }
}

/** Another write of the lease key came first (see LeaseSlot.cas). */
export class LeaseCasLost extends Error {}

export function isCasFailure(err: unknown): boolean {
  if (err instanceof LeaseCasLost) return true;
  const e = err as { message?: string; code?: number; api_error?: { err_code?: number } };
  const m = (e?.message ?? '').toLowerCase();
  // JetStream: 10071 wrong last sequence; 10164/"key exists" for create
  return m.includes('wrong last sequence') || m.includes('key exists') || e?.code === 10071 || e?.api_error?.err_code === 10071 || m.includes('10071');
}
