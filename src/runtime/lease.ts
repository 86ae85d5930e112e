/**
 * Leader leases for singleton roles (cluster planner, one pool manager per pool) on JetStream KV.
 *
 * The lease is one key in bucket `jetstream.leasesBucket` whose value (protocols' LeaseValue) names the
 * holder and its expiry. nats-server 2.9 has no per-key TTL, so expiry lives in the value:
 * - acquire: only when the key is absent, released (holder ''), or expired (expiresMs < now), with
 *   compare-and-set on the revision read: of two contenders exactly one wins. The new term (the fencing
 *   token) is max(previous term, revision read) + 1: KV revisions only rise, so terms only rise too, even
 *   when a record was corrupted, deleted or rewritten with a lower term.
 * - every write (acquire, renew, release) is that compare-and-set: a JetStream publish on the key's subject
 *   expecting the key's last revision R, with the message id `<key>@R`. The id is what makes it exact on a
 *   replicated (R3) bucket: nats-server before 2.9.21 checks an expected per-subject revision only before
 *   the write is proposed to the stream's raft group, not when it is applied, so two writes expecting the same
 *   R that arrive together both pass (measured on 2.9.10, 3 servers on loopback: 198 of 200 rounds of 6
 *   concurrent updates on one revision had more than one succeed, and two planners held one term after a
 *   host kill). The duplicate check runs when a write is applied, in log order on every replica: of the
 *   writes expecting R, the first applied wins and the others come back as duplicates (0 of 200 rounds had
 *   two winners), which count as a failed compare-and-set.
 * - a record held under our own holder id by another process of this machine that is gone (the record names its
 *   process: boot id, pid namespace, pid) is free at once: a supervisor restarted the killed leader, and the
 *   restarted process need not wait out the TTL of the dead one. A process that is alive (the same id given to two
 *   live processes), one of another machine or pid namespace, or a record without a process: wait for the expiry.
 * - a record that does not decode is NOT free: it counts as held by an unknown holder until it has stayed
 *   unchanged (same revision) for a whole TTL, exactly like a holder that stopped renewing.
 * - renew: every `renewMs` with CAS on the revision of our last write; a CAS failure means someone else
 *   took it: step down, unless the record is a write of ours whose answer was lost (below).
 * - a write whose answer did not come within `opTimeoutMs` may still have been applied (a loaded server, a slow
 *   replicated commit): its value is remembered, and a record equal to one of those values (holder, term,
 *   acquiredMs and expiresMs: each write's expiry is its own) is ours, adopted as if the answer had come. Without
 *   it, a contender whose acquire is applied unanswered would wait out its own record's TTL, and a leader whose
 *   renewal is applied unanswered would find its next compare-and-set failing and step down ('taken').
 * - step down locally at our own expiry even when the server cannot be reached: `isLeader()` compares the
 *   clock against the expiry we wrote minus a safety margin, so a partitioned or paused leader stops
 *   claiming leadership before any standby may take over.
 * Assumption: contenders' clocks agree to well within `safetyMs` (exact on one machine; NTP across nodes,
 * where ttlMs should then be several seconds).
 * Events: 'elected' ({holder, term, expiresMs}), 'lost' ({holder, term, reason}).
 */
import { EventEmitter } from 'node:events';
import { readFileSync, readlinkSync } from 'node:fs';
import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { LeaseValue, jetstream as jsNames, kvKeySubject } from '../../protocols/index.ts';
import type { Bus } from './bus.ts';
import { systemClock, within, type Clock } from './clock.ts';

/** the next attempt after a failed one (unanswered, unreachable), ms; at most renewMs. */
const RETRY_AFTER_FAILURE_MS = 200;
/** writes without an answer remembered (one per failed attempt, cleared by an answer): a few TTLs of retries. */
const MAX_UNANSWERED = 32;

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
  /** bucket name (default jetstream.leasesBucket). */
  bucket?: string;
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

export class LeaderLease extends EventEmitter {
  readonly key: string;
  readonly holder: string;
  readonly ttlMs: number;
  readonly renewMs: number;
  readonly safetyMs: number;
  readonly opTimeoutMs: number;
  #bus: Bus;
  #clock: Clock;
  #log?: Logger;
  #bucket: string;
  #kv?: KV;
  #running = false;
  #timer: unknown;
  #stepDownTimer: unknown;
  #busy = false;
  /** our lease while we hold it. */
  #held?: { revision: number; expiresMs: number; term: number; acquiredMs: number };
  /** an undecodable record: its revision and when we first saw it. */
  #corrupt?: { revision: number; seenMs: number };
  /** this process as the records we write name it (Linux), see processName(). */
  readonly #proc = processName();
  /** our writes whose answer did not come (newest last, bounded): any of them may have been applied. */
  #unanswered: LeaseValue[] = [];

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
    this.#bucket = opts.bucket ?? jsNames.leasesBucket;
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
      this.#stepDown('released');
      try {
        const v: LeaseValue = { v: 1, holder: '', acquiredMs: held.acquiredMs, expiresMs: 0, term: held.term };
        await this.#cas(v, held.revision);
      } catch (err) {
        this.#log?.debug({ key: this.key, err: (err as Error).message }, 'lease release failed (it will expire)');
      }
    }
  }

  /** True while we hold an unexpired lease (checked against the clock, not just a flag). */
  isLeader(): boolean {
    return this.#held !== undefined && this.#clock.now() < this.#held.expiresMs - this.safetyMs;
  }

  /** Our term while leader (fencing token), else undefined. */
  term(): number | undefined {
    return this.isLeader() ? this.#held!.term : undefined;
  }

  /** Until when we may act as leader (ms since epoch), or 0. */
  leaderUntilMs(): number {
    return this.isLeader() ? this.#held!.expiresMs - this.safetyMs : 0;
  }

  /** The current lease as stored (null when absent, released or expired). */
  async leader(): Promise<LeaseInfo | null> {
    const kv = this.#kv ?? (await this.#bus.kv(this.#bucket, { history: 1 }));
    const e = await kv.get(this.key);
    const v = this.#decode(e);
    if (v === 'corrupt') return { holder: '(undecodable record)', expiresMs: Number.POSITIVE_INFINITY, term: e!.revision };
    if (!v || !v.holder || v.expiresMs < this.#clock.now()) return null;
    return { holder: v.holder, expiresMs: v.expiresMs, term: v.term };
  }

  /** null: absent, deleted or empty (free); 'corrupt': a value that does not decode (not free). */
  #decode(e: KvEntry | null): LeaseValue | null | 'corrupt' {
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return null;
    try {
      return LeaseValue.decode(e.value, `$KV.${this.#bucket}.${this.key}`);
    } catch (err) {
      this.#log?.warn({ key: this.key, revision: e.revision, err: (err as Error).message }, 'undecodable lease record: held until it stays unchanged for a TTL');
      return 'corrupt';
    }
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
      // the bucket, opened within a TTL (its JetStream calls take the context's 5-s default otherwise)
      this.#kv ??= await this.#within(this.#bus.kv(this.#bucket, { history: 1 }), this.ttlMs, `KV ${this.#bucket}`);
      if (this.#held) await this.#renew();
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

  async #renew(): Promise<void> {
    const held = this.#held!;
    if (!this.isLeader()) {
      this.#stepDown('expired');
      return;
    }
    const t0 = this.#clock.now();
    const v: LeaseValue = { v: 1, holder: this.holder, acquiredMs: held.acquiredMs, expiresMs: t0 + this.ttlMs, term: held.term, ...this.#procField() };
    try {
      const rev = await this.#cas(v, held.revision);
      if (this.#held !== held) return; // stepped down meanwhile
      held.revision = rev;
      held.expiresMs = v.expiresMs;
      this.#armStepDown();
    } catch (err) {
      if (!isCasFailure(err)) throw err; // unreachable: keep trying until our expiry
      // the revision moved on: by someone else, or by a renewal of ours applied while its answer was lost
      const e = await this.#read();
      if (this.#held !== held) return;
      const mine = this.#mine(e);
      if (!mine) {
        this.#stepDown('taken');
        return;
      }
      this.#log?.info({ key: this.key, term: held.term, revision: e!.revision }, 'lease renewal applied unanswered: adopted');
      held.revision = e!.revision;
      held.expiresMs = mine.expiresMs; // what the record says (a later write than the one we had an answer for)
      this.#armStepDown();
    }
  }

  /** `e` is a write of ours whose answer did not come (see the module comment): its value, else undefined. */
  #mine(e: KvEntry | null): LeaseValue | undefined {
    if (!this.#unanswered.length) return undefined;
    const cur = this.#decode(e);
    if (!cur || cur === 'corrupt' || cur.holder !== this.holder) return undefined;
    return this.#unanswered.find((u) => u.term === cur.term && u.acquiredMs === cur.acquiredMs && u.expiresMs === cur.expiresMs);
  }

  /** Returns ms until the next attempt. */
  async #tryAcquire(): Promise<number> {
    const e = await this.#read();
    const dec = this.#decode(e);
    const t0 = this.#clock.now();
    if (dec === 'corrupt') {
      // not free: wait until this very record has stood unchanged for a TTL (its writer may believe it leads)
      if (this.#corrupt?.revision !== e!.revision) this.#corrupt = { revision: e!.revision, seenMs: t0 };
      const left = this.#corrupt.seenMs + this.ttlMs - t0;
      if (left >= 0) return Math.min(this.renewMs, left + 1);
    }
    const cur = dec === 'corrupt' ? null : dec;
    const mine = this.#mine(e);
    if (mine && t0 < mine.expiresMs - this.safetyMs) {
      // our acquire was applied while its answer was lost: we hold it since that write
      this.#log?.info({ key: this.key, term: mine.term, revision: e!.revision }, 'lease acquire applied unanswered: adopted');
      return this.#elected(e!.revision, mine);
    }
    if (cur && cur.holder && cur.expiresMs >= t0) {
      if (cur.holder === this.holder && cur.proc && this.#proc && processGone(cur.proc, this.#proc)) {
        // a previous process under our id (a restart of this actor): it is gone, its lease is free now
        this.#log?.info({ key: this.key, term: cur.term, proc: cur.proc }, 'lease of our previous process, gone: taken at once');
      } else {
        // held by someone (possibly a previous process of ours): retry just after it would lapse
        return Math.min(this.renewMs, cur.expiresMs - t0 + 1);
      }
    }
    // terms only rise: above the record's term and above its revision (revisions only rise)
    const term = Math.max(cur?.term ?? 0, e?.revision ?? 0) + 1;
    const v: LeaseValue = { v: 1, holder: this.holder, acquiredMs: t0, expiresMs: t0 + this.ttlMs, term, ...this.#procField() };
    let rev: number;
    try {
      // expecting revision 0: the key must still be absent
      rev = await this.#cas(v, e?.revision ?? 0);
    } catch (err) {
      if (isCasFailure(err)) return this.renewMs; // someone else won
      throw err;
    }
    return this.#elected(rev, v);
  }

  /** We hold the lease written as `v` at revision `rev`. Returns ms until the next attempt (the first renewal). */
  #elected(rev: number, v: LeaseValue): number {
    if (!this.#running) return this.renewMs;
    this.#held = { revision: rev, expiresMs: v.expiresMs, term: v.term, acquiredMs: v.acquiredMs };
    this.#unanswered = [];
    this.#armStepDown();
    this.#log?.info({ key: this.key, term: v.term }, 'lease elected');
    this.emit('elected', { holder: this.holder, term: v.term, expiresMs: v.expiresMs });
    return this.renewMs;
  }

  /** The lease record, within opTimeoutMs (KV reads take the JetStream context's 5-s default otherwise). */
  #read(): Promise<KvEntry | null> {
    return this.#within(this.#kv!.get(this.key), this.opTimeoutMs, `$KV.${this.#bucket}.${this.key}`);
  }

  #procField(): { proc?: string } {
    return this.#proc ? { proc: this.#proc } : {};
  }

  /** `p`, or a TimeoutError after `ms` (the operation itself is left to finish or fail on its own). */
  #within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    return within(p, ms, what, this.#clock);
  }

  /**
   * Writes `v` only if the key's last revision is still `expected` (0: the key is absent); resolves to the
   * new revision. Throws a CAS failure (isCasFailure) when another write came first, also when that write
   * expected the same revision and the server let both through its pre-check (the message id dedupes it).
   */
  async #cas(v: LeaseValue, expected: number): Promise<number> {
    let pa;
    try {
      pa = await this.#bus.jetstream().publish(kvKeySubject(this.#bucket, this.key), LeaseValue.encode(v), {
        msgID: `${this.key}@${expected}`,
        expect: { lastSubjectSequence: expected },
        timeout: this.opTimeoutMs,
      });
    } catch (err) {
      // no answer (or no verdict): the write may still be applied; a record equal to it is ours
      if (!isCasFailure(err) && v.holder) {
        this.#unanswered.push(v);
        if (this.#unanswered.length > MAX_UNANSWERED) this.#unanswered.shift();
      }
      throw err;
    }
    if (pa.duplicate) throw new LeaseCasLost(`wrong last sequence: revision ${expected} was already written over (seq ${pa.seq})`);
    this.#unanswered = [];
    return pa.seq;
  }

  /** Step down at our local expiry even if no tick runs (server unreachable, slow requests). */
  #armStepDown(): void {
    if (this.#stepDownTimer !== undefined) this.#clock.clearTimeout(this.#stepDownTimer);
    const held = this.#held!;
    this.#stepDownTimer = this.#clock.setTimeout(() => {
      if (this.#held === held && !this.isLeader()) this.#stepDown('expired');
    }, held.expiresMs - this.safetyMs - this.#clock.now());
  }
}

/** Another write of the lease key came first (see #cas). */
class LeaseCasLost extends Error {}

function isCasFailure(err: unknown): boolean {
  if (err instanceof LeaseCasLost) return true;
  const e = err as { message?: string; code?: number; api_error?: { err_code?: number } };
  const m = (e?.message ?? '').toLowerCase();
  // JetStream: 10071 wrong last sequence; 10164/"key exists" for create
  return m.includes('wrong last sequence') || m.includes('key exists') || e?.code === 10071 || e?.api_error?.err_code === 10071 || m.includes('10071');
}

/** This process as `<boot id>/<pid namespace>/<pid>` (Linux); undefined where /proc does not tell. */
function processName(): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const ns = readlinkSync('/proc/self/ns/pid');
    if (!boot || !ns || boot.includes('/') || ns.includes('/')) return undefined;
    return `${boot}/${ns}/${process.pid}`;
  } catch {
    return undefined;
  }
}

/**
 * True only when `proc` names another process of this boot and pid namespace (`self`, processName's) that does not
 * exist any more. A pid taken again by another process reads as alive: the lease then waits for its expiry.
 */
function processGone(proc: string, self: string): boolean {
  const [boot, ns, pid] = proc.split('/');
  const [myBoot, myNs, myPid] = self.split('/');
  if (boot !== myBoot || ns !== myNs || pid === myPid || !/^[1-9]\d*$/.test(pid ?? '')) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
