/**
 * `dynamollm replay` types and judges its requests by the cluster's own SLOs and class thresholds (the config's
 * `slo:` and `thresholds:`), as the cluster's gateway types them and its instances schedule them; Table IV without
 * them. The endpoint is a local node:http server that streams each completion's one token after ~40 ms.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localEndpoint } from '../helpers/net.ts';
import { replayTrace } from '../../src/telemetry/replay.ts';
import { DEFAULT_SLO_SETTINGS, type SloSettings } from '../../src/policy/slo.ts';

let endpoint: Awaited<ReturnType<typeof localEndpoint>>;
let url: string;

beforeAll(async () => {
  endpoint = await localEndpoint((rq, rs) => {
    if (rq.url !== '/v1/completions') return void rs.writeHead(404).end();
    rs.writeHead(200, { 'content-type': 'text/event-stream' });
    setTimeout(() => {
      rs.write(`data: ${JSON.stringify({ choices: [{ text: 'a' }], usage: { completion_tokens: 1 } })}\n\n`);
      rs.end('data: [DONE]\n\n');
    }, 40);
  });
  url = endpoint.url;
});

afterAll(() => endpoint.close());

// the conversation trace's first 5 rows: prompts of 374-1,000 tokens, answers of 44-400 (Table IV: S or M input)
const run = (slo?: SloSettings) => replayTrace({ trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', url, model: 'm', limit: 5, speed: 1e6, ...(slo ? { slo } : {}) });

describe('replay judged by the cluster config', () => {
  it("Table IV by default: every ~40 ms first token is within its type's TTFT SLO", async () => {
    const s = await run();
    expect(s.ok).toBe(5);
    for (const t of s.perType) {
      expect(t.ttftSloMs).toBe(DEFAULT_SLO_SETTINGS.slo.ttftMs[t.type[0] as 'S' | 'M' | 'L']);
      expect(t.sloAttainment).toBe(1);
    }
  }, 20_000);

  it("a config's tighter TTFT SLO and its thresholds: the requests are typed and judged by them", async () => {
    // every prompt and answer past 10 tokens is L: one type, LL; a 20-ms TTFT SLO no ~40 ms first token meets
    const slo: SloSettings = {
      slo: { ttftMs: { S: 20, M: 20, L: 20 }, tbtMs: 100 },
      thresholds: { input: { S: 5, M: 10, L: 1_000_000 }, output: { S: 5, M: 10 } },
    };
    const s = await run(slo);
    expect(s.ok).toBe(5);
    expect(s.perType.map((t) => t.type)).toEqual(['LL']);
    expect(s.perType[0]).toMatchObject({ ttftSloMs: 20, tbtSloMs: 100, sloAttainment: 0, p99MeetsSlo: false });
  }, 20_000);

  it("a prompt past 8,192 tokens is judged by its own TTFT SLO (the L class's pace), for its attainment and the type's p99", async () => {
    // 40,960-token prompts: their own SLO is 5 x the type's flat 100 ms (500 ms), which a first token 150 ms after the
    // request's ~250 KB body meets and the flat SLO does not; 350 ms left for the body's transfer on a loaded host
    // (200-310 ms of it at load 20 on 2 cores)
    const slow = await localEndpoint((rq, rs) => {
      rs.writeHead(200, { 'content-type': 'text/event-stream' });
      setTimeout(() => {
        rs.write(`data: ${JSON.stringify({ choices: [{ text: 'a' }], usage: { completion_tokens: 1 } })}\n\n`);
        rs.end('data: [DONE]\n\n');
      }, 150);
    });
    try {
      const trace = join(mkdtempSync(join(tmpdir(), 'dyn-replay-slo-')), 'long.csv');
      writeFileSync(trace, ['TIMESTAMP,ContextTokens,GeneratedTokens', ...[0, 1, 2].map((i) => `2023-11-16 18:15:4${i}.0000000,40960,20`)].join('\n') + '\n');
      const slo: SloSettings = { slo: { ttftMs: { S: 100, M: 100, L: 100 }, tbtMs: 100 }, thresholds: DEFAULT_SLO_SETTINGS.thresholds };
      const s = await replayTrace({ trace, url: slow.url, model: 'm', speed: 1e6, slo: { ...slo, thresholds: { ...slo.thresholds, input: { ...slo.thresholds.input, L: 100_000 } } } });
      expect(s.ok).toBe(3);
      expect(s.perType).toHaveLength(1);
      expect(s.perType[0]).toMatchObject({ type: 'LS', ttftSloMs: 100, sloAttainment: 1, p99MeetsSlo: true });
      expect(s.perType[0]!.ttftP99Ms!).toBeGreaterThan(100);
    } finally {
      await slow.close();
    }
  }, 20_000);
});
