/**
 * `dynamollm simulate` arguments: a synthetic trace runs its days whole, so the flags that window a trace file are
 * refused with a usage error, not ignored.
 */
import { describe, expect, it } from 'vitest';
import { synthTraceOf } from '../../src/cli/commands/simulate.ts';

describe('dynamollm simulate: synthetic trace arguments', () => {
  const defaults = { startS: '0', speed: '1' };

  it('builds the synthetic trace from SHAPE:DAYS:RPS', () => {
    expect(synthTraceOf('synth:conversation:1:5', defaults, 3)).toMatchObject({ kind: 'synth', shape: 'conversation', durationS: 86_400, meanRps: 5, seed: 3 });
  });

  it('refuses --duration-s, --start-s and --speed, which window a trace file only', () => {
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, durationS: '1200' }, 1)).toThrow(/--duration-s: for a trace file only/);
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, startS: '46800' }, 1)).toThrow(/--start-s: for a trace file only/);
    expect(() => synthTraceOf('synth:conversation:1:5', { ...defaults, speed: '2' }, 1)).toThrow(/--speed: for a trace file only/);
    expect(() => synthTraceOf('synth:conversation:1:5', { startS: '60', speed: '1', durationS: '60' }, 1)).toThrow(/--duration-s, --start-s:/);
    expect(() => synthTraceOf('synth:weekly:1:5', defaults, 1)).toThrow(/shape must be/);
  });
});
