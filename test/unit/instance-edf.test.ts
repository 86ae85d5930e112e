/**
 * The SLO travels with the request: classification sets its type, SLO and TTFT deadline, and the instance's
 * emergency reorder (AdmissionQueue.reorder, emergency step 1) is earliest-TTFT-deadline-first across types.
 * With the gateway's give-up time as the sort key (the same 600 s for every request) the reorder was FIFO.
 */
import { describe, it, expect } from 'vitest';
import { AdmissionQueue } from '../../actors/common/admission-queue.ts';
import { defaultConfig } from '../../actors/common/config.ts';
import { classified, withSlo } from '../../actors/common/policy.ts';
import { subjects, type InferenceRequest } from '../../protocols/index.ts';
import { emergencyStep, initialEmergencyState } from '../../src/policy/emergency.ts';

const T0 = 1_700_000_000_000;
/** a request as the gateway builds it: arrival now, give-up time 600 s later. */
function fromGateway(id: string, arrivalMs: number, inputTokens: number, maxTokens: number): InferenceRequest {
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens, maxTokens, arrivalMs, giveUpAtMs: arrivalMs + 600_000, streamSubject: subjects.stream(id) };
}

describe('the SLO travels with the request', () => {
  const c = defaultConfig();

  it('classification sets the type, its SLO and the TTFT deadline', () => {
    const r = withSlo(fromGateway('a', T0, 2000, 400), 'LL', c);
    expect(r.type).toBe('LL');
    expect(r.slo).toEqual({ ttftMs: c.slo.ttftMs.L, tbtMs: c.slo.tbtMs });
    expect(r.ttftDeadlineMs).toBe(T0 + c.slo.ttftMs.L);
    expect(r.giveUpAtMs).toBe(T0 + 600_000);
    // a request admitted without classification is classified once, at the instance
    const d = classified(fromGateway('b', T0, 10, 20), c);
    expect(d.type).toBe('SS');
    expect(d.ttftDeadlineMs).toBe(T0 + c.slo.ttftMs.S);
    expect(classified(r, c)).toBe(r);
  });

  it('the emergency reorder is earliest TTFT deadline first, not arrival order', () => {
    const q = new AdmissionQueue(16);
    // a long prompt first (TTFT SLO 2 s), then two short ones (250 ms, 400 ms) a little later
    const long = withSlo(fromGateway('long', T0, 4000, 400), 'LL', c);
    const short = withSlo(fromGateway('short', T0 + 100, 50, 50), 'SS', c);
    const medium = withSlo(fromGateway('medium', T0 + 50, 500, 50), 'MS', c);
    q.push({ req: long, admittedMs: T0 });
    q.push({ req: medium, admittedMs: T0 + 50 });
    q.push({ req: short, admittedMs: T0 + 100 });
    q.reorder();
    expect(q.ids()).toEqual(['short', 'medium', 'long']);
    // after the reorder new arrivals go in by deadline too
    q.push({ req: withSlo(fromGateway('short2', T0 + 150, 50, 50), 'SS', c), admittedMs: T0 + 150 });
    expect(q.ids()).toEqual(['short', 'short2', 'medium', 'long']);
    q.fifo();
    expect(q.ids()).toEqual(['long', 'medium', 'short', 'short2']);
  });

  it("the ladder's reorder action orders by the TTFT deadline the request carries", () => {
    const reqs = [withSlo(fromGateway('long', T0, 4000, 400), 'LL', c), withSlo(fromGateway('short', T0 + 100, 50, 50), 'SS', c)];
    const { actions } = emergencyStep(initialEmergencyState(T0), {
      nowMs: T0 + 200, queue: reqs.map((r) => ({ id: r.id, arrivalMs: r.arrivalMs, ttftDeadlineMs: r.ttftDeadlineMs, type: r.type })),
      clockMhz: 1980, maxClockMhz: 1980, predictedMissCount: 1, peersWithCapacity: 0,
    }, { rejectAfterMs: 10_000 });
    expect(actions.find((a) => a.kind === 'reorder')).toMatchObject({ order: ['short', 'long'] });
  });
});
