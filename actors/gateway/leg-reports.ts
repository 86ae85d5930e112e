/**
 * The gateway's leg reports to the instance that granted a direct leg (LegReport: started, first token, credited, end):
 * held for up to LEG_REPORT_HOLD_MS while reports come often, else to the end of the event-loop turn, and published
 * together, or asked as a request where a reply is wanted. A leg's
 * later report joins its report still held (joinHeld): a short leg's credited start, first token and end go out as one
 * message, which the instance reads as all three (actors/instance-manager/direct-legs.ts legReport). The reports held for
 * an instance whose loan says it reads them (CreditLoan.batches) go out as one LegReportBatch (protocols/leg-batch.ts).
 */
import type { Bus } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { subjects } from '../../protocols/subjects.ts';
import { senderTrusted } from '../../protocols/codec.ts';
import { LegReply, LegReport } from '../../protocols/messages.ts';
import { LegReportBatch } from '../../protocols/leg-batch.ts';
import type { EngineChunk } from '../../src/engine/engine.ts';
import type { CreditGrant } from '../../src/policy/machines/credits.ts';
import type { RequestRouter, RoutedAdmission } from './router.ts';
import type { LegTiming } from './legs.ts';
/**
 * How long a leg report without a reply is held at most, ms, while the last reports were published within it: the
 * reports of every leg that starts or ends within it go out in one socket write (a closed loop of short requests makes
 * ~2 reports per request).
 */
export const LEG_REPORT_HOLD_MS = 2;
/** Leg reports held at most: past it the held ones are published at once. */
export const LEG_REPORT_BATCH = 256;
/** the held reports' codec: built here from checked values, packed without the sender's check (the instance validates them). */
const HeldReport = senderTrusted(LegReport);
const HeldBatch = senderTrusted(LegReportBatch);
/**
 * a held report (`dropped`: an end asked as a request carries what it said; `batches`: a credited report on a loan of an
 * instance process that reads a LegReportBatch: the window's reports to that instance go out as one).
 */
interface Held { instance: string; rep: LegReport; dropped?: boolean; joinable?: boolean; batches?: boolean }
/**
 * each bus's held reports in their order, the one held of each leg (by `instance id`), and when held reports were last
 * published (systemClock.now()).
 */
const heldReports = new WeakMap<Bus, { q: Held[]; byLeg: Map<string, Held>; last: number }>();
/** the gateway process each bus reports for (reportAs). */
const reporters = new WeakMap<Bus, NonNullable<LegReport['gateway']>>();

/**
 * The gateway process whose leg reports go out on `bus` (its Heartbeat's id and startedMs): its reports that tell an
 * instance the leg is taken (started, first_token, credited) name it, so that the instance frees the leg's seat soon
 * after that process is gone (its heartbeats lapsed), not at the request's give-up time.
 */
export function reportAs(bus: Bus, gateway: NonNullable<LegReport['gateway']>): void {
  reporters.set(bus, gateway);
}

/**
 * `rep` with its gateway process named where it says the leg is taken (an end or a relay flow report needs none):
 * named in place, as its last member (the reports are this module's callers' own objects, sent once: no copy of each).
 */
function stamped(bus: Bus, rep: LegReport): LegReport {
  const gateway = rep.gateway || !(rep.phase === 'started' || rep.phase === 'first_token' || rep.phase === 'credited') ? undefined : reporters.get(bus);
  if (gateway) rep.gateway = gateway;
  return rep;
}

/**
 * A leg report (first token, started, an end without reply) to the instance that granted the leg; no reply.
 * While reports come often (the last ones were published within LEG_REPORT_HOLD_MS), held for LEG_REPORT_HOLD_MS from
 * the first one held, or until LEG_REPORT_BATCH are held, and then published together: the NATS client writes what it
 * is given in one tick with one socket write, so the reports of every leg that started or ended in that window cost one
 * write, not one each. After a quieter spell, the report and those of the same event-loop turn are published at the
 * end of that turn: a window would hold it alone and wake the idle loop for its timer. A leg's reports keep their
 * order, and one that finds the leg's earlier report still held joins it (joinHeld): one message, not two.
 */
export function legReport(bus: Bus, instance: string, rep: LegReport, joinable = false, batches = false): void {
  let h = heldReports.get(bus);
  if (!h) heldReports.set(bus, (h = { q: [], byLeg: new Map(), last: -Infinity }));
  const key = `${instance} ${rep.id}`;
  const prev = h.byLeg.get(key);
  if (prev && joinHeld(prev, rep)) return;
  const e: Held = { instance, rep };
  if (joinable) e.joinable = true;
  if (batches) e.batches = true;
  h.q.push(e);
  h.byLeg.set(key, e);
  // on the wall clock, as the socket's write is: a test's ManualClock does not hold the reports (nor the turn's end)
  if (h.q.length === 1) {
    // (these reports' own flush: not a later window's, when these went out earlier at the bound or before a request)
    const q = h.q;
    const flush = () => heldReports.get(bus)?.q === q && flushLegReports(bus);
    if (systemClock.now() - h.last < LEG_REPORT_HOLD_MS) systemClock.setTimeout(flush, LEG_REPORT_HOLD_MS);
    else setImmediate(flush);
  } else if (h.q.length >= LEG_REPORT_BATCH) flushLegReports(bus);
}

/** The fields of a leg's end report (LegReport 'end') that a held credited report takes on when the end joins it. */
const END_FIELDS = ['outcome', 'firstTokenMs', 'tbtSumMs', 'tbtMaxMs', 'tbtN', 'completionTokens', 'promptTokens', 'engineEnergyJ', 'recycled'] as const;

/**
 * `next`, a later report of the leg whose report `held` is not published yet, joins it; false: it cannot (it goes out
 * after it). A credited report takes on a first token's time and an end's fields (the instance reads a credited report
 * that carries them as the start, the first token and the end); a started or first-token report is replaced by the
 * leg's first token or end (each says the leg was taken, the end carries the first token's time).
 */
function joinHeld(held: Held, next: LegReport): boolean {
  const was = held.rep;
  // a relayed leg's credit (relay-flow.ts) goes out as it is
  if (held.dropped || was.phase === 'end' || was.phase === 'credit' || next.phase === 'credited' || next.phase === 'credit') return false;
  if (was.phase === 'credited') {
    // an instance that did not say it reads a joined credited report (CreditLoan.joins) gets each report alone
    if (!held.joinable || was.outcome !== undefined) return false;
    if (next.phase === 'first_token') was.firstTokenMs ??= next.firstTokenMs;
    else if (next.phase === 'end') for (const k of END_FIELDS) if (next[k] !== undefined) (was as Record<string, unknown>)[k] = next[k];
    return true;
  }
  if (next.phase === 'started') return true;
  if (was.phase === 'first_token' && next.phase === 'first_token') return true;
  held.rep = next;
  return true;
}

/** Publishes the held leg reports now (before a report that asks for a reply, so it cannot overtake them). */
export function flushLegReports(bus: Bus): void {
  const h = heldReports.get(bus);
  if (!h || h.q.length === 0) return;
  const q = h.q;
  heldReports.set(bus, { q: [], byLeg: new Map(), last: systemClock.now() });
  // the instances a held credited report says read a batch, and their reports (in their order)
  let batched: Map<string, LegReport[]> | undefined;
  for (const e of q) if (e.batches && !e.dropped) (batched ??= new Map()).set(e.instance, []);
  for (const { instance, rep, dropped } of q) {
    if (dropped) continue;
    const b = batched?.get(instance);
    if (b) {
      b.push(stamped(bus, rep));
      continue;
    }
    publishLeg(bus, instance, rep);
  }
  if (batched) for (const [instance, reports] of batched) publishLeg(bus, instance, reports.length === 1 ? reports[0]! : { v: 1, reports });
}

/** A held report, or a batch of them, on the instance's leg subject. */
function publishLeg(bus: Bus, instance: string, m: LegReport | LegReportBatch): void {
  try {
    if ('reports' in m) bus.publish(subjects.instanceLeg(instance), HeldBatch, m);
    else bus.publish(subjects.instanceLeg(instance), HeldReport, stamped(bus, m));
  } catch {
    // the connection is gone: the instance frees the slot at the request's deadline
  }
}

/**
 * A leg started on a credit, told to its instance (LegReport 'credited', with the request): held and published
 * with the window's other reports, or, when the credit asks for a top-up, a request (the held reports first, so
 * none is overtaken) whose reply's loan goes to the router (never awaited by the leg).
 */
export function creditedReport(
  bus: Bus, instance: string, id: string, c: NonNullable<RoutedAdmission['credited']>, grant: CreditGrant, startedMs: number | undefined, timeoutMs: number, router: RequestRouter | undefined,
): void {
  const rep: LegReport = { v: 1, id, phase: 'credited', request: c.req, credit: { gateway: c.gateway, epoch: c.epoch, ...(c.topUp ? { topUp: true } : {}), ...(c.want !== undefined ? { want: c.want } : {}) } };
  if (!c.topUp) return legReport(bus, instance, rep, c.joins === true, c.batches === true);
  flushLegReports(bus);
  const ctx = { grant, pool: c.req.pool ?? '', ...(startedMs !== undefined ? { startedMs } : {}) };
  const loan = (l: LegReply['credit']) => router?.creditLoan?.(instance, l, ctx);
  bus.request(subjects.instanceLeg(instance), LegReport, stamped(bus, rep), LegReply, { timeoutMs }).then((r) => loan(r.ok ? r.credit : undefined), () => loan(undefined));
}

/**
 * A direct leg's start told to its instance, called right after the engine request's write (in the same turn: nothing
 * that could cancel the leg comes between), so that no report and no top-up request precedes the engine request. On a
 * credit: the credited report (creditedReport). Otherwise the instance holds the seat only briefly for a grant nobody
 * takes: the first token's report says it is taken, and 'started' does when the first token is slow to come (after
 * the grant's reportWithinMs, unless `firstSeen`; at once for an instance that gives no delay). Returns that timer.
 */
export function legStarted(
  bus: Bus, clock: Clock, instance: string, id: string, credited: RoutedAdmission['credited'], grant: CreditGrant, startedMs: number | undefined,
  timeoutMs: number, router: RequestRouter | undefined, firstSeen: () => boolean,
): unknown {
  const within = grant.reportWithinMs;
  if (credited) creditedReport(bus, instance, id, credited, grant, startedMs, timeoutMs, router);
  else if (within === undefined) legReport(bus, instance, { v: 1, id, phase: 'started' });
  else return clock.setTimeout(() => firstSeen() || legReport(bus, instance, { v: 1, id, phase: 'started' }), within);
  return undefined;
}

/**
 * Whether a leg that ended well keeps its seat for this gateway's next request on `instance` (its end report's `recycled`):
 * a leg started on a credit (`credited`) whose line the router keeps it in (policy creditRecycle).
 */
export function keptSeat(router: RequestRouter | undefined, instance: string | undefined, credited: RoutedAdmission['credited'], startedMs: number | undefined): boolean {
  return instance !== undefined && credited !== undefined && (router?.recycleCredit?.(instance, credited.epoch, startedMs) ?? false);
}

/** What else an end report says: `resumed`, the end of a leg another gateway streams, from the gateway its client resumed
 * the stream on (LegReport.resumed); `recycled`, the gateway kept the credited leg's seat (LegReport.recycled). */
export interface EndFlags { resumed?: boolean; recycled?: boolean }

/**
 * The leg's end to its instance, which answers with the energy it attributes to the leg (undefined: not known).
 * `timeoutMs` 0: published, no reply asked for (the gateway knows the energy already); returns true.
 */
export function endReport(bus: Bus, timeoutMs: 0, instance: string, id: string, outcome: 'ok' | 'failed' | 'timed_out', t: LegTiming, usage: EngineChunk['usage'], flags?: EndFlags): true;
export function endReport(bus: Bus, timeoutMs: number, instance: string, id: string, outcome: 'ok' | 'failed' | 'timed_out', t: LegTiming, usage: EngineChunk['usage'], flags?: EndFlags): Promise<LegReply | undefined>;
export function endReport(bus: Bus, timeoutMs: number, instance: string, id: string, outcome: 'ok' | 'failed' | 'timed_out', t: LegTiming, usage: EngineChunk['usage'], flags: EndFlags = {}): Promise<LegReply | undefined> | true {
  const rep: LegReport = { v: 1, id, phase: 'end', outcome, completionTokens: usage?.completionTokens ?? t.tokens, tbtSumMs: t.tbtSum, tbtMaxMs: t.tbtMax, tbtN: t.tbtN };
  if (flags.resumed) rep.resumed = true;
  if (flags.recycled) rep.recycled = true;
  if (t.firstMs !== undefined) rep.firstTokenMs = t.firstMs;
  if (usage?.promptTokens !== undefined) rep.promptTokens = usage.promptTokens;
  if (usage?.energyJoules !== undefined) rep.engineEnergyJ = usage.energyJoules;
  if (timeoutMs === 0) {
    legReport(bus, instance, rep);
    return true;
  }
  return endRequest(bus, timeoutMs, instance, rep);
}

async function endRequest(bus: Bus, timeoutMs: number, instance: string, rep: LegReport): Promise<LegReply | undefined> {
  // the leg's started or first-token report still held is not sent: the end says the leg was taken, and its first token
  const held = heldReports.get(bus)?.byLeg.get(`${instance} ${rep.id}`);
  if (held && (held.rep.phase === 'started' || held.rep.phase === 'first_token')) held.dropped = true;
  flushLegReports(bus);
  try {
    return await bus.request(subjects.instanceLeg(instance), LegReport, rep, LegReply, { timeoutMs });
  } catch {
    return undefined; // the instance died with its engine: its leg's energy is not known
  }
}
