/**
 * The instance manager's direct legs: requests the gateway streams from the engine itself (docs/DATAPATH.md). The
 * instance grants each (the engine's URL and key), counts it as running until the gateway reports its end, and keeps
 * its cancel, energy and SLO accounting from the gateway's reports (LegReport: started, first token, end, and a start
 * on an admission credit the instance lent). The manager holds the request (instance-manager.ts #runDirect); its end goes
 * back to the manager's bookkeeping (LegHost.ended).
 */
import { DynError, TokenChunk, isLegBatch, subjects, toWireError, type Grant as GrantT, type LegMessage, type LegReply as LegReplyT, type LegReport as LegReportT } from '../../protocols/index.ts';
import type { InstanceEffect } from '../../src/policy/machines/instance.ts';
import { classified } from '../../src/policy/classify.ts';
import { timerStallMs } from '../../src/policy/timer-stall.ts';
import { machineRequest } from './machine-io.ts';
import { watchLeg } from './gateway-watch.ts';
import type { Held, LegHost, Running } from './running.ts';
import { relayCredit } from './relay-pause.ts';

/** how often the direct legs' give-up deadlines are checked, ms (one interval per instance, armed while legs run). */
export const LEG_SWEEP_MS = 1000;
/** the direct legs of each instance with their give-up deadlines (on its clock), and the interval that checks them. */
const legSweeps = new WeakMap<LegHost, { due: Map<Running, number>; timer?: unknown }>();

function sweepOf(h: LegHost): { due: Map<Running, number>; timer?: unknown } {
  let w = legSweeps.get(h);
  if (!w) legSweeps.set(h, (w = { due: new Map() }));
  return w;
}

/**
 * Aborts the legs of `h` past their give-up deadline (a gateway that died mid-stream never reports); with none left it
 * disarms: a leg's end leaves it armed, so legs that start and end between two sweeps (a short leg's reports in one
 * message) arm and clear no timer of their own.
 */
function sweepLegs(h: LegHost): void {
  const w = sweepOf(h);
  if (w.due.size === 0) {
    if (w.timer !== undefined) h.clock.clearInterval(w.timer);
    w.timer = undefined;
    return;
  }
  const now = h.clock.now();
  for (const [r, dueMs] of w.due) if (now >= dueMs) r.ac.abort(new DynError('timeout', 'no report from the gateway streaming this request', { retryable: true }));
}

/**
 * A direct request: the gateway streams it from the engine itself (docs/DATAPATH.md). The instance grants
 * it (the engine's URL and key, on the request's own stream subject), counts it as running in the engine
 * until the gateway reports the leg's end (or its deadline passes), and keeps its admission, cancel,
 * energy and SLO accounting: the report carries the first token's time, the token gaps and the counts.
 * An abort (cancel, evacuation, stop) ends it with an error chunk on the stream subject, which the gateway
 * obeys by dropping its engine call. The end report ends it at once (its record, the machine's `finished`); an
 * abort ends it one microtask later (out of the machine step that aborted it).
 */
export function runDirectLeg(h: LegHost, q: Held, r: Running, credited: boolean): undefined {
  const req = q.req;
  const clock = h.clock;
  const sweep = sweepOf(h);
  let startTimer: unknown;
  let over = false;
  const finish = (end: { rep: LegReportT; energyJ: number; energySource: 'measured' | 'modelled' } | undefined, err?: unknown): void => {
    if (over) return;
    over = true;
    r.legEnd = undefined;
    r.ac.onAbort = undefined;
    let ok = false;
    try {
      if (!end) throw err;
      const { rep, energyJ, energySource } = end;
      const outcome = rep.outcome === 'ok' || rep.outcome === 'cancelled' || rep.outcome === 'timed_out' ? rep.outcome : 'failed';
      // the engine's own count of the prompt when the gateway had it (usage.prompt_tokens): the leg is over, its held body takes it
      if (rep.promptTokens !== undefined) req.inputTokens = rep.promptTokens;
      h.record(req, req.type, outcome, r, rep.completionTokens ?? 0, energyJ, energySource);
      ok = outcome === 'ok';
    } catch (e) {
      const w = toWireError(e);
      h.finishWithError(req, 1, w, w.code === 'cancelled' ? 'cancelled' : 'failed', r);
    } finally {
      sweep.due.delete(r);
      if (startTimer !== undefined) clock.clearTimeout(startTimer);
      r.unwatchGateway?.();
      h.ended(req.id, ok);
    }
  };
  // the energy the gateway was told (and put in the client's usage), not a later reading
  r.legEnd = (end) => finish(end);
  const aborted = (reason: unknown) => queueMicrotask(() => finish(undefined, reason instanceof Error ? reason : new DynError('cancelled', 'aborted', { retryable: false })));
  if (r.ac.aborted) aborted(r.ac.reason);
  else r.ac.onAbort = aborted;
  // a gateway that died mid-stream never reports: the slot is freed at the client's give-up time (the sweep, LEG_SWEEP_MS)
  sweep.due.set(r, clock.now() + Math.max(1000, req.giveUpAtMs - clock.now()) + 5000);
  sweep.timer ??= clock.setInterval(() => sweepLegs(h), LEG_SWEEP_MS);
  // nor does one that had gone (or given up) before the grant came: its seat is freed within directStartMs (a
  // credited leg was started by its gateway: no grant to wait for)
  if (!r.gatewayStarted) {
    // a check that runs late ran after this process was stopped (src/policy/timer-stall.ts): the gateway's report
    // may wait unread in the socket, so the window starts again at the resume
    const armStart = (ms: number) => {
      const dueMs = clock.now() + ms;
      startTimer = clock.setTimeout(() => {
        const stall = timerStallMs(dueMs, clock.now());
        if (r.gatewayStarted) return;
        if (stall > 0) armStart(stall);
        else r.ac.abort(new DynError('timeout', 'no gateway took the grant of this request', { retryable: true }));
      }, ms);
    };
    armStart(h.config.timeouts.directStartMs);
  }
  // the gateway has the grant of its loan; an aborted one gets its error
  if (credited || r.ac.aborted) return undefined;
  // the gateway says it took the grant with its first-token report, or with 'started' after half of directStartMs
  const grant: GrantT = { url: h.engine.baseUrl, apiKey: h.engineApiKey!, reportWithinMs: Math.floor(h.config.timeouts.directStartMs / 2) };
  // started by its own admission, for a gateway that asked for the grant in the reply: no message of its own
  const inReply = h.replyGrants.get(req.id);
  if (inReply) inReply.grant = grant;
  else h.bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, instance: h.id, pool: h.pool, type: req.type, grant });
  return undefined;
}

/** A message on the instance's leg subject: one report, or a gateway's batch of them, each handled in its order. */
export function legMessage(h: LegHost, m: LegMessage): LegReplyT {
  if (!isLegBatch(m)) return legReport(h, m);
  for (const rep of m.reports) {
    try {
      const r = legReport(h, rep);
      if (!r.ok) h.log.debug({ rid: rep.id, phase: rep.phase, err: r.error?.message }, 'leg report of a batch refused');
    } catch (err) {
      h.log.error({ rid: rep.id, phase: rep.phase, err }, 'leg report of a batch failed');
    }
  }
  return { v: 1, ok: true };
}

/**
 * The gateway's report on a direct request this instance granted: its first token, or its end (-> energy); or a relayed
 * one's credit (relay-pause.ts). A credited report that carries a first token's time or an end's outcome is those
 * reports too (the gateway joins a short leg's reports into one message: actors/gateway/leg-reports.ts).
 */
export function legReport(h: LegHost, rep: LegReportT): LegReplyT {
  if (rep.phase === 'credit') return relayCredit(h, rep);
  if (rep.phase !== 'credited') return legProgress(h, rep, rep.phase);
  const started = creditedReport(h, rep);
  if (!started.ok || (rep.outcome === undefined && rep.firstTokenMs === undefined)) return started;
  const then = legProgress(h, rep, rep.outcome !== undefined ? 'end' : 'first_token');
  return then.ok && started.credit ? { ...then, credit: started.credit } : then;
}

/** A leg's first token or end (`phase`: what `rep` says of it). */
function legProgress(h: LegHost, rep: LegReportT, phase: Exclude<LegReportT['phase'], 'credited' | 'credit'>): LegReplyT {
  const r = h.running.get(rep.id);
  if (!r?.req.direct) return { v: 1, ok: false, error: { code: 'not_found', message: `instance ${h.id} holds no direct request ${rep.id}`, retryable: false } };
  r.gatewayStarted = true;
  if (phase !== 'end') watchLeg(h.gateways, r, rep.gateway);
  if (phase === 'started') return { v: 1, ok: true };
  if (rep.firstTokenMs !== undefined && r.firstTokenMs === undefined) {
    r.firstTokenMs = rep.firstTokenMs;
    // when its gateway took it, when this instance started it and when its gateway read its first token (the twin
    // check, test/bench/twin.bench.ts engineHopOf: the data path's time to and from the engine)
    if (h.log.isLevelEnabled('debug')) h.log.debug({ rid: rep.id, arrivalMs: r.req.arrivalMs, startedMs: r.startedMs, firstTokenMs: rep.firstTokenMs }, 'leg first token');
    h.sampleTtft(Math.max(0, rep.firstTokenMs - r.req.arrivalMs));
    // a report that ends the leg too ends it below (the machine's `finished`): its prefill mark would not outlive the step
    if (phase !== 'end' || !r.legEnd) h.step({ type: 'first_token', id: rep.id });
  }
  if (phase === 'first_token') return { v: 1, ok: true };
  r.tbtSum = rep.tbtSumMs ?? 0;
  r.tbtMax = rep.tbtMaxMs ?? 0;
  r.tbtN = rep.tbtN ?? 0;
  r.seq = rep.completionTokens ?? 0;
  if (r.tbtN > 0) h.sampleTbt(r.tbtSum / r.tbtN);
  const energyJ = rep.engineEnergyJ ?? r.energyJ;
  const energySource = rep.engineEnergyJ !== undefined || h.gpuKind() === 'emulated' ? 'modelled' : 'measured';
  if (rep.resumed && r.legEnd) endElsewhere(h, r);
  // a credited leg's seat its gateway kept (LegReport.recycled): back in that gateway's loan before the end frees it
  if (rep.recycled && r.credit && r.legEnd) h.step({ type: 'credit_recycled', gateway: r.credit.gateway, epoch: r.credit.epoch });
  r.legEnd?.({ rep, energyJ, energySource });
  return { v: 1, ok: true, energyJ, energySource };
}

/**
 * A direct leg whose client resumed its stream on another gateway, which reported its end (LegReport.resumed): the
 * gateway that streams it (its client's connection half dead, no reset) drops its engine call on this error chunk on
 * the leg's stream subject, not retryable (it neither migrates nor reopens the leg), so the engine runs no request the
 * instance no longer counts. That gateway sends no end report of its own: the leg's record is the resumed one's.
 */
function endElsewhere(h: LegHost, r: Running): void {
  const req = r.req;
  try {
    h.bus.publish(req.streamSubject, TokenChunk, {
      v: 1, id: req.id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'cancelled',
      error: { code: 'cancelled', message: 'the stream was resumed on another gateway', retryable: false }, instance: h.id, pool: h.pool, type: req.type,
    });
  } catch (err) {
    h.log.warn({ id: req.id, err: (err as Error).message }, 'could not publish the error chunk');
  }
}

const withoutWishes = ({ replyGrant: _g, creditTo: _c, ...wire }: NonNullable<LegReportT['request']>) => wire;

/**
 * A request a gateway started on a credit this instance lent it (docs/DATAPATH.md "Admission credits"): it
 * is checked as an admission is (its own stream subject, a direct request), then held and counted as running
 * in the engine, with its cancel watch, energy and SLO accounting as any granted request. A report that asks
 * for a top-up gets the gateway's new loan.
 */
function creditedReport(h: LegHost, rep: LegReportT): LegReplyT {
  const asked = rep.request;
  const credit = rep.credit;
  if (!asked || !credit || asked.id !== rep.id || asked.streamSubject !== subjects.stream(asked.id) || asked.direct !== true || !h.engineApiKey) {
    return { v: 1, ok: false, error: { code: 'invalid_request', message: `instance ${h.id}: a credited report carries its direct request (its own stream subject) and credit`, retryable: false } };
  }
  if (h.held.has(asked.id)) return { v: 1, ok: true };
  // an admission's wishes are not the held request's (a credited report carries none: no copy then)
  const req = classified(asked.replyGrant === undefined && asked.creditTo === undefined ? asked : withoutWishes(asked), h.config);
  h.held.set(req.id, { req, admittedMs: h.clock.now() });
  h.watchCancel(req.id);
  const { effects } = h.step({ type: 'credited_start', req: machineRequest(req), gateway: credit.gateway, epoch: credit.epoch, ...(credit.topUp ? { topUp: true } : {}), ...(credit.want !== undefined ? { want: credit.want } : {}) });
  const r = h.running.get(req.id);
  if (r) r.credit = { gateway: credit.gateway, epoch: credit.epoch };
  // a report that carries the leg's end too needs no watch of the gateway streaming it
  if (rep.outcome === undefined) watchLeg(h.gateways, r, rep.gateway);
  const lent = effects.find((e): e is Extract<InstanceEffect, { kind: 'lent' }> => e.kind === 'lent' && e.id === req.id);
  return lent ? { v: 1, ok: true, credit: lent.loan } : { v: 1, ok: true };
}

