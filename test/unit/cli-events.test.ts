import { describe, expect, it } from 'vitest';
import { formatEvent, parseKinds, parseSince } from '../../src/cli/commands/events.ts';
import { formatTelemetry } from '../../src/cli/commands/telemetry.ts';

describe('dynamollm events / telemetry arguments and lines', () => {
  it('--since: durations back from now, sequences, ISO times; anything else is a usage error', () => {
    const now = 1_000_000_000_000;
    expect(parseSince('1h', now)).toEqual({ since: now - 3_600_000 });
    expect(parseSince('30m', now)).toEqual({ since: now - 1_800_000 });
    expect(parseSince('2d', now)).toEqual({ since: now - 172_800_000 });
    expect(parseSince('42', now)).toEqual({ fromSeq: 42 });
    expect(parseSince('2026-12-03T10:00:00Z', now)).toEqual({ since: Date.parse('2026-12-03T10:00:00Z') });
    expect(() => parseSince('0')).toThrow(/start at 1/);
    expect(() => parseSince('yesterday')).toThrow(/duration/);
  });

  it('--kind: known kinds only', () => {
    expect(parseKinds('clock,scale')).toEqual(['clock', 'scale']);
    expect(parseKinds(undefined)).toBeUndefined();
    expect(() => parseKinds('clock,nonsense')).toThrow(/nonsense/);
  });

  it('readable lines on a terminal, JSON lines otherwise', () => {
    const m = { seq: 7, time: new Date(5000), subject: 'dyn.v1.evt.clock.i0', value: { v: 1 as const, kind: 'clock' as const, actor: 'i0', atMs: 5000, summary: '1410 -> 1980 MHz', decision: {}, inputs: {} } };
    expect(formatEvent(m, false)).toContain('#7');
    expect(formatEvent(m, false)).toContain('1410 -> 1980 MHz');
    expect(JSON.parse(formatEvent(m, true))).toMatchObject({ seq: 7, kind: 'clock', subject: 'dyn.v1.evt.clock.i0' });
    const c = { subject: 'dyn.v1.tel.cluster', value: { v: 1 as const, leader: 'cm-0', pools: 1, instances: 2, readyInstances: 2, gpus: 8, freeGpus: 4, powerW: 812.4, energyJ: 12_345, queued: 0, running: 3, loadByType: { SS: 1.5 }, sentMs: 0 } };
    expect(formatTelemetry(c, false)).toMatch(/cluster .*812 W .*12\.3 kJ/);
    expect(JSON.parse(formatTelemetry(c, true))).toMatchObject({ subject: 'dyn.v1.tel.cluster', powerW: 812.4 });
    // a power sum holding an instance's old reading (its GPU read failed) says how much; the instance, how old
    expect(formatTelemetry({ ...c, value: { ...c.value, stalePowerW: 400 } }, false)).toMatch(/812 W \(400 W of it stale\)/);
    const i = {
      subject: 'dyn.v1.tel.inst.i0',
      value: { v: 1 as const, id: 'i0', pool: 'p', tp: 2, gpus: [0, 1], clockMhz: 1980, maxClockMhz: 1980, powerW: 400, energyJ: 900, energySource: 'modelled' as const, queued: 0, running: 0, loadByType: {}, state: 'restarting', sentMs: 0 },
    };
    expect(formatTelemetry(i, false)).not.toMatch(/stale|old/);
    expect(formatTelemetry({ ...i, value: { ...i.value, gpuStaleMs: 3000 } }, false)).toMatch(/400 W \(GPU read failed: 3 s old\)/);
  });
});
