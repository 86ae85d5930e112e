/**
 * Admission credits (src/policy/machines/credits.ts, docs/DATAPATH.md "Admission credits"), in the pure
 * machines: the instance machine lends a gateway immediate starts only from free engine slots and only while
 * it holds no queue, keeps their seats out of its pump, takes a credited start straight into the engine,
 * lets loans lapse and revokes them all (a new epoch) when it leaves `ready` or takes an emergency step; the
 * gateway's lines spend what they were lent, ask for a top-up at half, and drop a loan a status voids.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';
import { CREDIT_RENEW_TRIPS, CREDIT_SLACK_MS, creditReceived, creditRecycle, creditSpend, creditStatus, creditsOutstanding, type CreditLines, type CreditLoan } from '../../src/policy/machines/credits.ts';

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
const req = (o: Partial<MachineRequest> = {}): MachineRequest => ({ id: `q${++n}`, type: 'SS', inputTokens: 100, arrivalMs: T0, ttftDeadlineMs: T0 + 2000, ttftSloMs: 2000, moves: 0, ...o });

class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  constructor(private readonly c: InstanceMachineConfig = cfg) {}
  at(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const r = instanceStep(this.s, ev, T0 + ms, this.c);
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
const lent = (fx: InstanceEffect[]) => fx.find((e): e is Extract<InstanceEffect, { kind: 'lent' }> => e.kind === 'lent');
const starts = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'start' ? [e] : []));

describe('admission credits: the instance lends', () => {
  it('lends a gateway half its free slots (at most perGateway) with an admission that starts at once, and keeps their seats', () => {
    const d = new Drive().ready();
    const fx = d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    expect(starts(fx)).toHaveLength(1);
    // 8 slots, 1 running: 7 free, half of them is 3 (the per-gateway bound is 3 too)
    expect(lent(fx)?.loan).toEqual({ epoch: 0, total: 3, spent: 0, ttlMs: TTL, joins: true, batches: true, recycles: true });
    expect(creditsOutstanding(d.s.credits, T0 + 1)).toBe(3);
    // the 3 seats are the gateway's: 4 more admissions start, the next ones queue
    const started = [0, 1, 2, 3, 4, 5].map(() => starts(d.at(2, { type: 'admit', req: req() })).length);
    expect(started).toEqual([1, 1, 1, 1, 0, 0]);
    // an admission that queues is lent nothing (it carries no grant)
    expect(lent(d.at(3, { type: 'admit', req: req(), lendTo: 'gw-b' }))).toBeUndefined();
    expect(d.s.credits.loans.has('gw-b')).toBe(false);
  });

  it('without the config (or perGateway 0) lends nothing: an admission is as before', () => {
    const d = new Drive({ ...cfg, credits: { perGateway: 0, ttlMs: TTL } }).ready();
    const fx = d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    expect(lent(fx)).toBeUndefined();
    expect(creditsOutstanding(d.s.credits, T0 + 1)).toBe(0);
  });

  it('a credited start goes straight into the engine and spends the credit; a top-up lends again', () => {
    const d = new Drive().ready();
    d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    const r = req();
    const fx = d.at(5, { type: 'credited_start', req: r, gateway: 'gw-a', epoch: 0 });
    expect(starts(fx)).toEqual([{ kind: 'start', id: r.id, credited: true }]);
    expect(d.s.running.has(r.id)).toBe(true);
    expect(d.s.admitted.SS).toBe(2);
    expect(creditsOutstanding(d.s.credits, T0 + 5)).toBe(2);
    expect(d.s.credits.overdrafts).toBe(0);
    // a duplicate report changes nothing
    expect(d.at(6, { type: 'credited_start', req: r, gateway: 'gw-a', epoch: 0 })).toEqual([]);
    // top-up: 8 - 2 running - 2 outstanding = 4 free, half is 2, capped at 3 unspent: cumulative total 1 spent + 3
    const t = lent(d.at(7, { type: 'credited_start', req: req(), gateway: 'gw-a', epoch: 0, topUp: true }));
    expect(t?.loan).toEqual({ epoch: 0, total: 5, spent: 2, ttlMs: TTL, joins: true, batches: true, recycles: true });
  });

  it('a credit spent after a revocation is still started (the engine has it), counted as an overdraft', () => {
    const d = new Drive().ready();
    d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    const fx = d.at(2, { type: 'lifecycle', state: 'draining', why: 'drain' });
    expect(fx.some((e) => e.kind === 'status')).toBe(true);
    expect(d.s.credits.epoch).toBe(1);
    expect(creditsOutstanding(d.s.credits, T0 + 2)).toBe(0);
    const r = req();
    expect(starts(d.at(3, { type: 'credited_start', req: r, gateway: 'gw-a', epoch: 0 }))).toHaveLength(1);
    expect(d.s.running.has(r.id)).toBe(true);
    expect(d.s.credits.overdrafts).toBe(1);
  });

  it('an unspent loan lapses after its time to live (plus slack): its seats go back to the queue', () => {
    const d = new Drive().ready();
    d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    for (let i = 0; i < 4; i++) d.at(2, { type: 'admit', req: req() });
    const queued = req();
    d.at(3, { type: 'admit', req: queued });
    expect(d.s.queue.map((q) => q.id)).toEqual([queued.id]);
    // a request ends after the loan lapsed: the freed slot and the lapsed seats go to the queue
    const first = [...d.s.running.keys()][0]!;
    const fx = d.at(1 + TTL + CREDIT_SLACK_MS + 1, { type: 'finished', id: first, ok: true });
    expect(starts(fx).map((e) => e.id)).toEqual([queued.id]);
  });

  it('an emergency step revokes every loan (a new epoch, a status at once)', () => {
    const d = new Drive({ ...cfg, maxInEngine: 2, rejectAfterMs: 200 }).ready();
    d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    expect(creditsOutstanding(d.s.credits, T0 + 1)).toBe(0); // 1 free slot: half of it is none
    const d2 = new Drive().ready();
    d2.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
    // the engine full of long requests and a backlog that misses its deadlines: the ladder steps in
    for (let i = 0; i < 30; i++) d2.at(2, { type: 'admit', req: req({ inputTokens: 8000, ttftDeadlineMs: T0 + 300, ttftSloMs: 300 }) });
    let status = false;
    for (let t = 100; t <= 3000 && d2.s.credits.epoch === 0; t += 100) status = d2.at(t, { type: 'tick' }).some((e) => e.kind === 'status') || status;
    expect(d2.s.emergencyStepName).toBeDefined();
    expect(d2.s.credits.epoch).toBe(1);
    expect(status).toBe(true);
    expect(creditsOutstanding(d2.s.credits, T0 + 3000)).toBe(0);
  });
});

describe('admission credits: the gateway spends', () => {
  const grant = { url: 'http://127.0.0.1:9000', apiKey: 'k'.repeat(32) };
  it('spends what it was lent, asks for a top-up once half is spent, and none past the total or the ttl', () => {
    const lines: CreditLines = new Map();
    creditReceived(lines, 'i0', { epoch: 0, total: 4, ttlMs: 1000 }, { grant, pool: 'p', startedMs: 7 }, 0);
    const spent = [1, 2, 3, 4, 5].map(() => creditSpend(lines, 'i0', 10));
    expect(spent.map((s) => s?.topUp)).toEqual([false, true, false, false, undefined]);
    expect(spent[0]).toEqual({ grant, epoch: 0, startedMs: 7, topUp: false });
    // the top-up's loan: cumulative, so the 4 spent stay spent
    creditReceived(lines, 'i0', { epoch: 0, total: 6, ttlMs: 1000 }, { grant, pool: 'p', startedMs: 7 }, 20);
    expect(creditSpend(lines, 'i0', 30)).toBeDefined();
    expect(creditSpend(lines, 'i0', 1021)).toBeUndefined(); // expired
    expect(lines.has('i0')).toBe(false);
  });

  it('a status with a later credit epoch, another process or a state other than ready voids the loan; a stale loan is ignored', () => {
    const lines: CreditLines = new Map();
    const give = (epoch: number) => creditReceived(lines, 'i0', { epoch, total: 4, ttlMs: 1000 }, { grant, pool: 'p', startedMs: 7 }, 0);
    give(0);
    creditStatus(lines, { id: 'i0', startedMs: 7, state: 'ready' });
    expect(lines.has('i0')).toBe(true);
    creditStatus(lines, { id: 'i0', startedMs: 7, state: 'ready', creditEpoch: 1 });
    expect(lines.has('i0')).toBe(false);
    give(2);
    give(1); // an older epoch's reply overtaken by the newer loan
    expect(lines.get('i0')?.epoch).toBe(2);
    creditStatus(lines, { id: 'i0', startedMs: 8, state: 'ready', creditEpoch: 2 });
    expect(lines.has('i0')).toBe(false);
    give(2);
    creditStatus(lines, { id: 'i0', startedMs: 7, state: 'draining', creditEpoch: 2 });
    expect(lines.has('i0')).toBe(false);
  });

  it('after a quiet spell that lapses the line, the next loan lets the gateway start only what it lends, never the credits spent before', () => {
    const d = new Drive().ready();
    const lines: CreditLines = new Map();
    const ctx = { grant, pool: 'p', startedMs: 7 };
    // the gateway spends every credit it holds (each a credited start at the instance); returns how many, and the overdrafts
    const spendAll = (ms: number) => {
      const before = d.s.credits.overdrafts;
      let n = 0;
      for (let c = creditSpend(lines, 'i0', T0 + ms); c; c = creditSpend(lines, 'i0', T0 + ms), n++) {
        d.at(ms, { type: 'credited_start', req: req(), gateway: 'gw-a', epoch: c.epoch });
      }
      return { n, overdrafts: d.s.credits.overdrafts - before };
    };
    const finishAll = (ms: number) => { for (const id of [...d.s.running.keys()]) d.at(ms, { type: 'finished', id, ok: true }); };
    let t = 1;
    for (let round = 0; round < 20; round++, t += 100) {
      const loan = lent(d.at(t, { type: 'admit', req: req(), lendTo: 'gw-a' }))!.loan;
      creditReceived(lines, 'i0', loan, ctx, T0 + t);
      expect(spendAll(t + 1)).toEqual({ n: 3, overdrafts: 0 });
      finishAll(t + 50);
    }
    expect(d.s.credits.loans.get('gw-a')?.spent).toBe(60);
    // quiet past the ttl: the gateway's line lapses; the instance's epoch stays
    t += TTL + CREDIT_SLACK_MS + 5000;
    expect(creditSpend(lines, 'i0', T0 + t)).toBeUndefined();
    expect(lines.has('i0')).toBe(false);
    expect(d.s.credits.epoch).toBe(0);
    const loan = lent(d.at(t, { type: 'admit', req: req(), lendTo: 'gw-a' }))!.loan;
    creditReceived(lines, 'i0', loan, ctx, T0 + t);
    expect(spendAll(t + 1)).toEqual({ n: 3, overdrafts: 0 });
    expect(d.s.running.size).toBeLessThanOrEqual(cfg.maxInEngine);
    expect(loan).toEqual({ epoch: 0, total: 63, spent: 60, ttlMs: TTL, joins: true, batches: true, recycles: true });
  });

  it('loans in any order never let a gateway without a line spend more than one loan lent', () => {
    const ctx = { grant, pool: 'p', startedMs: 7 };
    const older = { epoch: 0, total: 40, spent: 37, ttlMs: 1000 };
    const newer = { epoch: 0, total: 44, spent: 41, ttlMs: 1000 };
    const spendable = (lines: CreditLines, now: number) => { let n = 0; while (creditSpend(lines, 'i0', now)) n++; return n; };
    // in order, a fresh line (a gateway restarted under its id): the newer loan's 3, the older one ignored
    const a: CreditLines = new Map();
    creditReceived(a, 'i0', older, ctx, 0);
    creditReceived(a, 'i0', newer, ctx, 0);
    expect(spendable(a, 1)).toBe(3);
    // the older one after the newer: ignored
    const b: CreditLines = new Map();
    creditReceived(b, 'i0', newer, ctx, 0);
    creditReceived(b, 'i0', older, ctx, 0);
    expect(spendable(b, 1)).toBe(3);
    // the older one after the newer's line lapsed: its own 3 at most
    const c: CreditLines = new Map();
    creditReceived(c, 'i0', newer, ctx, 0);
    expect(creditSpend(c, 'i0', 2000)).toBeUndefined();
    creditReceived(c, 'i0', older, ctx, 2000);
    expect(spendable(c, 2001)).toBe(3);
    // a line of the same epoch whose own count is ahead of the loan's (credited reports on their way) keeps its own
    const e: CreditLines = new Map();
    creditReceived(e, 'i0', { epoch: 0, total: 4, spent: 0, ttlMs: 1000 }, ctx, 0);
    expect(spendable(e, 1)).toBe(4);
    creditReceived(e, 'i0', { epoch: 0, total: 6, spent: 2, ttlMs: 1000 }, ctx, 2);
    expect(spendable(e, 3)).toBe(2);
  });
});

// A credited leg's seat kept by its gateway (credits.ts creditRecycle / recycleCredit, docs/DATAPATH.md "Admission
// credits"): the gateway keeps the seat of a leg that ended well while its line holds fewer credits than its pace spends
// in CREDIT_RENEW_TRIPS round trips, and its end report says so; the instance adds the credit to that gateway's loan
// before the end frees the seat, so the seat stays reserved (the queue does not take it). An end of a revoked epoch
// frees its seat as any end does.
const startIds = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'start' ? [e.id] : []));

/** an instance that lent gw-a 3 credits, with one credited leg running on them and the other seats full, one request queued */
function busy(): { d: Drive; leg: MachineRequest; queued: MachineRequest } {
  const d = new Drive().ready();
  d.at(1, { type: 'admit', req: req(), lendTo: 'gw-a' });
  const leg = req();
  d.at(2, { type: 'credited_start', req: leg, gateway: 'gw-a', epoch: 0 });
  // 8 seats: 2 running, 2 credits outstanding; 4 more start, the next queues
  for (let i = 0; i < 4; i++) expect(startIds(d.at(3, { type: 'admit', req: req() }))).toHaveLength(1);
  const queued = req();
  expect(startIds(d.at(3, { type: 'admit', req: queued }))).toEqual([]);
  return { d, leg, queued };
}

describe('a credited seat kept by its gateway: the instance', () => {
  it('adds the credit to the loan before the end frees the seat: the seat stays the gateway\'s, the queue does not take it', () => {
    const { d, leg, queued } = busy();
    expect(creditsOutstanding(d.s.credits, T0 + 4)).toBe(2);
    d.at(4, { type: 'credit_recycled', gateway: 'gw-a', epoch: 0 });
    const fx = d.at(4, { type: 'finished', id: leg.id, ok: true });
    expect(startIds(fx)).toEqual([]);
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
    expect(startIds(d.at(4, { type: 'finished', id: leg.id, ok: true }))).toEqual([queued.id]);
    expect(creditsOutstanding(d.s.credits, T0 + 4)).toBe(2);
  });

  it('a kept seat of a revoked epoch or a lapsed loan is not added: the end frees it', () => {
    const { d, leg, queued } = busy();
    d.at(4, { type: 'credit_recycled', gateway: 'gw-a', epoch: 7 });
    expect(d.s.credits.loans.get('gw-a')).toMatchObject({ total: 3, spent: 1 });
    expect(startIds(d.at(4, { type: 'finished', id: leg.id, ok: true }))).toEqual([queued.id]);
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
