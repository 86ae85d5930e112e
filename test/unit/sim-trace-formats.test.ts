import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectTimeUnit, detectTraceTimeUnit, loadTrace, overContext, classifyCached, longInputClassBound, simThresholds, type TraceStats } from '../../src/sim/trace.ts';
import { DEFAULT_THRESHOLDS } from '../../src/policy/slo.ts';
import { synthPrefixTrace } from '../../src/sim/prefix-trace.ts';

const dir = mkdtempSync(join(tmpdir(), 'simtracefmt-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('time unit detection', () => {
  it('reads epoch-sized timestamps by magnitude', () => {
    expect(detectTimeUnit([1_700_000_000, 1_700_000_001]).unit).toBe('s');
    expect(detectTimeUnit([1_700_000_000_000, 1_700_000_000_300]).unit).toBe('ms');
    expect(detectTimeUnit([1_700_000_000_000_000, 1_700_000_000_300_000]).unit).toBe('us');
  });

  it('reads relative integer timestamps as the unit that gives a plausible rate', () => {
    // an hour at ~6 req/s in ms: read as seconds it would be 1000 hours at 0.006 req/s
    const ms = Array.from({ length: 1000 }, (_, i) => i * 160);
    const d = detectTimeUnit(ms);
    expect(d.unit).toBe('ms');
    expect(d.reason).toMatch(/as ms 6\.3 req\/s/);
    expect(detectTimeUnit(ms.map((t) => t * 1000)).unit).toBe('us');
    // integer seconds at 1 req/s stay seconds; fractional values are seconds
    expect(detectTimeUnit(Array.from({ length: 100 }, (_, i) => i)).unit).toBe('s');
    expect(detectTimeUnit([0, 0.5, 1.25, 3.5]).unit).toBe('s');
  });
});

describe('public trace shapes', () => {
  it('reads Mooncake-style JSONL (ms timestamps, input_length, output_length, hash_ids) and says which unit it chose', async () => {
    const p = file('mc.jsonl', jsonl([
      { timestamp: 0, input_length: 6755, output_length: 500, hash_ids: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] },
      { timestamp: 3000, input_length: 7319, output_length: 490, hash_ids: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14] },
      { timestamp: 3500, input_length: 200, output_length: 20, hash_ids: [99] },
    ]));
    const stats: TraceStats = { rows: 0, skipped: 0 };
    const recs = await loadTrace(p, { stats });
    expect(stats.timeUnit).toBe('ms');
    expect(stats.timeUnitReason).toMatch(/^auto: integer timestamps/);
    expect(recs.map((r) => r.tMs)).toEqual([0, 3000, 3500]);
    expect(recs[1].hashIds).toHaveLength(15);
    expect(recs[2]).toEqual({ tMs: 3500, inputTokens: 200, outputTokens: 20, hashIds: [99] });
    // the same file read as seconds (what a fixed seconds reading did): 1000x longer
    const s = await loadTrace(p, { timeUnit: 's' });
    expect(s[2].tMs).toBe(3_500_000);
    expect((await detectTraceTimeUnit(p))?.unit).toBe('ms');
  });

  it('accepts the field names public traces use, and BurstGPT CSV', async () => {
    const p = file('alias.jsonl', jsonl([{ arrival_time: 1.5, prompt_tokens: 10, completion_tokens: 5 }, { time: 2.0, input_tokens: 11, output_tokens: 6 }]));
    expect(await loadTrace(p)).toEqual([{ tMs: 0, inputTokens: 10, outputTokens: 5 }, { tMs: 500, inputTokens: 11, outputTokens: 6 }]);
    const b = file('burst.csv', 'Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n45,ChatGPT,1087,254,1341,Conversation log\n');
    expect(await loadTrace(b)).toEqual([{ tMs: 0, inputTokens: 472, outputTokens: 18 }, { tMs: 40_000, inputTokens: 1087, outputTokens: 254 }]);
    await expect(loadTrace(file('badh.jsonl', jsonl([{ timestamp: 0, input_length: 1, output_length: 1, hash_ids: ['x'] }])))).rejects.toThrow(/hash_ids/);
  });

  it('refuses prompt + output over the context, and classifies long prompts as L on a long-context model', () => {
    expect(overContext({ inputTokens: 130_000, outputTokens: 1_000 }, 131_072)).toBe(false);
    expect(overContext({ inputTokens: 130_500, outputTokens: 1_000 }, 131_072)).toBe(true);
    expect(classifyCached(20_000, 50)).toBeNull(); // the paper's classes end at 8192
    expect(classifyCached(20_000, 50, simThresholds(DEFAULT_THRESHOLDS, 131_072))).toBe('LS');
    expect(simThresholds(DEFAULT_THRESHOLDS, 131_072).inputUpper).toEqual({ S: 256, M: 1024, L: 131_072 });
    expect(longInputClassBound(4096)).toBe(8192);
  });

  it('the synthetic long-context trace has the public trace shape: ms timestamps, long prompts, prefix reuse', () => {
    const rows = [...synthPrefixTrace({ durationS: 1200, sessionsPerS: 0.1, seed: 5 })];
    expect(rows.length).toBeGreaterThan(100);
    expect(rows.every((r, i) => Number.isInteger(r.timestamp) && (i === 0 || r.timestamp >= rows[i - 1].timestamp))).toBe(true);
    const mean = rows.reduce((a, r) => a + r.input_length, 0) / rows.length;
    expect(mean).toBeGreaterThan(4000);
    // every prompt's ids cover its length in 512-token blocks; a later turn repeats an earlier turn's blocks
    for (const r of rows) if (r.input_length <= 131_072) expect(r.hash_ids.length).toBe(Math.ceil(r.input_length / 512));
    const seen = new Set<number>();
    let reused = 0;
    for (const r of rows) for (const h of r.hash_ids) {
      if (seen.has(h)) reused++;
      else seen.add(h);
    }
    expect(reused).toBeGreaterThan(0);
  });
});
