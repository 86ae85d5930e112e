/**
 * Leader leases for singleton roles (cluster planner, one pool manager per pool) on JetStream KV.
 *
 * Layout (protocols' leaseBuckets of the bus's jetstreamReplicas N, lease-slot.ts opens them):
 * - N = 1 (one NATS server): one key in the one bucket `jetstream.leasesBucket`.
 * - N > 1 (a NATS cluster): the key in each of N buckets of ONE replica, bucket i placed (JetStream placement tags)
 *   on the one server whose `server_tags` hold leasePlacementTag(i). A lease is held on a MAJORITY (floor(N/2)+1)
 *   of them. One replicated bucket would stop every lease for as long as its stream re-elects a raft leader after
 *   the NATS server leading it dies (seconds); with one bucket per server, a server's loss costs the holder one
 *   bucket and no election: it keeps its majority on the others. A bucket that cannot be placed (no server with its tag) fails with LeaseLayoutError; the lease never falls back to another layout.
 * - Layouts: a contender also reads (never makes) the other layout's records of its key (lease-other-layout.ts),
 *   before it writes and again after its majority was written, and a live record of another holder there is held. Two managers on two values of N would otherwise each find their own layout free and both lead.
 *
 * The record (protocols' LeaseValue) names the holder and its expiry. nats-server 2.9 has no per-key TTL, so
 * expiry lives in the value. Per bucket (lease-slot.ts):
 * - every write (acquire, renew, release) is a compare-and-set: a JetStream publish on the key's subject expecting the key's last revision R, with the message id `<key>@R`. The id is what makes it exact on a
 *   replicated (R3) bucket: nats-server before 2.9.21 checks an expected per-subject revision only before
 *   the write is proposed to the stream's raft group, not when it is applied, so two writes expecting the same
 *   R that arrive together both pass (measured on 2.9.10, 3 servers on loopback: 198 of 200 rounds of 6
 *   concurrent updates on one revision had more than one succeed, and two planners held one term after a
 *   host kill). The duplicate check runs when a write is applied, in log order on every replica: of the
 *   writes expecting R, the first applied wins and the others come back as duplicates (0 of 200 rounds had
 *   two winners), which count as a failed compare-and-set.
 * - a record is free when absent, released (holder '') or expired (expiresMs < now). A record held under our own
 *   holder id by another process of this machine that is gone (the record names its process: boot id, pid
 *   namespace, pid) is free at once: a supervisor restarted the killed leader, and the restarted process need not
 *   wait out the TTL of the dead one. A process that is alive (the same id given to two live processes), one of
 *   another machine or pid namespace, or a record without a process: wait for the expiry.
 * - a record that does not decode is NOT free: it counts as held by an unknown holder until it has stayed
 *   unchanged (same revision) for a whole TTL, exactly like a holder that stopped renewing.
 * - a write whose answer did not come within `opTimeoutMs` may still have been applied (a loaded server, a slow
 *   replicated commit): its value is remembered, and a record equal to one of those values (holder, term,
 *   acquiredMs and expiresMs: each write's expiry is its own) is ours, adopted as if the answer had come. Without
 *   it, a contender whose acquire is applied unanswered would wait out its own record's TTL, and a leader whose
 *   renewal is applied unanswered would find its next compare-and-set failing and step down ('taken').
 * Over the buckets (this file):
 * - acquire: read every bucket (and the other layout's) in parallel, each within opTimeoutMs; fewer than a majority
 *   answered: try again soon; a live holder on the other layout: wait. A majority of answered records that are one
 *   acquisition of ours applied unanswered: elected on them.
 *   Any answered record held by someone else (or undecodable and young): wait. Else write our value on every
 *   answered bucket, expecting the revision read there: the lowest-numbered one alone first (every contender that
 *   read the same buckets starts there, so exactly one goes on; a loser of it stops), then the others together.
 *   Elected when a majority of writes succeeded and the other layout then shows no live holder; on a split (no
 *   majority) or such a holder, release what we got and try again after a random fraction of renewMs (converging).
 * - term (the fencing token) = max over the records read (their term, and their revision: revisions only rise,
 *   so a record corrupted, deleted or rewritten with a lower term still raises it) + 1, written on the majority.
 * - renew: every `renewMs`, compare-and-set on each bucket we hold (a failure whose record is not ours: that
 *   bucket is lost), and on each bucket we do not hold whose record is free (whatever its term: a split loser's
 *   release may carry a higher one), or is our own record of this term (a server that came back, a write of ours that failed): the majority comes back after a
 *   server returns. Fewer buckets held than a majority: step down ('taken').
 * - step down locally at our own expiry even when no server can be reached: `isLeader()` compares the clock
 *   against the majority-th latest expiry we wrote successfully (that many buckets hold our record until then)
 *   minus a safety margin, so a partitioned or paused leader stops claiming leadership before any standby may
 *   take over.
 * Why at most one leader: on one bucket, a record's holder is alone until its expiry (nobody writes over a
 *   record before reading it expired, and the compare-and-set fails when anything was written between that read
 *   and the write). A leader at time t has a majority of buckets whose records it wrote expire after t; two such
 *   majorities share a bucket, whose record cannot be live for two holders. A server that comes back with
 *   stale records changes nothing: its records carry their expiry, and any write there is a compare-and-set on
 *   the revision it holds.
 * Why terms rise (a later leader's term is above every earlier one's; by induction over elections): on a bucket,
 *   every record written after a leader's record there has a term >= that leader's: the leader itself writes its
 *   own term; an acquirer (and its release) writes above the record it read, itself after ours; a leader that
 *   regains the bucket writes its own term, and regains only once our record there is free (released or expired:
 *   our lead is over), so it was elected after us and its term is above ours. A leader elected after another
 *   shares a bucket of its majority with the other's majority, and wrote there after the other (the other way
 *   round, the later one's record would have blocked the earlier one until it expired, after the later one's
 *   election had to happen), so it read a term >= the other's there and took one above it. N = 1 is the same
 *   argument on one bucket.
 * Assumption: contenders' clocks agree to well within `safetyMs` (exact on one machine; NTP across nodes, where ttlMs should then be several seconds).
 * Events: 'elected' ({holder, term, expiresMs}), 'renewed' ({holder, term, untilMs}: leaderUntilMs() after a renewal), 'lost' ({holder, term, reason}), 'answered' ({sentMs}: a majority of the buckets answered a renewal or a read sent then: the link worked, as liveness verdicts need).
 */
import { EventEmitter } from 'node:events';
import type { KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { LeaseValue, leaseBuckets } from '../../protocols/index.ts';
import type { Bus } from './bus.ts';
import { systemClock, within, type Clock } from './clock.ts';
import { LeaseSlot, isCasFailure } from './lease-slot.ts';
import { otherLayoutBuckets, readOtherLayout } from './lease-other-layout.ts';
import { processGone, processName } from './lease-proc.ts';

export { LeaseLayoutError } from './lease-slot.ts';

/** the next attempt after a failed one (unanswered, unreachable), ms; at most renewMs. */
const RETRY_AFTER_FAILURE_MS = 200;
/** with several buckets, how long an acquisition waits for the other buckets' reads once a majority answered, ms. */
const READ_GRACE_MS = 50;

export interface LeaderLeaseOptions {
  bus: Bus;
  /** lease key (protocols' leaseKeys). */
  key: string;
  /** this contender's id (unique per process). */
  holder: string;
  /** lease lifetime without renewal, ms. Default 3000. */
  ttlMs?: number;
  /** renew (leader) and retry (standby) period, ms. Default 1000. Must be well below ttlMs. */
  renewMs?: number;
  /** the leader considers itself leader only until expiry minus this margin, ms. Default min(250, ttl/10). */
  safetyMs?: number;
  clock?: Clock;
  log?: Logger;
  /** one bucket of this name instead of the layout of the bus's replicas (leaseBuckets(bus.jetstreamReplicas)). */
  bucket?: string;
  /** the layout's replicas N (leaseBuckets(N)); default the bus's jetstreamReplicas. */
  replicas?: number;
  /**
   * Deadline of one lease operation (a KV read, a compare-and-set), ms. Default renewMs. An operation caught by a
   * NATS restart or reconnect gets no answer; given up at this deadline, it is tried again on the reconnected
   * connection while the lease is still valid (with JetStream's own 5-s default, one lost answer outlasts a 3-s TTL).
   */
  opTimeoutMs?: number;
}

export interface LeaseInfo {
  holder: string;
  expiresMs: number;
  term: number;
}

/** Our lease while we hold it: the term, and per bucket index our last write there that was answered. */
interface Held {
  term: number;
  acquiredMs: number;
  slots: Map<number, { revision: number; expiresMs: number }>;
}

/** One answered read of a bucket. */
interface Answered {
  slot: LeaseSlot;
  e: KvEntry | null;
}

export class LeaderLease extends EventEmitter {
  readonly key: string;
  readonly holder: string;
  readonly ttlMs: number;
  readonly renewMs: number;
  readonly safetyMs: number;
  readonly opTimeoutMs: number;
  /** the buckets the lease is held on (a majority of them). */
  readonly buckets: readonly string[];
  /** how many buckets make a majority. */
  readonly quorum: number;
  #bus: Bus;
  #clock: Clock;
  #log?: Logger;
  #slots: LeaseSlot[];
  /** the buckets of the other layout, read (never made) before and after an acquisition (lease-other-layout.ts). */
  #others: string[];
  /** buckets of the other layout on which a live holder was logged (an error, once per bucket). */
  #mismatchLogged = new Set<string>();
  #running = false;
  #timer: unknown;
  #stepDownTimer: unknown;
  #busy = false;
  #held?: Held;
  /** this process as the records we write name it (Linux), see processName(). */
  readonly #proc = processName();

  constructor(opts: LeaderLeaseOptions) {
    super();
    this.#bus = opts.bus;
    this.key = opts.key;
    this.holder = opts.holder;
    this.ttlMs = opts.ttlMs ?? 3000;
    this.renewMs = opts.renewMs ?? 1000;
    this.safetyMs = opts.safetyMs ?? Math.min(250, Math.floor(this.ttlMs / 10));
    this.opTimeoutMs = opts.opTimeoutMs ?? this.renewMs;
    if (!(this.opTimeoutMs > 0)) throw new RangeError('LeaderLease: opTimeoutMs must be > 0');
    if (!(this.renewMs < this.ttlMs - this.safetyMs)) throw new RangeError('LeaderLease: renewMs must be < ttlMs - safetyMs');
    if (!this.holder) throw new RangeError('LeaderLease: holder must be non-empty');
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.log;
    this.buckets = opts.bucket !== undefined ? [opts.bucket] : leaseBuckets(opts.replicas ?? this.#bus.jetstreamReplicas);
    this.quorum = Math.floor(this.buckets.length / 2) + 1;
    const env = { bus: this.#bus, key: this.key, holder: this.holder, opTimeoutMs: this.opTimeoutMs, clock: this.#clock, log: this.#log };
    this.#slots = this.buckets.map((b, i) => new LeaseSlot(env, b, i, this.buckets.length));
    this.#others = opts.bucket !== undefined ? [] : otherLayoutBuckets(this.buckets);
  }

  /**
   * Start contending. Resolves after the first attempt, also when it could not open the bucket (JetStream
   * unavailable for now: each attempt tries again, so an actor started then contends once it is back). Idempotent.
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    await this.tick();
  }

  /** Stop contending; release the lease if held (so a standby takes over at once). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const held = this.#held;
    if (held) {
      const slots = new Map(held.slots);
      this.#stepDown('released');
      await this.#release(held, slots);
    }
  }

  /** True while we hold an unexpired lease (checked against the clock, not just a flag). */
  isLeader(): boolean {
    return this.#held !== undefined && this.#clock.now() < this.#until(this.#held) - this.safetyMs;
  }

  /** Our term while leader (fencing token), else undefined. */
  term(): number | undefined {
    return this.isLeader() ? this.#held!.term : undefined;
  }

  /** Steps down now ('lost', 'resigned'), releases what is still ours (compare-and-set on our writes), contends on: a shell past the leaderUntilMs() it was told. */
  resign(): void {
    const held = this.#held;
    if (!held) return;
    this.#stepDown('resigned');
    void this.#release(held, held.slots); // written no more: renewals of this lead end with it
  }

  /** Until when we may act as leader (ms since epoch), or 0. */
  leaderUntilMs(): number {
    return this.isLeader() ? this.#until(this.#held!) - this.safetyMs : 0;
  }

  /** The current lease as stored (null when absent, released or expired; with several buckets: on no majority). */
  async leader(): Promise<LeaseInfo | null> {
    if (this.#slots.length === 1) {
      const slot = this.#slots[0]!;
      const e = await (await slot.open()).get(this.key);
      const v = slot.decode(e);
      if (v === 'corrupt') return { holder: '(undecodable record)', expiresMs: Number.POSITIVE_INFINITY, term: e!.revision };
      if (!v || !v.holder || v.expiresMs < this.#clock.now()) return null;
      return { holder: v.holder, expiresMs: v.expiresMs, term: v.term };
    }
    const now = this.#clock.now();
    const live = new Map<string, { holder: string; term: number; expiries: number[] }>();
    await Promise.all(this.#slots.map(async (s) => {
      const v = s.decode(await s.read().catch(() => null));
      if (!v || v === 'corrupt' || !v.holder || v.expiresMs < now) return;
      const id = `${v.term}/${v.holder}`;
      const g = live.get(id) ?? live.set(id, { holder: v.holder, term: v.term, expiries: [] }).get(id)!;
      g.expiries.push(v.expiresMs);
    }));
    for (const g of live.values()) {
      if (g.expiries.length >= this.quorum) return { holder: g.holder, term: g.term, expiresMs: g.expiries.sort((a, b) => b - a)[this.quorum - 1]! };
    }
    return null;
  }

  /** The majority-th latest expiry of our answered writes (0 when we hold fewer buckets than a majority). */
  #until(held: Held): number {
    if (held.slots.size < this.quorum) return 0;
    return [...held.slots.values()].map((s) => s.expiresMs).sort((a, b) => b - a)[this.quorum - 1]!;
  }

  #schedule(ms: number): void {
    if (!this.#running) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => void this.tick(), Math.max(1, ms));
  }

  #stepDown(reason: string): void {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    if (this.#stepDownTimer !== undefined) this.#clock.clearTimeout(this.#stepDownTimer);
    this.#stepDownTimer = undefined;
    this.#log?.info({ key: this.key, term: held.term, reason }, 'lease lost');
    this.emit('lost', { holder: this.holder, term: held.term, reason });
  }

  /** One attempt: renew when leader, acquire when free. Exposed for tests driven by a ManualClock. */
  async tick(): Promise<void> {
    if (!this.#running || this.#busy) return;
    if (!this.#bus.connected) {
      // reconnecting (a restart, a move off a server without JetStream): an attempt now would only wait for it
      if (this.#held && !this.isLeader()) this.#stepDown('expired');
      this.#schedule(RETRY_AFTER_FAILURE_MS);
      return;
    }
    this.#busy = true;
    let next = this.renewMs;
    try {
      // one bucket: opened within a TTL (its JetStream calls take the context's 5-s default otherwise); several:
      // each is opened within its first read or write (one server's loss must not hold up the others)
      if (this.#slots.length === 1) await within(this.#slots[0]!.open(), this.ttlMs, `KV ${this.buckets[0]}`, this.#clock);
      if (this.#held) next = await this.#renew();
      else next = await this.#tryAcquire();
    } catch (err) {
      this.#log?.warn({ key: this.key, err: (err as Error).message }, 'lease attempt failed');
      // the server this connection is on has no JetStream (yet): the next attempt goes through another one
      this.#bus.jetstreamFailed(err);
      // unreachable or unanswered (a restart, a reconnect): try again soon, while the lease may still be renewed
      next = Math.min(this.renewMs, RETRY_AFTER_FAILURE_MS);
    } finally {
      this.#busy = false;
    }
    // a leader whose expiry passed while the server was unreachable is not leader any more
    if (this.#held && !this.isLeader()) this.#stepDown('expired');
    this.#schedule(next);
  }

  /**
   * `f` on every bucket at once; each failure (unanswered, unreachable) is that bucket's, logged when it starts.
   * With one bucket its failure is the attempt's (thrown). Returns how many failed.
   */
  async #each(slots: readonly LeaseSlot[], f: (s: LeaseSlot) => Promise<void>): Promise<number> {
    if (this.#slots.length === 1) {
      for (const s of slots) await f(s);
      return 0;
    }
    const errors = await Promise.all(slots.map((s) => f(s).then(() => {
      if (s.failing) this.#log?.info({ key: this.key, bucket: s.bucket }, 'lease bucket answers again');
      s.failing = false;
      return undefined;
    }, (err: unknown) => {
      s.failed(err);
      return { err };
    })));
    const failed = errors.filter((e) => e !== undefined);
    // one bucket's server gone says nothing of this connection's (a stream without its server answers 503, which
    // reads as 'jetstream is not enabled'); every bucket failing does: off a server without JetStream, or one that
    // answers nothing (frozen), to another while the lease may still be renewed
    if (failed.length === slots.length && slots.length === this.#slots.length) {
      if (!this.#bus.jetstreamFailed(failed[0]!.err)) void this.#bus.jetstreamUnanswered(this.opTimeoutMs);
    }
    return failed.length;
  }

  async #renew(): Promise<number> {
    const held = this.#held!;
    if (!this.isLeader()) {
      this.#stepDown('expired');
      return this.renewMs;
    }
    const t0 = this.#clock.now();
    const v: LeaseValue = { v: 1, holder: this.holder, acquiredMs: held.acquiredMs, expiresMs: t0 + this.ttlMs, term: held.term, ...this.#procField() };
    const failed = await this.#each(this.#slots, (s) => (held.slots.has(s.index) ? this.#renewOn(s, v, held) : this.#regain(s, v, held)));
    if (this.#slots.length - failed >= this.quorum) this.emit('answered', { sentMs: t0 });
    if (this.#held !== held) return this.renewMs; // stepped down meanwhile
    if (held.slots.size < this.quorum) {
      this.#stepDown('taken');
      return this.renewMs;
    }
    this.#armStepDown();
    // a leader's shell bounds its decisions by it (no lease read per decision)
    this.emit('renewed', { holder: this.holder, term: held.term, untilMs: this.leaderUntilMs() });
    // renewMs after this renewal's value was made (not after its answer, which may take most of the TTL)
    const next = Math.max(1, this.renewMs - (this.#clock.now() - t0));
    // a bucket that did not answer took up to opTimeoutMs of this period; more failing than the majority allows: soon
    return this.#slots.length > 1 && this.#slots.length - failed < this.quorum ? Math.min(next, RETRY_AFTER_FAILURE_MS) : next;
  }

  /** A renewal on a bucket we hold. */
  async #renewOn(s: LeaseSlot, v: LeaseValue, held: Held): Promise<void> {
    try {
      const rev = await s.cas(v, held.slots.get(s.index)!.revision);
      if (this.#held !== held) return; // stepped down meanwhile
      held.slots.set(s.index, { revision: rev, expiresMs: v.expiresMs });
    } catch (err) {
      if (!isCasFailure(err)) throw err; // unreachable: keep trying until our expiry
      // the revision moved on: by someone else, or by a renewal of ours applied while its answer was lost
      const e = await s.read();
      if (this.#held !== held) return;
      const mine = s.mine(e);
      if (!mine) {
        if (this.#slots.length > 1) this.#log?.warn({ key: this.key, bucket: s.bucket, term: held.term }, 'lease bucket taken');
        held.slots.delete(s.index);
        return;
      }
      this.#log?.info({ key: this.key, bucket: s.bucket, term: held.term, revision: e!.revision }, 'lease renewal applied unanswered: adopted');
      // what the record says (a later write than the one we had an answer for)
      held.slots.set(s.index, { revision: e!.revision, expiresMs: mine.expiresMs });
    }
  }

  /**
   * A leader's write on a bucket it does not hold: only over a free record (of any term: terms still rise, the
   * module comment), or over our own record of this term. Our term (the fencing token) never changes while we lead.
   */
  async #regain(s: LeaseSlot, v: LeaseValue, held: Held): Promise<void> {
    const e = await s.read();
    if (this.#held !== held || !this.isLeader()) return;
    const cur = s.decode(e);
    if (cur === 'corrupt') return;
    const ours = cur !== null && cur.holder === this.holder && cur.proc === this.#proc && cur.term === held.term;
    const free = !cur || !cur.holder || cur.expiresMs < this.#clock.now();
    if (!ours && !free) return;
    try {
      const rev = await s.cas(v, e?.revision ?? 0);
      if (this.#held !== held) return;
      held.slots.set(s.index, { revision: rev, expiresMs: v.expiresMs });
      this.#log?.info({ key: this.key, bucket: s.bucket, term: held.term }, 'lease bucket regained');
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
  }

  /** Returns ms until the next attempt. */
  async #tryAcquire(): Promise<number> {
    const sentMs = this.#clock.now();
    const answered = await this.#readAll();
    if (answered.length < this.quorum) return RETRY_AFTER_FAILURE_MS;
    this.emit('answered', { sentMs });
    // held on the own layout by a live holder, none of its records an acquisition of ours: nothing to take whatever the
    // other layout says, so its records are read only when this layout may be taken or adopted (lease-other-layout.ts)
    const seen = this.#clock.now();
    const early = this.#mine(answered, seen).size ? undefined : this.#heldFor(answered, new Map(), seen, true).wait;
    if (early !== undefined) return early;
    const other = await this.#otherLayoutHeld();
    const t0 = this.#clock.now();
    // a live holder on the other layout: held (retry just after it would lapse)
    if (other !== undefined) return Math.max(1, Math.min(this.renewMs, other - t0 + 1));
    // our acquisition applied while its answers were lost: we hold it since those writes
    const mine = this.#mine(answered, t0);
    const adopted = this.#adoptable(answered, mine);
    if (adopted) return adopted;
    const { wait, term } = this.#heldFor(answered, mine, t0, false);
    if (wait !== undefined) return wait;
    // terms only rise: above every record's term and above its revision (revisions only rise)
    const v: LeaseValue = { v: 1, holder: this.holder, acquiredMs: t0, expiresMs: t0 + this.ttlMs, term: term + 1, ...this.#procField() };
    const got = new Map<number, { revision: number; expiresMs: number }>();
    const write = async ({ slot, e }: Answered) => {
      // expecting revision 0: the key must still be absent
      got.set(slot.index, { revision: await slot.cas(v, e?.revision ?? 0), expiresMs: v.expiresMs });
    };
    const [first, ...rest] = answered;
    let lost = false;
    await this.#each([first!.slot], () => write(first!).catch((err: unknown) => {
      if (!isCasFailure(err)) throw err; // unanswered (several buckets: it may still be applied; the others go on)
      lost = true;
    }));
    if (lost) return this.renewMs; // someone else won (the first bucket: the others are theirs to take)
    await this.#each(rest.map((a) => a.slot), (s) => write(answered.find((a) => a.slot === s)!).catch((err: unknown) => {
      if (!isCasFailure(err)) throw err;
    }));
    if (got.size >= this.quorum) {
      // a contender of the other layout that read ours free while we read its free: of two such, at least one
      // reads the other's write here (each wrote before reading the other's layout), and gives its majority back
      const after = await this.#otherLayoutHeld();
      if (after === undefined) return this.#elected(v, got);
      await this.#release({ term: v.term, acquiredMs: v.acquiredMs }, got);
      return RETRY_AFTER_FAILURE_MS + Math.floor(Math.random() * this.renewMs);
    }
    // a split (or too few answers): give back what we got, and try again after a random while
    this.#log?.info({ key: this.key, term: v.term, got: got.size, quorum: this.quorum }, 'lease split: released, trying again');
    await this.#release({ term: v.term, acquiredMs: v.acquiredMs }, got);
    return RETRY_AFTER_FAILURE_MS + Math.floor(Math.random() * this.renewMs);
  }

  /**
   * Every bucket's record, in bucket order: with one bucket its read (a failure is the attempt's); with several
   * those answered within opTimeoutMs, or within READ_GRACE_MS after a majority answered (a server that does not
   * answer, frozen or gone, holds up no election: any live holder's majority shares a bucket with ours).
   */
  async #readAll(): Promise<Answered[]> {
    const answered: Answered[] = [];
    let majority!: () => void;
    const quorumRead = new Promise<void>((r) => (majority = r));
    let timer: unknown;
    const all = this.#each(this.#slots, async (slot) => {
      const e = await slot.read();
      answered.push({ slot, e });
      if (answered.length === this.quorum) majority();
    });
    const grace = quorumRead.then(() => new Promise<void>((r) => (timer = this.#clock.setTimeout(r, READ_GRACE_MS))));
    try {
      await (this.#slots.length === 1 ? all : Promise.race([all, grace]));
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
    }
    return [...answered].sort((a, b) => a.slot.index - b.slot.index);
  }

  /** The answered records that are an acquisition of ours still valid at `t0`. */
  #mine(answered: Answered[], t0: number): Map<LeaseSlot, LeaseValue> {
    const mine = new Map<LeaseSlot, LeaseValue>();
    for (const { slot, e } of answered) {
      const m = slot.mine(e);
      if (m && t0 < m.expiresMs - this.safetyMs) mine.set(slot, m);
    }
    return mine;
  }

  /**
   * How long the answered records hold the lease from us at `t0` (undefined: free to take), and the highest term
   * and revision among them. `quiet`: a look ahead of the attempt's own (no log).
   */
  #heldFor(answered: Answered[], mine: Map<LeaseSlot, LeaseValue>, t0: number, quiet: boolean): { wait?: number; term: number } {
    let wait: number | undefined;
    let term = 0;
    for (const { slot, e } of answered) {
      const dec = slot.decode(e);
      term = Math.max(term, e?.revision ?? 0);
      if (dec === 'corrupt') {
        // not free: wait until this very record has stood unchanged for a TTL (its writer may believe it leads)
        if (slot.corrupt?.revision !== e!.revision) slot.corrupt = { revision: e!.revision, seenMs: t0 };
        const left = slot.corrupt.seenMs + this.ttlMs - t0;
        if (left >= 0) wait = Math.min(wait ?? Infinity, this.renewMs, left + 1);
        continue;
      }
      term = Math.max(term, dec?.term ?? 0);
      // a write of ours not part of a majority (another bucket did not take it): free for us
      if (!dec || mine.has(slot) || !dec.holder || dec.expiresMs < t0) continue;
      if (dec.holder === this.holder && dec.proc && this.#proc && processGone(dec.proc, this.#proc)) {
        // a previous process under our id (a restart of this actor): it is gone, its lease is free now
        if (!quiet) this.#log?.info({ key: this.key, bucket: slot.bucket, term: dec.term, proc: dec.proc }, 'lease of our previous process, gone: taken at once');
        continue;
      }
      // held by someone (possibly a previous process of ours): retry just after it would lapse
      wait = Math.min(wait ?? Infinity, this.renewMs, dec.expiresMs - t0 + 1);
    }
    return wait === undefined ? { term } : { wait, term };
  }

  /** The latest expiry of a live record of another holder on the other layout (lease-other-layout.ts), else undefined. */
  async #otherLayoutHeld(): Promise<number | undefined> {
    if (!this.#others.length) return undefined;
    const records = await Promise.all(this.#others.map((b) => readOtherLayout(this.#bus, b, this.key, this.opTimeoutMs).catch((err: unknown) => {
      this.#log?.debug({ key: this.key, bucket: b, err: (err as Error).message }, 'lease record of the other layout unanswered');
      return undefined;
    })));
    const now = this.#clock.now();
    let until: number | undefined;
    for (const r of records) {
      const v = r?.value;
      if (!r || !v || !v.holder || v.expiresMs < now) continue;
      if (v.holder === this.holder && v.proc && this.#proc && processGone(v.proc, this.#proc)) continue;
      if (!this.#mismatchLogged.has(r.bucket)) {
        this.#mismatchLogged.add(r.bucket);
        this.#log?.error({ key: this.key, bucket: r.bucket, holder: v.holder, term: v.term, buckets: this.buckets }, `lease ${this.key}: a live holder on the other layout (${r.bucket}): every manager must use the same nats.jetstreamReplicas; waiting for it to lapse`);
      }
      until = Math.max(until ?? 0, v.expiresMs);
    }
    return until;
  }

  /** A majority of answered records that are one acquisition of ours (`mine`, still valid): elected on them. */
  #adoptable(answered: Answered[], mine: Map<LeaseSlot, LeaseValue>): number | undefined {
    const groups = new Map<string, Answered[]>();
    for (const a of answered) {
      const m = mine.get(a.slot);
      if (!m) continue;
      const id = `${m.term}/${m.acquiredMs}`;
      (groups.get(id) ?? groups.set(id, []).get(id)!).push(a);
    }
    for (const g of groups.values()) {
      if (g.length < this.quorum) continue;
      const m = mine.get(g[0]!.slot)!;
      this.#log?.info({ key: this.key, term: m.term, revisions: g.map((a) => a.e!.revision) }, 'lease acquire applied unanswered: adopted');
      return this.#elected(m, new Map(g.map((a) => [a.slot.index, { revision: a.e!.revision, expiresMs: mine.get(a.slot)!.expiresMs }])));
    }
    return undefined;
  }

  /**
   * We hold the lease written as `v` on the buckets `slots`. Returns ms until the first renewal: renewMs after `v` was
   * made (not after the election: on a loaded host an acquisition's reads and writes take most of the TTL).
   */
  #elected(v: LeaseValue, slots: Map<number, { revision: number; expiresMs: number }>): number {
    if (!this.#running) return this.renewMs;
    const held: Held = { term: v.term, acquiredMs: v.acquiredMs, slots };
    this.#held = held;
    for (const s of this.#slots) s.unanswered = [];
    this.#armStepDown();
    this.#log?.info({ key: this.key, term: v.term, buckets: slots.size }, 'lease elected');
    this.emit('elected', { holder: this.holder, term: v.term, expiresMs: this.#until(held) });
    return Math.max(1, v.expiresMs - this.ttlMs + this.renewMs - this.#clock.now());
  }

  /** Release (holder '') on `slots`, each a compare-and-set on our write there; one that fails lapses at its expiry. */
  async #release(held: Pick<Held, 'term' | 'acquiredMs'>, slots: Map<number, { revision: number }>): Promise<void> {
    const v: LeaseValue = { v: 1, holder: '', acquiredMs: held.acquiredMs, expiresMs: 0, term: held.term };
    await Promise.all([...slots].map(async ([i, { revision }]) => {
      try {
        await this.#slots[i]!.cas(v, revision);
      } catch (err) {
        this.#log?.debug({ key: this.key, bucket: this.buckets[i], err: (err as Error).message }, 'lease release failed (it will expire)');
      }
    }));
  }

  #procField(): { proc?: string } {
    return this.#proc ? { proc: this.#proc } : {};
  }

  /** Step down at our local expiry even if no tick runs (server unreachable, slow requests). */
  #armStepDown(): void {
    if (this.#stepDownTimer !== undefined) this.#clock.clearTimeout(this.#stepDownTimer);
    const held = this.#held!;
    this.#stepDownTimer = this.#clock.setTimeout(() => {
      if (this.#held === held && !this.isLeader()) this.#stepDown('expired');
    }, this.#until(held) - this.safetyMs - this.#clock.now());
  }
}
