/**
 * The twin check's readings of the live `up` log (test/bench/twin.bench.ts): the data path's time to the engine
 * (admissionAgeOf: the median age of the live instance managers' admissions after the replay's start, their debug
 * log, moved requests left out; nothing at info level) and the live GPUs' clock change time (clockApplyOf: the median
 * applyMs of the clock events, info level).
 */
import { describe, it, expect } from 'vitest';
import { admissionAgeOf, clockApplyOf } from '../bench/twin.bench.ts';

const line = (time: number, ageMs: number, moves = 0, admission = 'credited_start') =>
  JSON.stringify({ level: 20, time, actor: 'instance', id: 'pool-all-n0-g0x1', admission, rid: `r${time}`, type: 'SS', inputTokens: 90, moves, ageMs, taken: true, msg: 'admission' });

describe('twin check: the live admissions\' age', () => {
  it('is the median over the admissions after the replay\'s start, first admissions only', () => {
    const log = [
      line(900, 40), // before the replay's start (the readiness probe)
      '{"level":20,"time":1001,"msg":"status","id":"x"}',
      line(1001, 3), line(1002, 9, 0, 'admit'), line(1003, 2), line(1004, 5),
      line(1006, 200, 1), // a moved request: its age counts its first instance's time
      'not json',
    ].join('\n');
    // [2, 3, 5, 9]: 3; with the readiness probe's or the moved request's age counted, [2, 3, 5, 9, 40 or 200]: 5
    expect(admissionAgeOf(log, 1000)).toBe(3);
    // an even count: the lower middle
    expect(admissionAgeOf([line(1001, 3), line(1002, 9)].join('\n'), 1000)).toBe(3);
  });

  it('is undefined without admissions (an info-level log)', () => {
    expect(admissionAgeOf('{"level":30,"time":1001,"msg":"pool-all-n0-g0x1: clock 1980 -> 795 MHz"}\n', 1000)).toBeUndefined();
  });
});

describe('twin check: the live clock changes\' time', () => {
  const clock = (time: number, applyMs?: number) =>
    JSON.stringify({ level: 30, time, actor: 'instance', id: 'pool-all-n0-g0x1', event: 'clock', decision: { clockMhz: 795, from: 1980 }, inputs: { pool: 'pool-all', tp: 1, ...(applyMs !== undefined ? { applyMs } : {}) }, msg: 'pool-all-n0-g0x1: clock 1980 -> 795 MHz (least power ...)' });

  it('is the median applyMs of the clock events', () => {
    expect(clockApplyOf([clock(1, 2), line(2, 50), clock(3, 9), clock(4, 1), clock(5), 'x'].join('\n'))).toBe(2);
  });

  it('is undefined when no clock event carries it', () => {
    expect(clockApplyOf([clock(1), line(2, 3)].join('\n'))).toBeUndefined();
  });
});
