/**
 * The gateway's leg reports (actors/gateway/leg-reports.ts): held for LEG_REPORT_HOLD_MS (past the event-loop turn)
 * and published together, in their order; at once when LEG_REPORT_BATCH are held; before an end report that asks for
 * a reply.
 */
import { describe, expect, it } from 'vitest';
import { LEG_REPORT_BATCH, endReport, flushLegReports, legReport } from '../../actors/gateway/legs.ts';
import { LEG_REPORT_HOLD_MS } from '../../actors/gateway/leg-reports.ts';
import { subjects } from '../../protocols/subjects.ts';
import type { LegReport } from '../../protocols/messages.ts';
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
  it('are held past the end of the turn, for LEG_REPORT_HOLD_MS, then published together in their order', async () => {
    const { sent, bus } = fakeBus();
    legReport(bus, 'i1', first('a'));
    endReport(bus, 0, 'i2', 'b', 'ok', timing as never, { promptTokens: 8, completionTokens: 4, energyJoules: 1.5 });
    legReport(bus, 'i1', { v: 1, id: 'c', phase: 'started' });
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

  it('are published at once at the bound, and before an end that asks for a reply', async () => {
    const { sent, bus } = fakeBus();
    for (let i = 0; i < LEG_REPORT_BATCH - 1; i++) legReport(bus, 'i1', first(`r${i}`));
    expect(sent).toHaveLength(0);
    legReport(bus, 'i1', first('last'));
    expect(sent).toHaveLength(LEG_REPORT_BATCH);
    legReport(bus, 'i1', first('x'));
    await endReport(bus, 100, 'i1', 'x', 'ok', timing as never, undefined);
    expect(sent.slice(-2).map((s) => [s.rep.id, s.rep.phase, s.kind])).toEqual([['x', 'first_token', 'pub'], ['x', 'end', 'req']]);
    flushLegReports(bus);
    await held();
    expect(sent).toHaveLength(LEG_REPORT_BATCH + 2);
  });
});
