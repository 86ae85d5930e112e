/**
 * The twin check's readings of the live `up` log (test/bench/twin.bench.ts): the data path's time to the engine
 * (admissionAgeOf: the median age of the live instance managers' admissions after the replay's start, their debug
 * log, moved requests left out; nothing at info level) and the live GPUs' clock change time (clockApplyOf: the median
 * applyMs of the clock events, info level), and the time to and from the engine (engineHopOf: the instance managers'
 * 'leg first token' lines matched with their engines' relayed 'first token' lines, debug level), and the time from the
 * client's send to the gateway's arrival stamp (gatewayInOf: the gateway's 'request arrival' lines matched by request id
 * with the replay's sends by response id, debug level).
 */
import { describe, it, expect } from 'vitest';
import { admissionAgeOf, clockApplyOf, engineHopOf, gatewayInOf, simPathToEngine } from '../bench/twin.bench.ts';

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

describe('twin check: the live time to and from the engine', () => {
  // as the instance manager logs them: its leg's first token (gateway's arrival stamp, its start, the gateway's read),
  // its engine's line relayed, and an admission on a credit
  const leg = (rid: string, arrivalMs: number, startedMs: number, firstTokenMs: number) =>
    JSON.stringify({ level: 20, time: firstTokenMs + 1, actor: 'instance', id: 'pool-all-n0-g0x1', rid, arrivalMs, startedMs, firstTokenMs, msg: 'leg first token' });
  const engine = (rid: string, receivedMs: number, firstTokenMs: number) =>
    JSON.stringify({ level: 20, time: Math.round(firstTokenMs) + 1, actor: 'instance', id: 'pool-all-n0-g0x1', stream: 'stdout', line: JSON.stringify({ level: 20, time: Math.round(firstTokenMs), name: 'engine-emulator', event: 'first_token', rid, receivedMs, firstTokenMs, msg: 'first token' }), msg: 'engine output' });
  const credit = (rid: string, time: number) => JSON.stringify({ level: 20, time, actor: 'instance', id: 'pool-all-n0-g0x1', admission: 'credited_start', rid, type: 'SS', moves: 0, ageMs: 9, taken: true, msg: 'admission' });

  it('the medians over the requests started after the replay\'s start, matched by request id', () => {
    const log = [
      leg('probe', 900, 905, 990), engine('probe', 960, 980), // before the replay's start: left out
      // started by their instances: the engine takes them after the start
      leg('a', 1000, 1004, 1100), engine('a', 1010.5, 1099.25), // to the engine 10.5, in 6.5, out 0.75
      leg('b', 1010, 1012, 1200), engine('b', 1019, 1198), // 9, 7, 2
      // on a credit: in its engine before its instance hears of it
      credit('c', 1030), leg('c', 1020, 1030, 1300), engine('c', 1026, 1299.5), // 6, -4, 0.5
      leg('d', 1040, 1045, 1400), // no engine line: left out
      engine('e', 1100, 1150), // no leg line: left out
      '{"level":20,"time":1500,"actor":"instance","stream":"stdout","line":"not json","msg":"engine output"}',
      'not json',
    ].join('\n');
    // to the engine [6, 9, 10.5]: 9; in [-4, 6.5, 7]: 6.5; out [0.5, 0.75, 2]: 0.75; the path's: c alone (a and b
    // have no admission line: how long they waited is not known)
    expect(engineHopOf(log, 1000)).toEqual({ toEngineMs: 9, inMs: 6.5, outMs: 0.75, pathMs: 6, n: 3, credited: 1, queued: 0 });
  });

  // an instance's admission of a request, ageMs after its gateway's arrival stamp
  const admit = (rid: string, time: number, ageMs: number, moves = 0) => JSON.stringify({ level: 20, time, actor: 'instance', id: 'pool-all-n0-g0x1', admission: 'admit', rid, type: 'SS', moves, ageMs, taken: true, msg: 'admission' });

  it('leaves a live queue\'s wait out of the path\'s time to the engine', () => {
    const log = [
      // admitted 1 ms after arrival and started at once: 1 ms to the instance, 1.5 from its start to the engine
      admit('a', 1001, 1), leg('a', 1000, 1001, 1100), engine('a', 1002.5, 1099),
      // admitted 1 ms after arrival, waited 800 ms in the queue, then 1.5 ms to the engine: its path 2.5, not 802.5
      admit('b', 1011, 1), leg('b', 1010, 1811, 1900), engine('b', 1812.5, 1899),
      admit('c', 1021, 1), leg('c', 1020, 1841, 1950), engine('c', 1842.5, 1949),
      // moved once: its last instance admitted it 30 ms after arrival and started it 10 ms later
      admit('d', 1031, 1), admit('d', 1060, 30, 1), leg('d', 1030, 1070, 1200), engine('d', 1071.5, 1199),
    ].join('\n');
    // to the engine [2.5, 41.5, 802.5, 822.5]: 41.5 (the queues' waits); the path's [2.5, 2.5, 2.5, 31.5]: 2.5
    expect(engineHopOf(log, 1000)).toEqual({ toEngineMs: 41.5, inMs: 1.5, outMs: 1, pathMs: 2.5, n: 4, credited: 0, queued: 3 });
  });

  it('is not taken as the simulation\'s path to the engine with a queue\'s wait in it', () => {
    // a window whose live instances queued most requests 827 ms: its simulated requests take the path's 2.5 ms, 1 to
    // the instance and 1.5 from its start to the engine (the simulated instance machines queue by themselves)
    const queuedHop = { toEngineMs: 828.19, inMs: 1.46, outMs: 2.02, pathMs: 2.5, n: 3987, credited: 1438, queued: 2400 };
    expect(simPathToEngine(1, queuedHop)).toEqual({ toEngineMs: 1, startToEngineMs: 1.5 });
    // without the admissions' lines: the instance's start to the engine after the admissions' age
    const { pathMs: _, ...noPath } = queuedHop;
    expect(simPathToEngine(1, noPath)).toEqual({ toEngineMs: 1, startToEngineMs: 1.46 });
    // most requests on a credit, in their engines before their instances hear of them: the engine's time, none after
    expect(simPathToEngine(3, { toEngineMs: 1.27, inMs: -1.84, outMs: 0.47, pathMs: 1.27, n: 3652, credited: 3327, queued: 0 })).toEqual({ toEngineMs: 1.27, startToEngineMs: 0 });
    // no engine timings (info level): the admissions' age
    expect(simPathToEngine(3, undefined)).toEqual({ toEngineMs: 3, startToEngineMs: 0 });
  });

  it('is undefined without the engines\' lines (an info-level log, or an engine that logs none)', () => {
    expect(engineHopOf([leg('a', 1000, 1004, 1100), credit('a', 1004)].join('\n'), 1000)).toBeUndefined();
    expect(engineHopOf('', 1000)).toBeUndefined();
  });
});

describe('twin check: the live time before the gateway\'s arrival stamp', () => {
  const arrival = (rid: string, receivedMs: number, arrivalMs: number) => JSON.stringify({ level: 20, time: arrivalMs, actor: 'gateway', rid, receivedMs, arrivalMs, inputTokens: 90, msg: 'request arrival' });
  it('is the median of the stamp less the client\'s send, matched by response id, over the requests after the replay\'s start', () => {
    const log = [
      arrival('p', 900, 901), // the readiness probe, before the replay's start
      arrival('a', 1000, 1002), arrival('b', 1010, 1013), arrival('c', 1020, 1021),
      arrival('d', 1030, 1031), // no send matches it (its response never came): its receipt counts, its send cannot
      '{"level":20,"time":1040,"msg":"leg first token","rid":"a"}',
      'not json',
    ].join('\n');
    // the sends: 'cmpl-' and 'chatcmpl-' prefixed ids, sub-ms wall times; the probe's would be 899
    const sends = new Map([['cmpl-a', 999.5], ['chatcmpl-b', 1009.25], ['cmpl-c', 1018], ['cmpl-p', 899]]);
    // to the stamp: a 2.5, b 3.75, c 3 -> 3; from the receipt: a 2, b 3, c 1, d 1 -> 1 (the lower middle)
    expect(gatewayInOf(log, 1000, sends)).toEqual({ sendToStampMs: 3, receiptToStampMs: 1, n: 4, matched: 3 });
    // without the replay's sends: the gateway's own part alone
    expect(gatewayInOf(log, 1000, new Map())).toEqual({ receiptToStampMs: 1, n: 4, matched: 0 });
  });

  it('is undefined without the gateway\'s arrival lines (an info-level log)', () => {
    expect(gatewayInOf('{"level":30,"time":1001,"msg":"gateway listening"}\n', 1000, new Map([['cmpl-a', 999]]))).toBeUndefined();
  });
});
