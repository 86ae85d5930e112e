/**
 * The gateway's leg reports (actors/gateway/leg-reports.ts): while reports come often, held for LEG_REPORT_HOLD_MS
 * (past the event-loop turn) and published together, in their order; after a quieter spell, published at the end of
 * the turn with no timer armed (no wake-up of an idle loop for it); at once when LEG_REPORT_BATCH are held; before an
 * end report that asks for a reply. A leg's later report joins its report still held: a short credited leg's start, first token and end go out
 * as one message. The reports held for an instance whose loan says it reads a batch (CreditLoan.batches) go out as one
 * LegReportBatch; an instance that did not say so (an older one) gets each report alone.
 */
import { describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/runtime/clock.ts';
import { LEG_REPORT_BATCH, creditedReport, endReport, flushLegReports, legReport } from '../../actors/gateway/legs.ts';
import { LEG_REPORT_HOLD_MS } from '../../actors/gateway/leg-reports.ts';
import { subjects } from '../../protocols/subjects.ts';
import type { LegReport } from '../../protocols/messages.ts';
import { LegMessage, type LegReportBatch } from '../../protocols/leg-batch.ts';
import type { Bus } from '../../src/runtime/bus.ts';

function fakeBus() {
  const sent: { subject: string; rep: LegReport; kind: 'pub' | 'req' }[] = [];
  const bus = {
    publish: (subject: string, _codec: unknown, rep: LegReport) => void sent.push({ subject, rep, kind: 'pub' }),
    request: (subject: string, _c: unknown, rep: LegReport) => (sent.push({ subject, rep, kind: 'req' }), Promise.resolve({ v: 1, id: rep.id })),
  };
  return { sent, bus: bus as unknown as Bus };
}
const turn = () => new Promise<void>((r) => setImmediate(r));
const held = () => new Promise<void>((r) => setTimeout(r, LEG_REPORT_HOLD_MS + 5));
const first = (id: string): LegReport => ({ v: 1, id, phase: 'first_token', firstTokenMs: 5 });
const timing = { tokens: 4, tbtSum: 3, tbtMax: 1, tbtN: 3, firstMs: 5 };

describe('leg reports', () => {
  it('while reports come often: held past the end of the turn, for LEG_REPORT_HOLD_MS, then published together in their order', async () => {
    const { sent, bus } = fakeBus();
    // reports published a moment ago (the clock stands still meanwhile)
    const now = vi.spyOn(systemClock, 'now').mockReturnValue(1_000_000);
    legReport(bus, 'i0', first('z'));
    flushLegReports(bus);
    sent.length = 0;
    legReport(bus, 'i1', first('a'));
    endReport(bus, 0, 'i2', 'b', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 1.5 });
    legReport(bus, 'i1', { v: 1, id: 'c', phase: 'started' });
    now.mockRestore();
    expect(sent).toEqual([]);
    await turn();
    // the turn's end does not publish them: the legs that start or end in the next ms share their write
    expect(sent).toEqual([]);
    legReport(bus, 'i3', { v: 1, id: 'd', phase: 'started' });
    await held();
    expect(sent.map((s) => [s.subject, s.rep.id, s.rep.phase])).toEqual([
      [subjects.instanceLeg('i1'), 'a', 'first_token'],
      [subjects.instanceLeg('i2'), 'b', 'end'],
      [subjects.instanceLeg('i1'), 'c', 'started'],
      [subjects.instanceLeg('i3'), 'd', 'started'],
    ]);
    expect(sent[1]!.rep).toMatchObject({ outcome: 'ok', completionTokens: 4, promptTokens: 8, engineEnergyJ: 1.5, firstTokenMs: 5 });
    await held();
    expect(sent).toHaveLength(4);
  });

  it('after a quieter spell: published at the end of the turn with the turn\'s others, no timer armed', async () => {
    const { sent, bus } = fakeBus();
    const timers = vi.spyOn(systemClock, 'setTimeout');
    try {
      legReport(bus, 'i1', first('a'));
      endReport(bus, 0, 'i2', 'b', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 1.5 });
      expect(sent).toEqual([]);
      await turn();
      expect(sent.map((s) => [s.subject, s.rep.id, s.rep.phase])).toEqual([
        [subjects.instanceLeg('i1'), 'a', 'first_token'],
        [subjects.instanceLeg('i2'), 'b', 'end'],
      ]);
      // nothing waits on a timer to wake the loop for them
      expect(timers).not.toHaveBeenCalled();
    } finally {
      timers.mockRestore();
    }
  });

  it('are published at once at the bound, and before an end that asks for a reply', async () => {
    const { sent, bus } = fakeBus();
    for (let i = 0; i < LEG_REPORT_BATCH - 1; i++) legReport(bus, 'i1', first(`r${i}`));
    expect(sent).toHaveLength(0);
    legReport(bus, 'i1', first('last'));
    expect(sent).toHaveLength(LEG_REPORT_BATCH);
    legReport(bus, 'i1', first('y'));
    legReport(bus, 'i1', first('x'));
    await endReport(bus, 100, 'i1', 'x', 'ok', timing as never, undefined);
    // the held reports go first; x's first token not at all: its end, asked as a request, carries its time
    expect(sent.slice(-2).map((s) => [s.rep.id, s.rep.phase, s.kind])).toEqual([['y', 'first_token', 'pub'], ['x', 'end', 'req']]);
    expect(sent[sent.length - 1]!.rep.firstTokenMs).toBe(5);
    flushLegReports(bus);
    await held();
    expect(sent).toHaveLength(LEG_REPORT_BATCH + 2);
  });

  it('join the leg\'s report still held: a short credited leg is one message with its first token and end', async () => {
    const { sent, bus } = fakeBus();
    const req = { v: 1, id: 'c', model: 'm', kind: 'completion', inputTokens: 8, maxTokens: 4, arrivalMs: 1, giveUpAtMs: 2, streamSubject: subjects.stream('c'), direct: true } as const;
    const credited = { req, gateway: 'gw-0', epoch: 3, joins: true };
    creditedReport(bus, 'i1', 'c', credited as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    legReport(bus, 'i2', { v: 1, id: 'o', phase: 'started' });
    legReport(bus, 'i1', first('c'));
    endReport(bus, 0, 'i1', 'c', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 1.5 }, { recycled: true });
    // another leg's started and first token, then its end: the end alone, in the started one's place
    legReport(bus, 'i2', first('o'));
    endReport(bus, 0, 'i2', 'o', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 0.5 });
    // a leg whose end is out already: a later report of it is its own message
    legReport(bus, 'i1', { v: 1, id: 'c', phase: 'started' });
    await held();
    expect(sent.map((s) => [s.subject, s.rep.id, s.rep.phase, s.kind])).toEqual([
      [subjects.instanceLeg('i1'), 'c', 'credited', 'pub'],
      [subjects.instanceLeg('i2'), 'o', 'end', 'pub'],
      [subjects.instanceLeg('i1'), 'c', 'started', 'pub'],
    ]);
    expect(sent[0]!.rep).toMatchObject({
      request: req, credit: { gateway: 'gw-0', epoch: 3 }, outcome: 'ok', firstTokenMs: 5, tbtSumMs: 3, tbtMaxMs: 1, tbtN: 3, completionTokens: 4, promptTokens: 8, engineEnergyJ: 1.5,
      recycled: true, // the end kept its seat (policy creditRecycle): the joined report says so
    });
    expect(sent[1]!.rep).toMatchObject({ outcome: 'ok', firstTokenMs: 5, completionTokens: 4, engineEnergyJ: 0.5 });
    expect(sent[1]!.rep.recycled).toBeUndefined();
  });

  it('keep a credited report alone where the lending instance did not say it reads a joined one (CreditLoan.joins: an older instance)', async () => {
    const { sent, bus } = fakeBus();
    const req = { v: 1, id: 'c', model: 'm', kind: 'completion', inputTokens: 8, maxTokens: 4, arrivalMs: 1, giveUpAtMs: 2, streamSubject: subjects.stream('c'), direct: true } as const;
    creditedReport(bus, 'i1', 'c', { req, gateway: 'gw-0', epoch: 3 } as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    legReport(bus, 'i1', first('c'));
    endReport(bus, 0, 'i1', 'c', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 1.5 });
    await held();
    // the first token's report gives way to the end (which carries its time), as for any leg; the credited one stays alone
    expect(sent.map((s) => [s.rep.id, s.rep.phase])).toEqual([['c', 'credited'], ['c', 'end']]);
    expect(sent[0]!.rep.outcome).toBeUndefined();
    expect(sent[0]!.rep.firstTokenMs).toBeUndefined();
    expect(sent[1]!.rep).toMatchObject({ outcome: 'ok', firstTokenMs: 5, completionTokens: 4, engineEnergyJ: 1.5 });
  });

  it('to an instance whose loan says `batches`: the window\'s reports to it as one LegReportBatch, in their order; to another, each alone', async () => {
    const { sent, bus } = fakeBus();
    const req = (id: string) => ({ v: 1, id, model: 'm', kind: 'completion', inputTokens: 8, maxTokens: 4, arrivalMs: 1, giveUpAtMs: 2, streamSubject: subjects.stream(id), direct: true }) as const;
    // i1 lent on a loan with batches (a newer instance), i2 without (an older one)
    creditedReport(bus, 'i1', 'a', { req: req('a'), gateway: 'gw-0', epoch: 3, joins: true, batches: true } as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    endReport(bus, 0, 'i1', 'z', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 0.5 });
    creditedReport(bus, 'i2', 'b', { req: req('b'), gateway: 'gw-0', epoch: 5, joins: true } as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    legReport(bus, 'i2', first('y'));
    legReport(bus, 'i1', first('a'));
    creditedReport(bus, 'i1', 'c', { req: req('c'), gateway: 'gw-0', epoch: 3, joins: true, batches: true } as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    await held();
    expect(sent.map((s) => s.subject)).toEqual([subjects.instanceLeg('i2'), subjects.instanceLeg('i2'), subjects.instanceLeg('i1')]);
    expect(sent.slice(0, 2).map((s) => [s.rep.id, s.rep.phase])).toEqual([['b', 'credited'], ['y', 'first_token']]);
    const batch = sent[2]!.rep as unknown as LegReportBatch;
    // a's first token joined its credited report; z's end (a leg of no credit) rides in the batch, in its place
    expect(batch.reports.map((r) => [r.id, r.phase])).toEqual([['a', 'credited'], ['z', 'end'], ['c', 'credited']]);
    expect(batch.reports[0]).toMatchObject({ firstTokenMs: 5, request: req('a') });
    // what the instance decodes on its leg subject: the batch, checked
    expect(LegMessage.check(batch)).toEqual(batch);
    expect(() => LegMessage.check({ v: 1, reports: [] })).toThrow(/LegReportBatch/);
    // the next window holds one report for i1: it goes alone, a LegReport as ever
    creditedReport(bus, 'i1', 'd', { req: req('d'), gateway: 'gw-0', epoch: 3, joins: true, batches: true } as never, { url: 'http://e', apiKey: 'k' }, undefined, 100, undefined);
    await held();
    expect(sent.slice(3).map((s) => [s.subject, s.rep.id, s.rep.phase])).toEqual([[subjects.instanceLeg('i1'), 'd', 'credited']]);
  });
});
