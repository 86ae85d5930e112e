/**
 * `dynamollm simulate` arguments: a synthetic trace is drawn over its whole days, and --start-s / --duration-s window
 * it as they window a trace file; --speed (a trace file's) is refused with a usage error, not ignored.
 */
import { describe, expect, it } from 'vitest';
import { synthTraceOf } from '../../src/cli/commands/simulate.ts';
import { recordSource } from '../../src/sim/index.ts';
import type { TraceRecord } from '../../src/sim/trace.ts';

describe('dynamollm simulate: synthetic trace arguments', () => {
  const defaults = { startS: '0', speed: '1' };

  it('builds the synthetic trace from SHAPE:DAYS:RPS', () => {
    expect(synthTraceOf('synth:conversation:1:5', defaults, 3)).toMatchObject({ kind: 'synth', shape: 'conversation', durationS: 86_400, meanRps: 5, seed: 3 });
  });

  it('windows the synthetic days with --start-s and --duration-s; refuses --speed', () => {
    expect(synthTraceOf('synth:conversation:1:5', { ...defaults, startS: '32400', durationS: '10800' }, 1)).toMatchObject({ kind: 'synth', durationS: 86_400, startMs: 32_400_000, durationMs: 10_800_000 });
    expect(synthTraceOf('synth:conversation:1:5', defaults, 1)).not.toHaveProperty('startMs');
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, startS: '86400' }, 1)).toThrow(/--start-s must be >= 0 and within/);
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, durationS: '0' }, 1)).toThrow(/--duration-s must be > 0/);
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, speed: '2' }, 1)).toThrow(/--speed: for a trace file only/);
    expect(() => synthTraceOf('synth:weekly:1:5', defaults, 1)).toThrow(/shape must be/);
    // zero or negative days (or rate) is named as the synthetic trace's, not as a --start-s outside it
    expect(() => synthTraceOf('synth:conversation:0:1', defaults, 1)).toThrow(/synthetic trace 'synth:conversation:0:1': DAYS must be > 0 .*got 0/);
    expect(() => synthTraceOf('synth:conversation:-1:1', defaults, 1)).toThrow(/DAYS must be > 0/);
    expect(() => synthTraceOf('synth:conversation:1:0', defaults, 1)).toThrow(/RPS must be > 0 .*got 0/);
  });

  it("a window holds the whole days' own requests in it, their times from the window's start", async () => {
    const src = { kind: 'synth' as const, shape: 'conversation' as const, durationS: 86_400, meanRps: 0.5, seed: 4 };
    const read = async (x: typeof src & { startMs?: number; durationMs?: number }): Promise<TraceRecord[]> => {
      const records = await recordSource(x);
      return [...(records() as Iterable<TraceRecord>)];
    };
    const all = await read(src);
    const win = await read({ ...src, startMs: 3_600_000, durationMs: 1_800_000 });
    const want = all.filter((x) => x.tMs >= 3_600_000 && x.tMs < 5_400_000).map((x) => ({ ...x, tMs: x.tMs - 3_600_000 }));
    expect(want.length).toBeGreaterThan(100);
    expect(win).toEqual(want);
  });
});
