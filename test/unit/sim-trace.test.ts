import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTrace, loadTrace, parseTimestampMs, synthTrace, shapeMultipliers, TraceFormatError } from '../../src/sim/trace.ts';

const dir = mkdtempSync(join(tmpdir(), 'simtrace-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('trace parsing', () => {
  it('reads the Azure 2023 conversation trace fully (last line without newline)', async () => {
    const recs = await loadTrace('data/traces/AzureLLMInferenceTrace_conv.csv');
    expect(recs.length).toBe(19366);
    expect(recs[0]).toEqual({ tMs: 0, inputTokens: 374, outputTokens: 44 });
    expect(recs[1].tMs).toBeCloseTo(4314.579, 3); // 18:15:50.9951690 - 18:15:46.6805900
    const last = recs[recs.length - 1];
    expect(last.inputTokens).toBe(197);
    expect(last.tMs / 60000).toBeGreaterThan(58);
  });

  it('handles 2024 timestamps with a zone suffix, and time windows', async () => {
    const p = file('t24.csv', 'TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.009930+00:00,10,5\n2024-05-10 02:00:01.009930+02:00,20,6\n2024-05-10 00:00:02.5+00:00,30,7\n');
    const recs = await loadTrace(p);
    expect(recs.map((r) => Math.round(r.tMs))).toEqual([0, 1000, 2490]);
    const win = await loadTrace(p, { startMs: 500, durationMs: 1000, rebase: true });
    expect(win).toEqual([{ tMs: 0, inputTokens: 20, outputTokens: 6 }]);
    expect(parseTimestampMs('2023-11-16 18:15:46.6805900') % 1000).toBeCloseTo(680.59, 2);
  });

  it('reads JSONL with seconds or ISO timestamps', async () => {
    const p = file('t.jsonl', '{"timestamp": 10.5, "input_length": 100, "output_length": 20}\n{"timestamp": 12, "input_length": 5, "output_length": 1}\n');
    expect(await loadTrace(p)).toEqual([
      { tMs: 0, inputTokens: 100, outputTokens: 20 },
      { tMs: 1500, inputTokens: 5, outputTokens: 1 },
    ]);
  });

  it('rejects bad rows with the line number, or counts them with skipBad', async () => {
    const p = file('bad.csv', 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.00,abc,44\n2023-11-16 18:15:48.00,1,2\n');
    await expect(loadTrace(p)).rejects.toThrow(/bad\.csv:3: bad ContextTokens 'abc'/);
    await expect(loadTrace(p)).rejects.toBeInstanceOf(TraceFormatError);
    const stats = { rows: 0, skipped: 0 };
    const recs = await loadTrace(p, { skipBad: true, stats });
    expect(recs.length).toBe(2);
    expect(stats).toEqual({ rows: 3, skipped: 1 });
    const h = file('hdr.csv', 'a,b,c\n1,2,3\n');
    await expect(loadTrace(h)).rejects.toThrow(/hdr\.csv:1: expected a header/);
  });

  it('streams: limit stops early', async () => {
    let n = 0;
    for await (const _ of readTrace('data/traces/AzureLLMInferenceTrace_code.csv', { limit: 10 })) n++;
    expect(n).toBe(10);
  });
});

describe('synthetic traces', () => {
  it('conversation shape: peak = 1.7x avg = 3.3x valley over a week', () => {
    const m = shapeMultipliers('conversation', 7 * 86400);
    const avg = m.reduce((a, b) => a + b, 0) / m.length;
    const peak = Math.max(...m);
    const valley = Math.min(...m);
    expect(avg).toBeCloseTo(1, 3);
    expect(peak / avg).toBeCloseTo(1.7, 2);
    expect(peak / valley).toBeCloseTo(3.3, 2);
    const c = shapeMultipliers('coding', 7 * 86400);
    expect(Math.max(...c) / Math.min(...c)).toBeCloseTo(34.6, 1);
  });

  it('Poisson arrivals follow the shape and the mean rate, deterministically per seed', () => {
    const lengths = [{ tMs: 0, inputTokens: 7, outputTokens: 3 }];
    const a = [...synthTrace({ durationS: 2 * 86400, meanRps: 0.5, shape: 'conversation', lengthsFrom: lengths, seed: 1 })];
    const b = [...synthTrace({ durationS: 2 * 86400, meanRps: 0.5, shape: 'conversation', lengthsFrom: lengths, seed: 1 })];
    expect(a.length).toBe(b.length);
    expect(a.length / (2 * 86400)).toBeGreaterThan(0.45);
    expect(a.length / (2 * 86400)).toBeLessThan(0.55);
    expect(a.every((r) => r.inputTokens === 7 && r.outputTokens === 3)).toBe(true);
    // hourly counts: busiest hour well above the quietest
    const perHour = new Array(48).fill(0);
    for (const r of a) perHour[Math.floor(r.tMs / 3.6e6)]++;
    expect(Math.max(...perHour) / Math.min(...perHour)).toBeGreaterThan(2.5);
    for (let i = 1; i < a.length; i++) expect(a[i].tMs).toBeGreaterThanOrEqual(a[i - 1].tMs);
  });
});
