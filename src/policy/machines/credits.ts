/**
 * Admission credits (docs/DATAPATH.md "Admission credits"): an instance lends a gateway a bounded number of
 * immediate starts, so that a request the gateway routes to it starts without the admission round trip.
 * The instance stays the owner of admission: it sizes each loan from its free engine slots (only while its
 * queue is empty, it is ready and no emergency step holds), keeps the slots of the credits it lent out of its
 * own pump and backpressure (a lent credit is a reserved seat), lets an unspent loan lapse after its time to
 * live, and revokes every loan at once (a new credit epoch, published in its status) when it leaves `ready`,
 * takes an emergency step, or its engine crashes. The gateway spends a credit with one message, the leg's
 * `credited` report (the request itself, no reply waited for), and streams from the engine at once with the
 * grant it keeps from the loan; past its credits it asks the instance for admission, and that reply lends again.
 *
 * Loans are cumulative per (epoch, gateway): the instance says "your credits total T in epoch e, S of them
 * spent as I count" and the gateway counts what it spent in e, taking the larger of its count and S, so a loan
 * renewed while spent credits are still on their way is never counted twice, and a gateway that holds no line
 * (it lapsed, the instance went quiet, the gateway restarted) starts from the instance's count: whatever the
 * order loans arrive in, one never lets the gateway spend more than the T - S it was lent. A credit spent after
 * a revocation or a lapse the gateway had not heard of yet (at most the credits in flight during one status, or
 * a loan's T - S for a loan delivered after a later one's line lapsed) is still started: the engine has the
 * request; the instance counts it as an overdraft.
 *
 * A loan's size follows the gateway's pace (docs/DATAPATH.md "Admission credits"): the gateway keeps the rate it spends
 * an instance's credits at and how long that instance's top-ups take to come back, asks for the next one while the
 * credits left would last `CREDIT_RENEW_TRIPS` such round trips, and names what it wants (`want`: the credits it would
 * spend in `CREDIT_LOAN_TRIPS` of them). The instance lends at least `perGateway`, up to that want, and never more than
 * the unspent credits plus half of its free seats: a fast gateway is not starved between top-ups, and the seats it
 * reserves are at most what it spends in a few round trips.
 *
 * Both sides are here, pure: the instance machine (instance.ts) holds a `CreditLedger`, the gateway's router
 * machine (router.ts) its `CreditLines`. No I/O, no clock: `now` comes in.
 */

/** What an instance lends one gateway, as it tells it (Admission.credit, LegReply.credit). */
export interface CreditLoan {
  /** the instance's credit epoch: a status with a later one revokes every loan of an earlier one. */
  epoch: number;
  /** credits lent to this gateway in this epoch, cumulative (spent ones included). */
  total: number;
  /** of `total`, those the instance counted spent when it lent (a gateway without a line starts from it); absent: 0. */
  spent?: number;
  /** how long after the gateway receives it the loan may be spent, ms. */
  ttlMs: number;
  /** the instance reads a credited report that carries the leg's first token and end as all three; absent: each alone. */
  joins?: true;
  /** the instance reads the leg reports held for it as one LegReportBatch (protocols/leg-batch.ts); absent: each alone. */
  batches?: true;
  /** the instance takes a credited leg's seat back into this gateway's loan when its end report says the gateway kept it (creditRecycle). */
  recycles?: true;
}

export interface CreditConfig {
  /** most credits one gateway holds unspent at an instance; 0 lends none. */
  perGateway: number;
  /** a loan's time to live at the gateway, ms; the instance keeps its seats reserved `CREDIT_SLACK_MS` longer. */
  ttlMs: number;
}

/** How long past a loan's time to live the instance keeps its seats (a credit spent at the last moment is on its way), ms. */
export const CREDIT_SLACK_MS = 1000;
/** Gateways an instance lends to at once; a loan to one more revokes them all (a new epoch). */
export const MAX_CREDIT_GATEWAYS = 64;

interface GatewayLoan { total: number; spent: number; untilMs: number; /** the gateway's last top-up's want (its pace). */ want?: number }

/** The instance's side: its credit epoch and each gateway's loan in it. Treated as immutable (copied on write). */
export interface CreditLedger {
  epoch: number;
  loans: ReadonlyMap<string, GatewayLoan>;
  /** credited starts that came after their loan was revoked, lapsed or spent (started anyway), since the instance started. */
  overdrafts: number;
}

export function initialCreditLedger(): CreditLedger {
  return { epoch: 0, loans: new Map(), overdrafts: 0 };
}

const unspent = (l: GatewayLoan, now: number) => (now <= l.untilMs ? Math.max(0, l.total - l.spent) : 0);

/** Seats reserved for credits lent and not spent (lapsed loans reserve nothing). */
export function creditsOutstanding(ledger: CreditLedger, now: number): number {
  let n = 0;
  for (const l of ledger.loans.values()) n += unspent(l, now);
  return n;
}

/**
 * Lends `gateway` credits: its unspent ones plus half the seats `free` leaves (free = engine slots less the
 * requests running and queued and the credits outstanding), at most the larger of `cfg.perGateway` and what the
 * gateway wants (`want`, its top-up's; else its last one's, kept with its loan) unspent. `free` is the caller's: it
 * lends only while its queue is empty and it is ready. Returns the new ledger and the loan to tell.
 */
export function lendCredits(ledger: CreditLedger, gateway: string, free: number, now: number, cfg: CreditConfig, want?: number): { ledger: CreditLedger; loan: CreditLoan } {
  let base = ledger;
  if (!ledger.loans.has(gateway) && ledger.loans.size >= MAX_CREDIT_GATEWAYS) base = revokeCredits(ledger);
  const l = base.loans.get(gateway) ?? { total: 0, spent: 0, untilMs: 0 };
  const own = unspent(l, now);
  const wants = Math.min(MAX_CREDIT_WANT, Math.max(0, want ?? l.want ?? 0));
  const size = Math.max(own, Math.min(Math.max(cfg.perGateway, wants), own + Math.floor(Math.max(0, free) / 2)));
  const next: GatewayLoan = { total: l.spent + size, spent: l.spent, untilMs: now + cfg.ttlMs + CREDIT_SLACK_MS, ...(wants > 0 ? { want: wants } : {}) };
  const loans = new Map(base.loans);
  loans.set(gateway, next);
  return { ledger: { ...base, loans }, loan: { epoch: base.epoch, total: next.total, spent: next.spent, ttlMs: cfg.ttlMs, joins: true, batches: true, recycles: true } };
}

/** What lending reads of the instance machine's state (instance-types.ts InstanceMachineState). */
export interface LendingView {
  credits: CreditLedger;
  lifecycle: string;
  queue: readonly unknown[];
  running: ReadonlyMap<string, unknown>;
  moving?: unknown;
  emergency: { level: number };
  emergencyStepName?: string;
}

/**
 * The loan an instance gives `gateway` now: from its free engine slots (`maxInEngine` less the running
 * requests and the credits outstanding) only while it is ready, holds no queue, moves nothing and no
 * emergency step holds; else a loan of the unspent credits alone. Undefined: credits are off (`cfg`).
 */
export function lendFor(s: LendingView, gateway: string, now: number, maxInEngine: number, cfg: CreditConfig | undefined, want?: number): { ledger: CreditLedger; loan: CreditLoan } | undefined {
  if (!cfg || cfg.perGateway <= 0) return undefined;
  const calm = s.lifecycle === 'ready' && s.queue.length === 0 && !s.moving && s.emergency.level === 0 && s.emergencyStepName === undefined;
  return lendCredits(s.credits, gateway, calm ? maxInEngine - s.running.size - creditsOutstanding(s.credits, now) : 0, now, cfg, want);
}

/** A credited start: spends one of `gateway`'s credits of `epoch`; `overdraft` when none was there to spend (revoked, lapsed, spent). */
export function spendCredit(ledger: CreditLedger, gateway: string, epoch: number, now: number): { ledger: CreditLedger; overdraft: boolean } {
  const l = epoch === ledger.epoch ? ledger.loans.get(gateway) : undefined;
  if (!l || unspent(l, now) <= 0) return { ledger: { ...ledger, overdrafts: ledger.overdrafts + 1 }, overdraft: true };
  const loans = new Map(ledger.loans);
  loans.set(gateway, { ...l, spent: l.spent + 1 });
  return { ledger: { ...ledger, loans }, overdraft: false };
}

/**
 * The end of a leg `gateway` started on a credit of `epoch`, whose report says the gateway kept its seat (creditRecycle):
 * that gateway's loan one credit larger, so the seat the leg held stays reserved for it (not freed for the queue or other
 * loans). An end of a revoked epoch or a lapsed loan frees its seat as any end does (a credit the gateway spends on it
 * is an overdraft, counted).
 */
export function recycleCredit(ledger: CreditLedger, gateway: string, epoch: number, now: number): CreditLedger {
  const l = epoch === ledger.epoch ? ledger.loans.get(gateway) : undefined;
  if (!l || now > l.untilMs) return ledger;
  const loans = new Map(ledger.loans);
  loans.set(gateway, { ...l, total: l.total + 1 });
  return { ...ledger, loans };
}

/** Every loan void: a new epoch (the instance publishes it in its status). Unchanged when nothing is lent. */
export function revokeCredits(ledger: CreditLedger): CreditLedger {
  if (ledger.loans.size === 0) return ledger;
  return { epoch: ledger.epoch + 1, loans: new Map(), overdrafts: ledger.overdrafts };
}

// ------------------------------------------------------------------ the gateway's side

/** What the gateway needs to start a request on an instance without asking: where its engine is, and for whom. */
export interface CreditGrant {
  url: string;
  apiKey: string;
  reportWithinMs?: number;
}

/** One instance's loan to this gateway. */
export interface CreditLine {
  epoch: number;
  total: number;
  spent: number;
  /** unspent credits when the loan last came: a top-up is asked once half of them are spent. */
  lent: number;
  expiresMs: number;
  grant: CreditGrant;
  pool: string;
  /** the instance process that lent it (its InstanceStatus.startedMs). */
  startedMs?: number;
  /** a top-up was asked and not answered yet. */
  topUpAsked: boolean;
  /** the lender reads a credited report joined with the leg's first token and end (CreditLoan.joins). */
  joins?: boolean;
  /** the lender reads a LegReportBatch (CreditLoan.batches). */
  batches?: boolean;
  /** the lender takes a kept seat back into the loan (CreditLoan.recycles). */
  recycles?: boolean;
  /** the gateway's pace at this instance (creditPace), kept across loans. */
  pace: CreditPace;
}

/** How fast a gateway spends one instance's credits, and how long that instance's loans take to come back. */
export interface CreditPace {
  /** mean time between two spends, ms (EWMA); absent: fewer than two spends yet. */
  gapMs?: number;
  /** the last spend's time. */
  lastSpendMs?: number;
  /** mean round trip of a top-up or an admission that lent, ms (EWMA); absent: none timed yet. */
  tripMs?: number;
  /** when the top-up in flight was asked. */
  askedMs?: number;
}

/** A top-up is asked while the credits left would last this many loan round trips at the gateway's pace. */
export const CREDIT_RENEW_TRIPS = 2;
/** A top-up wants the credits the gateway spends in this many loan round trips. */
export const CREDIT_LOAN_TRIPS = 4;
/** The most credits a gateway asks one instance for (the instance's free seats bound it too). */
export const MAX_CREDIT_WANT = 1024;
/** EWMA weights: of a new gap between spends, of a new loan round trip. */
const GAP_WEIGHT = 1 / 16;
const TRIP_WEIGHT = 1 / 4;
/** Gaps longer than this are idleness, not pace: they reset the gap's mean to it. */
const IDLE_GAP_MS = 1000;

/** The credits the gateway spends in `trips` loan round trips at its pace; 0 while either is unknown. */
export function creditsForTrips(p: CreditPace, trips: number): number {
  if (p.gapMs === undefined || p.tripMs === undefined) return 0;
  return Math.min(MAX_CREDIT_WANT, Math.ceil((trips * p.tripMs) / Math.max(p.gapMs, 0.01)));
}

const ewma = (mean: number | undefined, x: number, w: number) => (mean === undefined ? x : mean + w * (x - mean));

export type CreditLines = Map<string, CreditLine>;

/** What came with a loan: the grant to stream with, the pool, the lender's process, and the round trip the caller timed (an admission's). */
export interface LoanContext { grant: CreditGrant; pool: string; startedMs?: number; tripMs?: number }

/** A credit spent (creditSpend): the grant, the epoch and lender to name in the credited report, and whether it asks for a top-up of `want`. */
export interface CreditSpent { grant: CreditGrant; epoch: number; startedMs?: number; topUp: boolean; want?: number; joins?: boolean; batches?: boolean }

/**
 * A loan arrived (an admission or a top-up reply of `instance`): kept with the grant it came with. Spent: the
 * larger of the line's own count (same process and epoch) and the loan's, so the loan's unspent credits are at
 * most `total - spent` as the instance lent them, even when the gateway's line lapsed or was dropped meanwhile.
 */
export function creditReceived(lines: CreditLines, instance: string, loan: CreditLoan, ctx: LoanContext, now: number): void {
  const prev = lines.get(instance);
  // the round trip: the top-up in flight's, else the admission's that lent (the caller timed it)
  const pace: CreditPace = prev ? prev.pace : {};
  const trip = prev?.pace.askedMs !== undefined ? now - prev.pace.askedMs : ctx.tripMs;
  if (trip !== undefined && trip >= 0) pace.tripMs = ewma(pace.tripMs, trip, TRIP_WEIGHT);
  delete pace.askedMs;
  const sameProcess = prev !== undefined && prev.startedMs === ctx.startedMs;
  if (sameProcess && loan.epoch < prev.epoch) return; // a loan of a revoked epoch, overtaken by a newer one
  const same = sameProcess && prev.epoch === loan.epoch;
  // a loan smaller than the line: an older one overtaken by a newer one; or, on a line that keeps seats (creditRecycle),
  // one lent before the instance read the seats kept since: the line keeps its total, and the loan answers its top-up
  if (same && loan.total < prev.total && !prev.recycles) return;
  const total = same ? Math.max(prev.total, loan.total) : loan.total;
  const spent = Math.max(same ? prev.spent : 0, loan.spent ?? 0);
  lines.set(instance, {
    epoch: loan.epoch, total, spent, lent: Math.max(0, total - spent), expiresMs: now + loan.ttlMs,
    grant: ctx.grant, pool: ctx.pool, ...(ctx.startedMs !== undefined ? { startedMs: ctx.startedMs } : {}), topUpAsked: false,
    ...(loan.joins ? { joins: true } : {}), ...(loan.batches ? { batches: true } : {}), ...(loan.recycles ? { recycles: true } : {}), pace,
  });
}

/**
 * A leg started on a credit of `epoch` from `instance` (the process `startedMs`) ended well: the gateway keeps its seat,
 * its line one credit larger, while the line holds fewer unspent credits than its pace spends in CREDIT_RENEW_TRIPS loan
 * round trips (at least one), for a lender that takes seats back (CreditLoan.recycles), in the line's epoch and process,
 * before it expires. True: the leg's end report says so (LegReport.recycled), and the instance adds the credit too
 * (recycleCredit). A busy gateway then starts its next request on the seat its last one left, without waiting for a top-up's
 * round trip; one that holds enough credits gives the seat back to the instance.
 */
export function creditRecycle(lines: CreditLines, instance: string, epoch: number, startedMs: number | undefined, now: number): boolean {
  const l = lines.get(instance);
  if (!l?.recycles || l.epoch !== epoch || now > l.expiresMs || l.startedMs !== startedMs) return false;
  if (l.total - l.spent >= Math.max(1, creditsForTrips(l.pace, CREDIT_RENEW_TRIPS))) return false;
  l.total++;
  return true;
}

/** A top-up asked of `instance` got no loan back (no reply, an error): another may be asked. */
export function creditTopUpFailed(lines: CreditLines, instance: string): void {
  const l = lines.get(instance);
  if (l) {
    l.topUpAsked = false;
    delete l.pace.askedMs;
  }
}

/**
 * Spends a credit of `instance` when one is there (not expired): the grant to stream with, the epoch to name in
 * the credited report, and whether that report should ask for a top-up (none asked, and half of the last loan spent
 * or the credits left would last under `CREDIT_RENEW_TRIPS` round trips at the gateway's pace) with the credits it
 * wants (`want`, CREDIT_LOAN_TRIPS' worth; absent while the pace is unknown).
 */
export function creditSpend(lines: CreditLines, instance: string, now: number): CreditSpent | undefined {
  const l = lines.get(instance);
  if (!l) return undefined;
  if (now > l.expiresMs) {
    lines.delete(instance);
    return undefined;
  }
  const p = l.pace;
  // the pace counts every request routed here while a line is held, spent or not (a miss is demand too)
  if (p.lastSpendMs !== undefined) {
    const gap = now - p.lastSpendMs;
    p.gapMs = gap > IDLE_GAP_MS ? gap : ewma(p.gapMs, gap, GAP_WEIGHT);
  }
  p.lastSpendMs = now;
  if (l.total - l.spent <= 0) return undefined;
  l.spent++;
  const left = l.total - l.spent;
  const topUp = !l.topUpAsked && (left * 2 <= l.lent || left < creditsForTrips(p, CREDIT_RENEW_TRIPS));
  let want = 0;
  if (topUp) {
    l.topUpAsked = true;
    p.askedMs = now;
    want = creditsForTrips(p, CREDIT_LOAN_TRIPS);
  }
  return { grant: l.grant, epoch: l.epoch, ...(l.startedMs !== undefined ? { startedMs: l.startedMs } : {}), topUp, ...(want > 0 ? { want } : {}), ...(l.joins ? { joins: true } : {}), ...(l.batches ? { batches: true } : {}) };
}

/** An instance's status: a later credit epoch, or another process under the id, voids its loan. */
export function creditStatus(lines: CreditLines, st: { id: string; startedMs: number; creditEpoch?: number; state: string }): void {
  const l = lines.get(st.id);
  if (!l) return;
  if ((st.creditEpoch ?? 0) > l.epoch || (l.startedMs !== undefined && st.startedMs !== l.startedMs) || st.state !== 'ready') lines.delete(st.id);
}
