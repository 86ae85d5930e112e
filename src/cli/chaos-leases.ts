/**
 * Who leads, as `dynamollm chaos` (commands/chaos.ts) reads it: the leader lease records themselves, in the
 * JetStream KV buckets the cluster and pool managers contend for (src/runtime/lease.ts; keys protocols' leaseKeys;
 * buckets leaseBuckets: one, or on a NATS cluster one per server, a lease held on a majority of them, which
 * MajorityLeaseLog reads as one), not the lease events the leaders publish. Those events are core-NATS publications: one
 * sent while its publisher's NATS server dies is lost, and the events stream never stores it, so a kill whose
 * successor's event was lost read as a gap until a later election (tens of seconds).
 *
 * A record names its holder, its term (one more at each acquisition, a restarted process under the same id
 * included) and when that term was acquired; every record of a term (the acquisition and each renewal) carries
 * that acquisition time, so a term whose first record the harness did not see is still timed exactly. The
 * bucket keeps one record per key (history 1): the harness follows the keys with a watch (every write while it
 * is connected) plus a poll of every key with a deadline (what the watch misses while its consumer is being
 * re-made after a NATS server's death), and keeps what it saw in a LeaseLog.
 *
 * The harness speaks as the observer (read-only: protocols/permissions.ts lets it read the leases bucket and make
 * its own consumers of it, and write nothing there).
 */
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { LeaseValue, jetstream, leaseBuckets } from '../../protocols/index.ts';
import type { Bus } from '../runtime/bus.ts';
import { within } from '../runtime/clock.ts';

/** One write of a lease key, as read from the bucket. */
export interface LeaseRecord {
  key: string;
  /** the KV revision (stream sequence) of the write. */
  revision: number;
  /** when the server stored the write (the message's timestamp), ms since epoch. */
  writtenMs: number;
  /** '' : released. */
  holder: string;
  term: number;
  /** when the holder took this term, ms since epoch (its own clock). */
  acquiredMs: number;
  expiresMs: number;
}

/** records kept per key at most (the oldest dropped first): a renewal every 0.5 s is ~7,000 an hour. */
const MAX_RECORDS_PER_KEY = 50_000;

/** The lease records seen, per key, in revision order, each revision once. */
export class LeaseLog {
  readonly #byKey = new Map<string, LeaseRecord[]>();

  /** Adds `r` unless its revision is known. True when new. */
  add(r: LeaseRecord): boolean {
    let list = this.#byKey.get(r.key);
    if (!list) this.#byKey.set(r.key, (list = []));
    // almost always the newest: from the end
    let i = list.length;
    while (i > 0 && list[i - 1]!.revision > r.revision) i--;
    if (i > 0 && list[i - 1]!.revision === r.revision) return false;
    list.splice(i, 0, r);
    if (list.length > MAX_RECORDS_PER_KEY) list.shift();
    return true;
  }

  records(key: string): readonly LeaseRecord[] {
    return this.#byKey.get(key) ?? [];
  }

  keys(): string[] {
    return [...this.#byKey.keys()];
  }

  /** the newest revision seen of `key` (0: none). */
  lastRevision(key: string): number {
    return this.#byKey.get(key)?.at(-1)?.revision ?? 0;
  }
}

/** The records of each lease key, in the order they were written (what leaseAround and the harness read). */
export interface LeaseRecords {
  records(key: string): readonly LeaseRecord[];
}

/**
 * The records of several lease buckets (a NATS cluster: a lease is held on a majority of them) read as one: the
 * records of each acquisition (holder, term, acquiredMs) that a majority of the buckets hold, and the releases of
 * those terms, in the order they were written (revision: that order). An acquisition that got no majority (a split,
 * given back) leads nobody and is left out.
 */
export class MajorityLeaseLog implements LeaseRecords {
  constructor(readonly logs: readonly LeaseLog[]) {}

  records(key: string): readonly LeaseRecord[] {
    const quorum = Math.floor(this.logs.length / 2) + 1;
    const id = (r: LeaseRecord) => `${r.term}/${r.holder}/${r.acquiredMs}`;
    const on = new Map<string, Set<number>>();
    this.logs.forEach((log, i) => {
      for (const r of log.records(key)) if (r.holder) (on.get(id(r)) ?? on.set(id(r), new Set()).get(id(r))!).add(i);
    });
    const terms = new Set([...on].filter(([, b]) => b.size >= quorum).map(([k]) => Number(k.split('/')[0])));
    return this.logs
      .flatMap((log) => log.records(key).filter((r) => (r.holder ? on.get(id(r))!.size >= quorum : terms.has(r.term))))
      .sort((a, b) => a.writtenMs - b.writtenMs || a.term - b.term)
      .map((r, i) => ({ ...r, revision: i + 1 }));
  }
}

/**
 * The lease of one key around `atMs`, from its records (in revision order): `at`, the record in force then (the
 * newest revision written at or before `atMs`; undefined when the records do not reach back so far), and `next`,
 * the first holder of a later term (another holder, or the same id's restarted process: a new acquisition) after
 * it. Without `at`, `next` is the first holder that acquired the lease at or after `atMs`.
 */
export function leaseAround(records: readonly LeaseRecord[], atMs: number): { at?: LeaseRecord; next?: LeaseRecord } {
  let i = records.length - 1;
  while (i >= 0 && records[i]!.writtenMs > atMs) i--;
  const at = i >= 0 ? records[i] : undefined;
  for (let j = i + 1; j < records.length; j++) {
    const r = records[j]!;
    if (r.holder !== '' && (at ? r.term > at.term : r.acquiredMs >= atMs)) return { ...(at ? { at } : {}), next: r };
  }
  return at ? { at } : {};
}

/** A KV entry of the leases bucket as a record; undefined for a delete/purge or a value that does not decode. */
export function leaseRecordOf(e: KvEntry | KvWatchEntry): LeaseRecord | undefined {
  if (e.operation !== 'PUT' || e.value.length === 0) return undefined;
  let v: LeaseValue;
  try {
    v = LeaseValue.decode(e.value, `$KV.${e.bucket}.${e.key}`);
  } catch {
    return undefined;
  }
  return { key: e.key, revision: e.revision, writtenMs: e.created.getTime(), holder: v.holder, term: v.term, acquiredMs: v.acquiredMs, expiresMs: v.expiresMs };
}

export interface LeaseWatchOptions {
  /** keys polled besides those the watch has shown (leaseKeys of the cluster's planner and pools). */
  keys: readonly string[];
  /** period of the poll, ms. Default 500. */
  pollMs?: number;
  /** deadline of a poll's read of one key, ms. Default 1500 (JetStream's own: 5 s). */
  opTimeoutMs?: number;
  /** deadline of the watch's making (its consumer's creation and first info), ms. Default 3000. */
  watchTimeoutMs?: number;
  /** each failed read or watch, e.g. to move the connection off a server without JetStream (Bus.jetstreamFailed). */
  onError?: (err: unknown) => void;
  /** the poll found a record the watch has not delivered, and the watch has delivered nothing for this long: it is made anew, ms. Default 3000. */
  watchStallMs?: number;
  /** bucket (default jetstream.leasesBucket). */
  bucket?: string;
  /** where the records go (default a new one). */
  log?: LeaseLog;
}

/**
 * Follows the lease keys of a bucket into `log`: a KV watch of every key (remade when it ends, fails or stalls)
 * and a poll of every key every `pollMs`, each read within `opTimeoutMs`. Opens the bucket without creating it
 * (no JetStream request: the observer may not create streams).
 */
export class LeaseWatch {
  readonly log: LeaseLog;
  readonly stats = { watched: 0, polled: 0, watchStarts: 0, watchFailures: 0, pollFailures: 0, errors: {} as Record<string, number> };
  readonly #nc: NatsConnection;
  readonly #keys: readonly string[];
  readonly #pollMs: number;
  readonly #opTimeoutMs: number;
  readonly #watchTimeoutMs: number;
  readonly #onError?: (err: unknown) => void;
  readonly #stallMs: number;
  readonly #bucket: string;
  #kv?: Promise<KV>;
  #running = false;
  #iter?: { stop(): void };
  /** ends the poll loop's wait between two polls (stop). */
  #wake?: () => void;
  #loops: Promise<void>[] = [];
  /** revision of each key the watch delivered last. */
  readonly #watched = new Map<string, number>();
  /** when the current watch was made or last delivered a record (ms since epoch). */
  #watchAliveMs = 0;

  constructor(nc: NatsConnection, o: LeaseWatchOptions) {
    this.#nc = nc;
    this.log = o.log ?? new LeaseLog();
    this.#keys = o.keys;
    this.#pollMs = o.pollMs ?? 500;
    this.#opTimeoutMs = o.opTimeoutMs ?? 1500;
    this.#watchTimeoutMs = o.watchTimeoutMs ?? 3000;
    if (o.onError) this.#onError = o.onError;
    this.#stallMs = o.watchStallMs ?? 3000;
    this.#bucket = o.bucket ?? jetstream.leasesBucket;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#kv = new Kvm(this.#nc).open(this.#bucket);
    this.#loops.push(this.#watchLoop(), this.#pollLoop());
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    this.#iter?.stop();
    await Promise.allSettled(this.#loops);
  }

  /** One poll of every key now (also what the poll loop runs). True when every key's read was answered. */
  async poll(): Promise<boolean> {
    const kv = await this.#kv!;
    const keys = [...new Set([...this.#keys, ...this.log.keys()])];
    const failures = this.stats.pollFailures;
    await Promise.all(keys.map(async (key) => {
      try {
        const e = await within(kv.get(key), this.#opTimeoutMs, `$KV.${this.#bucket}.${key}`);
        const r = e ? leaseRecordOf(e) : undefined;
        if (!r) return;
        this.stats.polled++;
        this.log.add(r);
        // a record the watch has not delivered while it has been silent a while: its consumer is stuck (a NATS
        // server's death; an ordered consumer notices only after two missed 5-s heartbeats)
        if ((this.#watched.get(key) ?? 0) < r.revision && Date.now() - this.#watchAliveMs > this.#stallMs) this.#iter?.stop();
      } catch (err) {
        // unanswered or unreachable (a NATS server's death): the next poll tries again
        this.stats.pollFailures++;
        this.#failed(err);
      }
    }));
    return this.stats.pollFailures === failures;
  }

  /** errors counted by their words (numbers masked; 20 kinds at most), and handed to onError. */
  #failed(err: unknown): void {
    const m = ((err as Error)?.message ?? String(err)).replace(/\d+/g, 'N').slice(0, 120);
    if (m in this.stats.errors || Object.keys(this.stats.errors).length < 20) this.stats.errors[m] = (this.stats.errors[m] ?? 0) + 1;
    this.#onError?.(err);
  }

  async #pollLoop(): Promise<void> {
    while (this.#running) {
      await this.poll();
      await new Promise<void>((r) => {
        const t = setTimeout(r, this.#pollMs);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  async #watchLoop(): Promise<void> {
    while (this.#running) {
      try {
        const kv = await this.#kv!;
        // every key of the bucket (each lease key: the planner's and one per pool)
        const made = kv.watch({ key: '>' });
        // a watch made after its deadline is stopped as it comes
        let late = false;
        made.then((x) => (late ? x.stop() : undefined), () => undefined);
        const w = await within(made, this.#watchTimeoutMs, `watch of KV ${this.#bucket}`).catch((err: unknown) => {
          late = true;
          throw err;
        });
        if (!this.#running) {
          w.stop();
          break;
        }
        this.#iter = w;
        this.#watchAliveMs = Date.now();
        this.stats.watchStarts++;
        for await (const e of w) {
          this.#watchAliveMs = Date.now();
          const r = leaseRecordOf(e);
          if (!r) continue;
          this.stats.watched++;
          this.log.add(r);
          this.#watched.set(r.key, Math.max(this.#watched.get(r.key) ?? 0, r.revision));
        }
      } catch (err) {
        this.stats.watchFailures++;
        this.#failed(err);
      }
      this.#iter = undefined;
      if (this.#running) await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export type LeaseWatchStats = LeaseWatch['stats'];

/**
 * The harness's observer connection with the lease reading on it, made again whenever nats.js closes it (it gives
 * up a connection that a server refused twice in a row, e.g. 'Authentication Timeout' from a restarted server too
 * starved to read its CONNECT in time; the harness then read neither the cluster status nor a lease record for the
 * rest of the run). Every connection's records go into one LeaseLog.
 */
export class ObserverLink {
  /** every lease bucket's records as one (LeaseLog with one bucket, MajorityLeaseLog with several). */
  readonly log: LeaseRecords;
  /** the connection now (undefined while it is being made again). */
  bus?: Bus;
  /** one watch per lease bucket on the connection now. */
  watches: LeaseWatch[] = [];
  /** connections made again after nats.js closed one. */
  reconnects = 0;
  readonly #logs: LeaseLog[];
  readonly #buckets: string[];
  readonly #done: LeaseWatchStats[] = [];
  #stopping = false;
  #loop?: Promise<void>;

  /**
   * `connect`: a new observer connection; `keys`: the lease keys polled (LeaseWatchOptions.keys); `replicas`: the
   * cluster's nats.jetstreamReplicas (its lease buckets: leaseBuckets).
   */
  constructor(private readonly connect: () => Promise<Bus>, private readonly keys: readonly string[], replicas = 1) {
    this.#buckets = leaseBuckets(replicas);
    this.#logs = this.#buckets.map(() => new LeaseLog());
    this.log = this.#logs.length === 1 ? this.#logs[0]! : new MajorityLeaseLog(this.#logs);
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.bus?.close().catch(() => {});
    await this.#loop;
  }

  /** One poll of every key of every bucket now; true when every read was answered. */
  async poll(): Promise<boolean> {
    const ws = this.watches;
    if (!ws.length) return false;
    return (await Promise.all(ws.map((w) => w.poll().catch(() => false)))).every(Boolean);
  }

  /** the lease reading's counts over every connection and bucket (errors: the current one's and the last's kinds). */
  stats(): LeaseWatchStats & { reconnects: number } {
    const all = [...this.#done, ...this.watches.map((w) => w.stats)];
    const sum = (k: Exclude<keyof LeaseWatchStats, 'errors'>) => all.reduce((n, s) => n + s[k], 0);
    const errors: Record<string, number> = {};
    for (const s of all) for (const [m, n] of Object.entries(s.errors)) errors[m] = (errors[m] ?? 0) + n;
    return { watched: sum('watched'), polled: sum('polled'), watchStarts: sum('watchStarts'), watchFailures: sum('watchFailures'), pollFailures: sum('pollFailures'), errors, reconnects: this.reconnects };
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let b: Bus;
      try {
        b = await this.connect();
      } catch {
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      if (this.#stopping) {
        await b.close().catch(() => {});
        break;
      }
      // a read failed on a server without JetStream yet (a restarted one catching up): the connection moves to
      // another; with several buckets one bucket's server gone says nothing of this connection's (its reads fail)
      const onError = this.#buckets.length === 1 ? (err: unknown) => b.jetstreamFailed((err as { cause?: unknown }).cause ?? err) : undefined;
      const ws = this.#buckets.map((bucket, i) => new LeaseWatch(b.nc, { keys: this.keys, log: this.#logs[i]!, bucket, ...(onError ? { onError } : {}) }));
      this.bus = b;
      this.watches = ws;
      for (const w of ws) w.start();
      await b.nc.closed();
      await Promise.all(ws.map((w) => w.stop()));
      this.#done.push(...ws.map((w) => w.stats));
      this.bus = undefined;
      this.watches = [];
      if (!this.#stopping) this.reconnects++;
    }
  }
}
