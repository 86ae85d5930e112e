/**
 * Admission credits sized to the gateway's pace (src/policy/machines/credits.ts, docs/DATAPATH.md "Admission
 * credits"): the gateway times its loans' round trips and its spends, asks for a top-up while the credits left
 * would last a few round trips and names the credits it wants; the instance lends up to that want within half its
 * free seats. Driven through both pure machines with loans that take a round trip to come back.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';
import { CREDIT_LOAN_TRIPS, CREDIT_RENEW_TRIPS, creditReceived, creditSpend, creditsForTrips, creditsOutstanding, lendCredits, initialCreditLedger, type CreditLines, type CreditLoan } from '../../src/policy/machines/credits.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz;
const T0 = 1_700_000_000_000;
const grant = { url: 'http://127.0.0.1:1', apiKey: 'k' };
const config = (perGateway: number, maxInEngine: number): InstanceMachineConfig => ({
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine, maxQueued: 4096, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 4096, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16, credits: { perGateway, ttlMs: 2000 },
});
let n = 0;
const req = (at: number): MachineRequest => ({ id: `q${++n}`, type: 'SS', inputTokens: 8, arrivalMs: T0 + at, ttftDeadlineMs: T0 + at + 2000, ttftSloMs: 2000, moves: 0 });
const lentOf = (fx: InstanceEffect[]) => fx.find((e): e is Extract<InstanceEffect, { kind: 'lent' }> => e.kind === 'lent')?.loan;

/**
 * A gateway routing one request every `gapMs` to one instance for `count` requests, each running `runMs`; a loan (an
 * admission's or a top-up's) reaches the gateway `tripMs` after it was asked. Returns the share of requests that found
 * a credit, the largest loan, and the instance's seats at the end (running + outstanding credits <= maxInEngine).
 */
function drive(o: { perGateway: number; maxInEngine: number; gapMs: number; tripMs: number; runMs: number; count: number }) {
  const c = config(o.perGateway, o.maxInEngine);
  let s: InstanceMachineState = initialInstanceState(T0);
  const step = (ms: number, ev: InstanceEvent) => {
    const r = instanceStep(s, ev, T0 + ms, c);
    s = r.state;
    return r.effects;
  };
  step(0, { type: 'start' });
  step(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS] });
  step(0, { type: 'clock_applied', requestedMhz: CLOCKS.at(-1)!, appliedMhz: CLOCKS.at(-1)!, why: 'start-up', inputs: {} });
  step(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  const lines: CreditLines = new Map();
  const loans: { at: number; loan: CreditLoan; tripMs?: number }[] = [];
  const ends: { at: number; id: string }[] = [];
  let credited = 0, largest = 0, seatsOver = 0;
  for (let i = 0; i < o.count; i++) {
    const t = i * o.gapMs;
    for (const e of ends.filter((x) => x.at <= t)) step(e.at, { type: 'finished', id: e.id, ok: true });
    ends.splice(0, ends.length, ...ends.filter((x) => x.at > t));
    for (const l of loans.filter((x) => x.at <= t)) creditReceived(lines, 'i0', l.loan, { grant, pool: 'p', startedMs: 7, ...(l.tripMs !== undefined ? { tripMs: l.tripMs } : {}) }, T0 + l.at);
    loans.splice(0, loans.length, ...loans.filter((x) => x.at > t));
    const r = req(t);
    const spend = creditSpend(lines, 'i0', T0 + t);
    let loan: CreditLoan | undefined;
    if (spend) {
      credited++;
      loan = lentOf(step(t + o.tripMs / 2, { type: 'credited_start', req: r, gateway: 'gw', epoch: spend.epoch, ...(spend.topUp ? { topUp: true } : {}), ...(spend.want !== undefined ? { want: spend.want } : {}) }));
      if (loan) loans.push({ at: t + o.tripMs, loan });
    } else {
      loan = lentOf(step(t + o.tripMs / 2, { type: 'admit', req: r, lendTo: 'gw' }));
      if (loan) loans.push({ at: t + o.tripMs, loan, tripMs: o.tripMs });
    }
    if (loan) largest = Math.max(largest, loan.total - (loan.spent ?? 0));
    ends.push({ at: t + o.runMs, id: r.id });
    if (s.running.size + creditsOutstanding(s.credits, T0 + t) > o.maxInEngine) seatsOver++;
  }
  return { creditedShare: credited / o.count, largest, seatsOver };
}

describe('admission credits follow the gateway pace', () => {
  it('a gateway spending a credit a millisecond against 10-ms loan round trips finds one for nearly every request', () => {
    // perGateway 4: a fixed loan of 4 (a top-up at 2 left) lasts 2 ms of a 10-ms round trip
    const r = drive({ perGateway: 4, maxInEngine: 256, gapMs: 1, tripMs: 10, runMs: 20, count: 3000 });
    expect(r.creditedShare).toBeGreaterThan(0.95);
    expect(r.largest).toBeGreaterThan(4);
    expect(r.seatsOver).toBe(0);
  });

  it('the loans stay within half the free seats, and the requests within the engine', () => {
    // 64 seats, ~20 running: the wants (~40) are bounded by the free seats
    const r = drive({ perGateway: 4, maxInEngine: 64, gapMs: 1, tripMs: 10, runMs: 20, count: 3000 });
    expect(r.largest).toBeLessThanOrEqual(32);
    expect(r.seatsOver).toBe(0);
    expect(r.creditedShare).toBeGreaterThan(0.9);
  });

  it('a slow gateway is lent perGateway, and its top-ups want nothing past it', () => {
    const r = drive({ perGateway: 4, maxInEngine: 256, gapMs: 100, tripMs: 10, runMs: 20, count: 200 });
    expect(r.largest).toBe(4);
    expect(r.creditedShare).toBeGreaterThan(0.95);
  });
});

describe('the pace, in the gateway line and the instance ledger', () => {
  it('asks for a top-up while the credits left last CREDIT_RENEW_TRIPS round trips, wanting CREDIT_LOAN_TRIPS of them', () => {
    const lines: CreditLines = new Map();
    creditReceived(lines, 'i0', { epoch: 0, total: 100, ttlMs: 60_000 }, { grant, pool: 'p', startedMs: 7, tripMs: 5 }, T0);
    let asked: { at: number; left: number; want?: number } | undefined;
    for (let i = 1; i <= 100 && !asked; i++) {
      const c = creditSpend(lines, 'i0', T0 + i)!;
      if (c.topUp) asked = { at: i, left: 100 - i, ...(c.want !== undefined ? { want: c.want } : {}) };
    }
    // one spend a ms, 5-ms round trips: half of a 100-credit loan (50 left) comes before 2 x 5 = 10 left
    expect(asked?.left).toBe(50);
    expect(asked?.want).toBe(CREDIT_LOAN_TRIPS * 5);
    const line = lines.get('i0')!;
    expect(creditsForTrips(line.pace, CREDIT_RENEW_TRIPS)).toBe(10);
    // a small loan at the same pace: asked at once (1 left of 2 < 10), before half of it is spent would be too late
    creditReceived(lines, 'i0', { epoch: 0, total: 102, spent: 100, ttlMs: 60_000 }, { grant, pool: 'p', startedMs: 7 }, T0 + 200);
    expect(creditSpend(lines, 'i0', T0 + 201)?.topUp).toBe(true);
  });

  it('the instance lends up to a want past perGateway, within half its free seats, and keeps the want for the next loan', () => {
    const cfg = { perGateway: 4, ttlMs: 2000 };
    const a = lendCredits(initialCreditLedger(), 'gw', 100, T0, cfg, 30);
    expect(a.loan.total).toBe(30);
    const b = lendCredits(initialCreditLedger(), 'gw', 20, T0, cfg, 30);
    expect(b.loan.total).toBe(10);
    // an admission's loan (no want of its own) follows the gateway's last want
    const later = lendCredits(a.ledger, 'gw', 100, T0 + 1, cfg);
    expect(later.loan.total).toBe(30);
    expect(lendCredits(initialCreditLedger(), 'gw', 100, T0, cfg).loan.total).toBe(4);
  });
});
