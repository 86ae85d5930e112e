/**
 * The instance manager's credited short legs (docs/DATAPATH.md "The instance manager per short request"): the real
 * InstanceManager on an in-memory bus and a ManualClock (test/helpers/instance-in-memory.ts), fed batches of credited
 * reports that carry their leg's first token and end, as the gateway joins a short leg's reports.
 * - Each leg is recorded once, its energy the engine's figure to the joule, its TTFT, TBT and SLO verdict from its
 *   report; none is left running.
 * - The legs' give-up sweep (LEG_SWEEP_MS) is one interval armed while legs may be due: legs that start and end within
 *   one report arm no timer of their own; the sweep disarms once none is due, and still ends a leg its gateway never
 *   reports the end of, at its give-up time plus 5 s.
 */
import { describe, expect, it } from 'vitest';
import { LEG_SWEEP_MS } from '../../actors/instance-manager/direct-legs.ts';
import type { LegReport } from '../../protocols/index.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { creditedShortLeg, inMemoryInstance } from '../helpers/instance-in-memory.ts';

describe('instance manager: credited short legs', () => {
  it('records each leg exactly and arms no give-up timer per leg', async () => {
    const clock = new ManualClock();
    const armed: unknown[] = [];
    const cleared: unknown[] = [];
    const setInterval = clock.setInterval.bind(clock), clearInterval = clock.clearInterval.bind(clock);
    clock.setInterval = (fn, ms) => {
      const h = setInterval(fn, ms);
      if (ms === LEG_SWEEP_MS) armed.push(h);
      return h;
    };
    clock.clearInterval = (h) => {
      if (armed.includes(h)) cleared.push(h);
      clearInterval(h);
    };
    const inst = await inMemoryInstance({ clock });
    // the instance's own 1-s timers (its telemetry's): not the legs'
    armed.length = 0;

    // 30 legs in 10 batches of 3, 5 ms apart: every third over its TTFT SLO (an SS request's: 250 ms)
    const sent: LegReport[] = [];
    for (let b = 0; b < 10; b++) {
      const reports = [0, 1, 2].map((k) => {
        const i = 3 * b + k;
        return creditedShortLeg(inst.config, `leg-${String(i).padStart(4, '0')}`, clock.now() - 400, { ttftMs: k === 2 ? 300 : 20 + i, tbtMeanMs: 0.5 + i / 100, energyJ: 0.25 + i / 8 });
      });
      sent.push(...reports);
      inst.leg({ v: 1, reports });
      expect(inst.im.running).toBe(0);
      clock.advance(5);
    }
    expect(inst.records.map((r) => r.id)).toEqual(sent.map((r) => r.id));
    for (const [i, rec] of inst.records.entries()) {
      const rep = sent[i]!;
      expect(rec).toMatchObject({
        outcome: 'ok', type: 'SS', pool: 'pool-all', instance: 'i0', promptTokens: 8, completionTokens: 4,
        energyJ: rep.engineEnergyJ, energySource: 'modelled', ttftMs: rep.firstTokenMs! - rep.request!.arrivalMs,
        tbtMeanMs: rep.tbtSumMs! / rep.tbtN!, tbtMaxMs: rep.tbtMaxMs, sloMet: i % 3 !== 2, model: 'llama3.1-8b',
      });
    }
    // one interval for the 30 legs, armed by the first
    expect(armed).toHaveLength(1);
    expect(cleared).toHaveLength(0);
    // the first sweep with no leg due disarms it
    clock.advance(LEG_SWEEP_MS);
    expect(cleared).toEqual(armed);

    // a leg whose gateway never reports its end: the interval is armed again, and the sweep ends the leg at its
    // give-up time (at least 1 s away) plus 5 s
    const open = creditedShortLeg(inst.config, 'leg-open', clock.now(), {});
    const { outcome: _o, firstTokenMs: _f, ...credited } = open;
    inst.leg({ v: 1, reports: [{ ...credited, request: { ...credited.request!, giveUpAtMs: clock.now() + 2000 } }] });
    expect(inst.im.running).toBe(1);
    expect(armed).toHaveLength(2);
    await clock.advanceAsync(2000 + 5000 - LEG_SWEEP_MS, 100);
    expect(inst.im.running).toBe(1);
    await clock.advanceAsync(2 * LEG_SWEEP_MS, 100);
    expect(inst.im.running).toBe(0);
    expect(inst.records.at(-1)).toMatchObject({ id: 'leg-open', outcome: 'failed', completionTokens: 0 });
    const stopped = inst.im.stop(0);
    await clock.advanceAsync(500, 10);
    await stopped;
  });
});
