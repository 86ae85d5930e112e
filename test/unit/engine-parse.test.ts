import { describe, expect, it } from 'vitest';
import { histogramQuantile, parsePrometheusText, parseVllmMetrics, parseVllmPrefixCache } from '../../src/engine/metrics-parse.ts';
import { MetricsParseError } from '../../src/engine/errors.ts';
import { SseParser, sseData } from '../../src/engine/sse.ts';
import { parseEvent } from '../../src/engine/vllm.ts';
import { EngineStreamError } from '../../src/engine/errors.ts';
import { outputLength, tokenText } from '../../src/engine/emulator/text.ts';
import { decodeTokens, encodeChat, encodeText } from '../../src/engine/emulator/tokenizer.ts';
import llama from 'llama-tokenizer-js';

const VLLM = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{model_name="m"} 1234.0
vllm:prompt_tokens_created{model_name="m"} 1.7e9
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 99
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 4
vllm:request_success_total{finished_reason="length",model_name="m"} 6
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 2
vllm:time_to_first_token_seconds_bucket{le="0.5",model_name="m"} 8
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="m"} 2.5
vllm:time_to_first_token_seconds_count{model_name="m"} 10
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.05",model_name="m"} 90
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 90
vllm:time_per_output_token_seconds_sum{model_name="m"} 2.7
vllm:time_per_output_token_seconds_count{model_name="m"} 90
python_gc_objects_collected_total{generation="0"} 1.5e+04 1700000000000
`;

describe('Prometheus / vLLM metrics parsing', () => {
  it('reads vLLM metrics, including older names and counters declared with or without _total', () => {
    const m = parseVllmMetrics(VLLM);
    expect(m).toMatchObject({ numRequestsRunning: 3, numRequestsWaiting: 2, kvCacheUsage: 0.25, promptTokensTotal: 1234, generationTokensTotal: 99, requestSuccessTotal: 10 });
    expect(m.ttft).toEqual({ buckets: [{ le: 0.1, count: 2 }, { le: 0.5, count: 8 }, { le: Infinity, count: 10 }], sum: 2.5, count: 10 });
    expect(m.itl?.count).toBe(90);
    // median: rank 5 falls in (0.1, 0.5] with 6 observations -> 0.1 + 0.4 * 3/6
    expect(histogramQuantile(m.ttft!, 0.5)).toBeCloseTo(0.3, 9);
    expect(m.families.get('python_gc_objects_collected_total')?.samples[0].value).toBe(15000);
  });

  it('parses label escapes', () => {
    const f = parsePrometheusText('x{a="q\\"u\\\\o\\nte",b="2"} 1\n');
    expect(f.get('x')!.samples[0].labels).toEqual({ a: 'q"u\\o\nte', b: '2' });
  });

  it.each([
    ['<html>oops</html>\n', /bad sample name/],
    ['vllm:num_requests_running{model_name="x" 1\n', /expected ',' or '}'|unterminated/],
    ['vllm:num_requests_running{model_name=x} 1\n', /must be quoted/],
    ['vllm:num_requests_running 1 2 3\n', /value \[timestamp\]/],
    ['vllm:num_requests_running abc\n', /bad value 'abc'/],
    ['# TYPE x bogus\n', /bad type 'bogus'/],
  ])('rejects malformed text %j', (text, re) => {
    expect(() => parsePrometheusText(text)).toThrow(MetricsParseError);
    expect(() => parsePrometheusText(text)).toThrow(re);
  });

  it('requires the vLLM load gauges', () => {
    expect(() => parseVllmMetrics('up 1\n')).toThrow(/vllm:num_requests_running/);
  });
});

describe("vLLM's prefix-cache counters read alone (parseVllmPrefixCache)", () => {
  const typed = `# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 4096.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 1024.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9
# HELP vllm:prefix_cache_hits Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 2048.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 512.0
`;
  const texts: [string, string][] = [
    ['no prefix-cache counters', VLLM],
    ['counters declared without _total, samples with it, two label sets, _created lines', VLLM + typed],
    ['counters before the other families', typed + VLLM],
    ['no TYPE lines', VLLM + 'vllm:prefix_cache_queries_total{model_name="m"} 300\nvllm:prefix_cache_hits_total{model_name="m"} 100 1700000000000\n'],
    ['untyped samples without _total', VLLM + 'vllm:prefix_cache_queries 30\nvllm:prefix_cache_hits 10\n'],
    ['only the queries', VLLM + '# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries_total 30\n'],
    ['declared, no samples yet', VLLM + '# TYPE vllm:prefix_cache_queries counter\n# TYPE vllm:prefix_cache_hits counter\n'],
    ['names inside label values and a } in one', VLLM + 'other{a="vllm:prefix_cache_hits_total 5"} 1\nvllm:prefix_cache_queries_total{a="}\\" 9",b="x"} 7\nvllm:prefix_cache_hits_total{a="vllm:prefix_cache_queries_total"} 3\n'],
    ['no final newline', VLLM + 'vllm:prefix_cache_queries_total 8\nvllm:prefix_cache_hits_total 2'],
  ];
  it.each(texts)('gives what the whole parse gives: %s', (_, text) => {
    expect(parseVllmPrefixCache(text)).toEqual(parseVllmMetrics(text).prefixCache);
  });

  it('reads the counters of the typed text', () => {
    expect(parseVllmPrefixCache(VLLM + typed)).toEqual({ queries: 5120, hits: 2560 });
  });

  it.each([
    ['vllm:prefix_cache_queries_total abc\nvllm:prefix_cache_hits_total 1\n', /line 1: bad value 'abc'/],
    ['vllm:prefix_cache_queries_total 1\nvllm:prefix_cache_hits_total{a="x" 1\n', /line 2: unterminated label set/],
    ['vllm:prefix_cache_queries_total 1 2 3\nvllm:prefix_cache_hits_total 1\n', /value \[timestamp\]/],
  ])('rejects a bad line of these families %j', (text, re) => {
    expect(() => parseVllmPrefixCache(text)).toThrow(MetricsParseError);
    expect(() => parseVllmPrefixCache(text)).toThrow(re);
  });
});

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

describe('SSE reader', () => {
  it('reassembles events split across chunks, with CRLF framing and comments', async () => {
    const out: string[] = [];
    for await (const d of sseData(streamOf(['data: {"a"', ':1}\r\n\r\n: keep-alive\n\nda', 'ta: [DONE]\n\n', 'data: partial']))) out.push(d);
    expect(out).toEqual(['{"a":1}', '[DONE]']);
  });

  it('keeps a UTF-8 character split across reads whole, joins multi-line data and ignores other fields', () => {
    const bytes = Buffer.from('event: x\ndata: {"t":"é€"}\r\n\r\ndata: a\ndata: b\n\nid: 7\n\ndata: tail');
    const p = new SseParser();
    const out: string[] = [];
    // every split point, one byte at a time
    for (let i = 0; i < bytes.length; i++) p.push(bytes.subarray(i, i + 1), out);
    expect(out).toEqual(['{"t":"é€"}', 'a\nb']);
  });
});

describe('engine SSE events', () => {
  it('reads text, chat deltas, usage, and the emulator\'s multi-token events', () => {
    expect(parseEvent('{"choices":[{"text":" a","finish_reason":null}]}', false, 3)).toEqual({ text: ' a', tokenIndex: 3 });
    expect(parseEvent('{"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}', true, 0)).toBeNull();
    expect(parseEvent('{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"energy_joules":1.5}}', false, 2))
      .toEqual({ text: '', tokenIndex: 2, usage: { promptTokens: 4, completionTokens: 2, energyJoules: 1.5 } });
    expect(parseEvent('{"choices":[{"text":" a b c","finish_reason":"length"}],"dynamollm_token_offsets_ms":[0,20.5,41]}', false, 1))
      .toEqual({ text: ' a b c', tokenIndex: 1, finishReason: 'length', stopReason: null, tokens: 3, tokenOffsetsMs: [0, 20.5, 41] });
    // the response fields besides text come back as the engine sent them
    expect(parseEvent('{"choices":[{"text":" x","logprobs":{"tokens":[" x"],"token_logprobs":[-0.5],"top_logprobs":[{" x":-0.5}],"text_offset":[0]},"finish_reason":"stop","stop_reason":"END"}]}', false, 0))
      .toEqual({ text: ' x', tokenIndex: 0, finishReason: 'stop', stopReason: 'END', logprobs: { tokens: [' x'], token_logprobs: [-0.5], top_logprobs: [{ ' x': -0.5 }], text_offset: [0] } });
    expect(parseEvent('{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}', true, 0))
      .toEqual({ text: '', tokenIndex: 0, toolCalls: [{ index: 0, id: 't1', type: 'function', function: { name: 'f', arguments: '' } }] });
    expect(parseEvent('{"choices":[{"delta":{"content":"","reasoning_content":"hmm"},"finish_reason":null}]}', true, 0)).toEqual({ text: '', tokenIndex: 0, reasoning: 'hmm' });
    // a malformed offsets field is ignored (the event counts as one token), not trusted
    expect(parseEvent('{"choices":[{"text":" a b"}],"dynamollm_token_offsets_ms":[0,"x"]}', false, 0)).toEqual({ text: ' a b', tokenIndex: 0 });
    expect(() => parseEvent('{"error":{"message":"boom"}}', false, 0)).toThrow(EngineStreamError);
    expect(() => parseEvent('not json', false, 0)).toThrow(EngineStreamError);
  });
});

describe('emulator tokenizer and text', () => {
  it("counts tokens with Llama's BPE and draws output lengths within bounds", () => {
    // Llama's BPE (llama-tokenizer-js): BOS + pieces; cutting at whitespace gives the ids of the whole text
    expect(encodeText('Hello world')).toEqual([1, 15043, 3186]);
    const prose = 'The quick brown fox   jumps\n\nover the lazy dog. Ünïcödé 日本語 😀 x'.repeat(3);
    expect(encodeText(prose)).toEqual(llama.encode(prose));
    expect(decodeTokens(encodeText(prose))).toBe(prose);
    expect(encodeChat([{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }])).toEqual(encodeText('[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]'));
    expect(tokenText(1, 5, 3)).toBe(tokenText(1, 5, 3));
    expect(tokenText(1, 5, 3)).toMatch(/^ \w+$/);
    expect(outputLength(1, 1, 50, 0, true)).toBe(50);
    const lens = Array.from({ length: 200 }, (_, i) => outputLength(7, i, 1000, 10, false));
    expect(Math.min(...lens)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...lens)).toBeLessThanOrEqual(1000);
    const meanLen = lens.reduce((s, x) => s + x, 0) / lens.length;
    expect(meanLen).toBeGreaterThan(180);
    expect(meanLen).toBeLessThan(340);
  });
});
