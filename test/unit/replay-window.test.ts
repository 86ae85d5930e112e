/**
 * `dynamollm replay` (src/telemetry/replay.ts) over a window that starts into the trace (`startS`, `--start`): it sends
 * the trace's records from there, the reader's own window, with their times from the window's first row; and each
 * request's result carries its token gaps (`tbtMs`, the twin check's per-request TBT): an event that brings k tokens
 * adds its gap and k - 1 gaps of 0. The endpoint is a local node:http server streaming three text events (usage 1, 2
 * and 4 tokens) 150 ms apart (gaps wide enough that a loaded host does not read two events in one read).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localEndpoint } from '../helpers/net.ts';
import { replayTrace, type ReplayRequestResult } from '../../src/telemetry/replay.ts';
import { readTrace } from '../../src/sim/trace.ts';

const TRACE = 'data/traces/AzureLLMInferenceTrace_conv.csv';
let endpoint: Awaited<ReturnType<typeof localEndpoint>>;
let url: string;

beforeAll(async () => {
  endpoint = await localEndpoint((rq, rs) => {
    if (rq.url !== '/v1/completions') {
      rs.writeHead(404).end();
      return;
    }
    rs.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (tokens: number) => `data: ${JSON.stringify({ choices: [{ text: 'x' }], usage: { completion_tokens: tokens } })}\n\n`;
    rs.write(ev(1));
    setTimeout(() => {
      rs.write(ev(2));
      setTimeout(() => rs.end(ev(4) + 'data: [DONE]\n\n'), 150);
    }, 150);
  });
  url = endpoint.url;
});

afterAll(() => endpoint.close());

describe('replay of a window into the trace', () => {
  it("sends the reader's records from startS, timed from the window's first row, each result with its token gaps", async () => {
    const want: { tMs: number; inputTokens: number }[] = [];
    for await (const r of readTrace(TRACE, { startMs: 120_000, durationMs: 3_000 })) want.push({ tMs: r.tMs, inputTokens: r.inputTokens });
    const first: { tMs: number; inputTokens: number }[] = [];
    for await (const r of readTrace(TRACE, { durationMs: 3_000 })) first.push({ tMs: r.tMs, inputTokens: r.inputTokens });
    expect(want.length).toBeGreaterThan(3);
    // the window is not the trace's first seconds
    expect(want.map((x) => x.inputTokens)).not.toEqual(first.map((x) => x.inputTokens));
    const got: ReplayRequestResult[] = [];
    const s = await replayTrace({ trace: TRACE, url, model: 'm', startS: 120, durationS: 3, speed: 1e6, onResult: (r) => got.push(r) });
    expect(s).toMatchObject({ sent: want.length, ok: want.length });
    got.sort((a, b) => a.traceMs - b.traceMs || a.inputTokens - b.inputTokens);
    const exp = want.map((x) => ({ traceMs: x.tMs - want[0]!.tMs, inputTokens: x.inputTokens })).sort((a, b) => a.traceMs - b.traceMs || a.inputTokens - b.inputTokens);
    expect(got.map((r) => ({ traceMs: r.traceMs, inputTokens: r.inputTokens }))).toEqual(exp);
    for (const r of got) {
      expect(r.tbtMs).toHaveLength(3);
      expect(r.tbtMs[0]).toBeGreaterThan(15);
      expect(r.tbtMs[1]).toBeGreaterThan(15);
      expect(r.tbtMs[2]).toBe(0);
    }
  }, 30_000);

  it('a window start before the trace, or not a number, is refused', async () => {
    for (const startMs of [-1000, Number.NaN]) {
      await expect(async () => {
        for await (const _ of readTrace(TRACE, { startMs })) break;
      }).rejects.toThrow(/window start must be a number >= 0/);
    }
  });
});
