import { describe, expect, it } from 'vitest';
import { engineSpec } from '../../src/engine/index.ts';
import { EngineConfigError } from '../../src/engine/errors.ts';
import { CALIBRATION, engineOfProfile } from '../../src/model/index.ts';

const base = { model: 'llama3.1-8b', gpu: 'h100', tp: 2, gpuIds: [0, 1], port: 0, healthDeadlineMs: 1000 };

describe('engineSpec scheduler budget', () => {
  it('passes the profile budget to the emulator and to vllm serve with the same flags', () => {
    const scheduler = { maxNumBatchedTokens: 1024, maxNumSeqs: 128 };
    for (const kind of ['emulator', 'vllm'] as const) {
      const args = engineSpec({ ...base, kind, port: kind === 'vllm' ? 8001 : 0, scheduler }).args;
      const i = args.indexOf('--max-num-batched-tokens');
      expect(i).toBeGreaterThan(0);
      expect(args[i + 1]).toBe('1024');
      expect(args[args.indexOf('--max-num-seqs') + 1]).toBe('128');
    }
  });
  it('passes --long-prefill-token-threshold to both kinds when set', () => {
    for (const kind of ['emulator', 'vllm'] as const) {
      const args = engineSpec({ ...base, kind, port: 8001, longPrefillTokenThreshold: 256 }).args;
      expect(args[args.indexOf('--long-prefill-token-threshold') + 1]).toBe('256');
      expect(engineSpec({ ...base, kind, port: 8001 }).args).not.toContain('--long-prefill-token-threshold');
    }
  });
  it("leaves the engine's own default when no budget is given, and refuses a bad one", () => {
    expect(engineSpec({ ...base, kind: 'emulator' }).args).not.toContain('--max-num-batched-tokens');
    expect(engineSpec({ ...base, kind: 'vllm', port: 8001 }).args).not.toContain('--max-num-seqs');
    expect(() => engineSpec({ ...base, kind: 'emulator', scheduler: { maxNumBatchedTokens: 0, maxNumSeqs: 256 } })).toThrow(EngineConfigError);
  });
});

describe('the emulated engine runs the model its profile came from', () => {
  it("passes the profile's engine generation to the emulator only (a real vLLM has no such flag)", () => {
    const args = engineSpec({ ...base, kind: 'emulator', calibrationEngine: 'vllm' }).args;
    expect(args[args.indexOf('--calibration-engine') + 1]).toBe('vllm');
    expect(engineSpec({ ...base, kind: 'vllm', port: 8001, calibrationEngine: 'vllm' }).args).not.toContain('--calibration-engine');
    expect(engineSpec({ ...base, kind: 'emulator' }).args).not.toContain('--calibration-engine');
  });
  it('reads the engine generation from source.engine, else from the calibration note, else the default', () => {
    const src = { kind: 'model' as const, generatedBy: 'g', date: '2026-12-03' };
    expect(engineOfProfile({ source: { ...src, engine: 'vllm-2024', calibration: "engine 'vllm'" } })).toBe('vllm-2024');
    expect(engineOfProfile({ source: { ...src, calibration: "src/model/calibration.ts engine 'vllm' (ML.ENERGY v3)" } })).toBe('vllm');
    expect(engineOfProfile({ source: src })).toBe(CALIBRATION.defaultEngine);
  });
});
