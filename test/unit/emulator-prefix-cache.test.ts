/**
 * The emulator's automatic prefix caching (vLLM --enable-prefix-caching): a prompt's full 16-token blocks stay
 * cached, a later prompt with the same leading blocks prefills only the rest (its modelled TTFT is shorter), and
 * /metrics counts vLLM v1's vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total in tokens, which
 * parseVllmMetrics reads, and with `name[]` (the instance manager's scrape) only those two families. Off (the default), a repeated prompt costs the same and nothing is a hit. (Time scale 20:
 * an idle engine starts a step when the request comes, so a TTFT on the modelled timeline is its steps alone.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { parseVllmMetrics, parseVllmPrefixCache } from '../../src/engine/metrics-parse.ts';
import { promptBlockHashes } from '../../src/engine/prefix-cache.ts';
import { PREFIX_CACHE_METRICS } from '../../src/engine/vllm.ts';

const MODEL = 'llama2-70b';
let em: EmulatorServer | undefined;
afterEach(async () => {
  await em?.close();
  em = undefined;
});

async function start(enablePrefixCaching: boolean): Promise<string> {
  em = new EmulatorServer({ perf: createPerfModel(MODEL, 'h100'), tp: 4, timeScale: 20, servedModelName: MODEL, enablePrefixCaching });
  return `http://127.0.0.1:${await em.listen(0)}`;
}

/** one completion of these prompt token ids; its modelled TTFT (the emulator's TTFT histogram grows by it) and the counters after it. */
async function complete(base: string, prompt: number[]): Promise<{ ttftS: number; queries?: number; hits?: number }> {
  const before = parseVllmMetrics(await (await fetch(`${base}/metrics`)).text()).ttft!.sum;
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt, max_tokens: 2, ignore_eos: true }) });
  expect(r.status).toBe(200);
  await r.json();
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = parseVllmMetrics(text);
  // the instance manager's reading of the same text (only the two counters' lines)
  expect(parseVllmPrefixCache(text)).toEqual(m.prefixCache);
  // and of what it fetches: only those two families (`name[]`, as prometheus_client filters vLLM's /metrics)
  const lean = await (await fetch(`${base}${PREFIX_CACHE_METRICS}`)).text();
  expect(parseVllmPrefixCache(lean)).toEqual(m.prefixCache);
  expect(lean.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.slice(0, l.indexOf('{')))).toEqual(['vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total']);
  expect(lean.length * 10).toBeLessThan(text.length);
  return { ttftS: m.ttft!.sum - before, queries: m.prefixCache?.queries, hits: m.prefixCache?.hits };
}

const ids = (n: number, from = 1000) => Array.from({ length: n }, (_, i) => from + i);

describe('emulator prefix caching', () => {
  it('a repeated 3,000-token prompt hits its 187 cached blocks and prefills 8 tokens: counters in tokens, TTFT far shorter', async () => {
    const base = await start(true);
    const p = ids(3000);
    const first = await complete(base, p);
    expect(first).toMatchObject({ queries: 3000, hits: 0 });
    const again = await complete(base, p);
    // 187 full blocks of 16 = 2,992 tokens cached (whole blocks within the first 2,999: vLLM computes the last prompt token)
    expect(again).toMatchObject({ queries: 6000, hits: 2992 });
    expect(again.ttftS).toBeLessThan(first.ttftS * 0.25);
    // a prompt sharing the first 1,600 tokens then differing: 100 blocks hit, the rest prefilled
    const fork = await complete(base, [...p.slice(0, 1600), ...ids(1400, 90_000)]);
    expect(fork).toMatchObject({ queries: 9000, hits: 2992 + 1600 });
    expect(fork.ttftS).toBeGreaterThan(again.ttftS);
    expect(fork.ttftS).toBeLessThan(first.ttftS);
  });

  it('off (the default): the same prompt costs the same, the counters are exposed at 0', async () => {
    const base = await start(false);
    const p = ids(3000);
    const first = await complete(base, p);
    const again = await complete(base, p);
    expect(again).toMatchObject({ queries: 0, hits: 0 });
    expect(Math.abs(again.ttftS - first.ttftS)).toBeLessThan(first.ttftS * 0.02);
  });

  it('sleep drops the cache (vLLM discards the KV cache)', async () => {
    const base = await start(true);
    const p = ids(2000);
    await complete(base, p);
    expect((await fetch(`${base}/sleep`, { method: 'POST' })).status).toBe(200);
    expect((await fetch(`${base}/wake_up`, { method: 'POST' })).status).toBe(200);
    expect(await complete(base, p)).toMatchObject({ queries: 4000, hits: 0 });
  });
});

describe('promptBlockHashes', () => {
  it('full blocks only, chained: equal hashes up to the first differing block, different after it', () => {
    const a = promptBlockHashes(ids(70), 16);
    expect(a).toHaveLength(4);
    const b = promptBlockHashes([...ids(40), 7, ...ids(29, 2000)], 16);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]).not.toBe(a[2]);
    expect(b[3]).not.toBe(a[3]);
    expect(new Set(a).size).toBe(4);
    for (const h of a) expect(Number.isSafeInteger(h)).toBe(true);
    expect(() => promptBlockHashes(ids(3), 0)).toThrow(RangeError);
  });
});
