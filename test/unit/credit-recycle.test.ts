/**
 * A credited leg's seat kept by its gateway (src/policy/machines/credits.ts creditRecycle / recycleCredit, docs/DATAPATH.md
 * "Admission credits"): the gateway keeps the seat of a leg that ended well while its line holds fewer credits than its
 * pace spends in CREDIT_RENEW_TRIPS round trips, and its end report says so; the instance then adds the credit to that
 * gateway's loan before the end frees the seat, so the seat stays reserved (the queue does not take it). An end of a
 * revoked epoch frees its seat as any end does. And through the gateway's report path: the flag rides the end report,
 * also when the end joins its credited report.
 */
import { describe, expect, it } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';
import { CREDIT_RENEW_TRIPS, creditRecycle, creditReceived, creditSpend, creditsOutstanding, type CreditLines, type CreditLoan } from '../../src/policy/machines/credits.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz;
const MAX = CLOCKS[CLOCKS.length - 1]!;
const T0 = 1_700_000_000_000;
const TTL = 2000;
const cfg: InstanceMachineConfig = {
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 8, maxQueued: 64, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16, credits: { perGateway: 3, ttlMs: TTL },
};
let n = 0;
const req = (): MachineRequest => ({ id: `q${++n}`, type: 'SS', inputTokens: 100, arrivalMs: T0, ttftDeadlineMs: T0 + 2000, ttftSloMs: 2000, moves: 0 });

class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  at(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const r = instanceStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    return r.effects;
  }
  ready(): this {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS] });
    this.at(0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: MAX, why: 'start-up', inputs: {} });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
    return this;
  }
}
const starts = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'start' ? [e.id] : []));

/** an instance that lent gw-a 3 credits, with one credited leg running on them and the other seats full, one request queued */
function busy(): { d: Drive; leg: MachineRequest; queued: MachineRequest } {
  const d = new Drive().ready();
  d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
  const leg = req();
  d.at(2, { type: 'credited_start', req: leg, gateway: 'gw-a', epoch: 0 });
  // 8 seats: 2 running, 2 credits outstanding; 4 more start, the next queues
  for (let i = 0; i < 4; i++) expect(starts(d.at(3, { type: 'admit', req: req() }))).toHaveLength(1);
  const queued = req();
  expect(starts(d.at(3, { type: 'admit', req: queued }))).toEqual([]);
  return { d, leg, queued };
}

describe('a credited seat kept by its gateway: the instance', () => {
  it('adds the credit to the loan before the end frees the seat: the seat stays the gateway\'s, the queue does not take it', () => {
    const { d, leg, queued } = busy();
    expect(creditsOutstanding(d.s.credits, T0 + 4)).toBe(2);
    d.at(4, { type: 'credit_recycled', gateway: 'gw-a', epoch: 0 });
    const fx = d.at(4, { type: 'finished', id: leg.id, ok: true });
    expect(starts(fx)).toEqual([]);
    expect(d.s.queue.map((q) => q.id)).toEqual([queued.id]);
    expect(creditsOutstanding(d.s.credits, T0 + 4)).toBe(3);
    expect(d.s.credits.loans.get('gw-a')).toMatchObject({ total: 4, spent: 1 });
    // the gateway spends it: a credited start, no overdraft
    d.at(5, { type: 'credited_start', req: req(), gateway: 'gw-a', epoch: 0 });
    expect(d.s.credits.overdrafts).toBe(0);
    expect(creditsOutstanding(d.s.credits, T0 + 5)).toBe(2);
  });

  it('an end without the flag frees the seat for the queue', () => {
    const { d, leg, queued } = busy();
    expect(starts(d.at(4, { type: 'finished', id: leg.id, ok: true }))).toEqual([queued.id]);
    expect(creditsOutstanding(d.s.credits, T0 + 4)).toBe(2);
  });

  it('a kept seat of a revoked epoch or a lapsed loan is not added: the end frees it', () => {
    const { d, leg, queued } = busy();
    d.at(4, { type: 'credit_recycled', gateway: 'gw-a', epoch: 7 });
    expect(d.s.credits.loans.get('gw-a')).toMatchObject({ total: 3, spent: 1 });
    expect(starts(d.at(4, { type: 'finished', id: leg.id, ok: true }))).toEqual([queued.id]);
    const late = busy();
    late.d.at(TTL + 2000, { type: 'credit_recycled', gateway: 'gw-a', epoch: 0 });
    expect(late.d.s.credits.loans.get('gw-a')).toMatchObject({ total: 3 });
  });
});

describe('a credited seat kept by its gateway: the gateway', () => {
  const loan = (o: Partial<CreditLoan> = {}): CreditLoan => ({ epoch: 2, total: 4, spent: 0, ttlMs: TTL, joins: true, batches: true, recycles: true, ...o });
  const ctx = { grant: { url: 'http://e', apiKey: 'k' }, pool: 'p', startedMs: 11 };
  const line = (l: CreditLoan = loan()): CreditLines => {
    const lines: CreditLines = new Map();
    creditReceived(lines, 'i1', l, ctx, T0);
    return lines;
  };

  it('keeps the seat while its line holds fewer credits than its pace needs (at least one), not past that', () => {
    const lines = line();
    // pace unknown: it keeps the seat only with no credit left
    expect(creditRecycle(lines, 'i1', 2, 11, T0 + 1)).toBe(false);
    for (let i = 0; i < 4; i++) expect(creditSpend(lines, 'i1', T0 + 1 + i)).toBeDefined();
    expect(creditSpend(lines, 'i1', T0 + 6)).toBeUndefined();
    expect(creditRecycle(lines, 'i1', 2, 11, T0 + 7)).toBe(true);
    expect(lines.get('i1')).toMatchObject({ total: 5, spent: 4 });
    expect(creditRecycle(lines, 'i1', 2, 11, T0 + 7)).toBe(false);
    expect(creditSpend(lines, 'i1', T0 + 8)).toMatchObject({ epoch: 2 });
  });

  it('with a known pace it keeps up to the credits of CREDIT_RENEW_TRIPS round trips', () => {
    const lines = line(loan({ total: 40 }));
    // a spend every ms against a 10-ms round trip: CREDIT_RENEW_TRIPS (2) trips are 20 credits; 30 of 40 spent leave 10
    for (let i = 0; i < 30; i++) creditSpend(lines, 'i1', T0 + 1 + i);
    lines.get('i1')!.pace.tripMs = 10;
    expect(CREDIT_RENEW_TRIPS).toBe(2);
    let kept = 0;
    while (creditRecycle(lines, 'i1', 2, 11, T0 + 40)) kept++;
    expect(kept).toBe(10);
    expect(lines.get('i1')!.total - lines.get('i1')!.spent).toBe(20);
  });

  it('a top-up lent before the instance read the seats kept since answers the top-up: the line keeps its total', () => {
    const lines = line();
    // the second of 4 spends asks for a top-up (half the loan spent)
    const spends = [0, 1, 2, 3].map((i) => creditSpend(lines, 'i1', T0 + 1 + i)?.topUp);
    expect(spends).toEqual([false, true, false, false]);
    expect(creditRecycle(lines, 'i1', 2, 11, T0 + 6)).toBe(true);
    // the instance lent when it had counted 2 spent, with nothing free and no kept seat read yet: 4 in all
    creditReceived(lines, 'i1', loan({ total: 4, spent: 2 }), ctx, T0 + 9);
    expect(lines.get('i1')).toMatchObject({ total: 5, spent: 4, topUpAsked: false, expiresMs: T0 + 9 + TTL });
  });

  it('keeps nothing for a lender that does not take seats back, another epoch or process, or an expired line', () => {
    const spentAll = (l: CreditLines) => {
      while (creditSpend(l, 'i1', T0 + 1)) { /* spend */ }
      return l;
    };
    const { recycles: _r, ...old } = loan();
    expect(creditRecycle(spentAll(line(old)), 'i1', 2, 11, T0 + 2)).toBe(false);
    expect(creditRecycle(spentAll(line()), 'i1', 1, 11, T0 + 2)).toBe(false);
    expect(creditRecycle(spentAll(line()), 'i1', 2, 12, T0 + 2)).toBe(false);
    expect(creditRecycle(spentAll(line()), 'i1', 2, 11, T0 + TTL + 1)).toBe(false);
    expect(creditRecycle(spentAll(line()), 'i2', 2, 11, T0 + 2)).toBe(false);
  });
});
