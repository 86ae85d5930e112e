/**
 * What asking an engine for continuous usage (vLLM's stream_options.continuous_usage_stats: the usage so far on every
 * event) costs the gateway per streamed event: the CPU time of reading one plain text event of vLLM's shape (the
 * engine client's path: its SSE framing, src/engine/sse.ts, from the bytes in 16 KiB reads, then the skeleton scan of
 * src/engine/sse-event.ts TextEventScanner, else the full JSON.parse), for
 *   plain           an event without usage (what the gateway asks for without continuous usage)
 *   usage-scanned   an event ending in the usage so far, scanned, the usage kept unparsed (usageJson)
 *   usage-parsed    the same event through JSON.parse (a reader that parses every event)
 * and the one parse of the last usage a leg needs when it breaks (continuousUsage). Medians of 7 rounds of 200,000
 * events each, ns per event, on this process's CPU.
 *   npx tsx scripts/continuous-usage-cost.ts
 */
import { continuousUsage, parseEvent, TextEventScanner } from '../src/engine/sse-event.ts';
import { SseParser } from '../src/engine/sse.ts';

const WORDS = [' the', ' power', ' of', ' a', ' model', ' is', ' in', ' its', ' data', ','];
const head = '{"id":"cmpl-5f0e8a","object":"text_completion","created":1733300000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"text":';
const plain = (t: string) => `${head}${JSON.stringify(t)},"logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`;
const usage = (t: string, n: number) => `${head}${JSON.stringify(t)},"logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":2000,"total_tokens":${2000 + n},"completion_tokens":${n},"prompt_tokens_details":null}}`;
const N = 200_000;
const plainEvents = Array.from({ length: N }, (_, i) => plain(WORDS[i % WORDS.length]!));
const usageEvents = Array.from({ length: N }, (_, i) => usage(WORDS[i % WORDS.length]!, i + 1));

/** the stream's bytes as its reads give them (16 KiB each). */
const readsOf = (events: string[]) => {
  const all = Buffer.from(events.map((e) => `data: ${e}\n\n`).join(''));
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += 16_384) out.push(all.subarray(i, i + 16_384));
  return out;
};
const plainReads = readsOf(plainEvents);
const usageReads = readsOf(usageEvents);

function scanned(reads: Buffer[]): number {
  const s = new TextEventScanner(false);
  const sse = new SseParser();
  let sink = 0, n = 0, learnt = false;
  const t0 = process.hrtime.bigint();
  for (const r of reads) {
    const events: string[] = [];
    sse.push(r, events);
    for (const e of events) {
      if (!learnt) {
        s.learn(e, parseEvent(e, false, 0));
        learnt = true;
      }
      sink += s.scan(e, n++)?.text.length ?? -1e9;
    }
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink < 0) throw new Error('an event left the fast path');
  return ns;
}
function parsed(reads: Buffer[]): number {
  const sse = new SseParser();
  let sink = 0, n = 0;
  const t0 = process.hrtime.bigint();
  for (const r of reads) {
    const events: string[] = [];
    sse.push(r, events);
    for (const e of events) sink += parseEvent(e, false, n++)?.text.length ?? 0;
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink === 0) throw new Error('nothing parsed');
  return ns;
}
const median = (f: () => number) => {
  const xs = Array.from({ length: 7 }, f).sort((a, b) => a - b);
  return xs[3]!;
};
const last = usageEvents.at(-1)!;
const json = last.slice(last.lastIndexOf('"usage":') + 8, -1);
const once = median(() => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) if (!continuousUsage(json)) throw new Error('not a usage');
  return Number(process.hrtime.bigint() - t0) / 10_000;
});
const rows = { plain: median(() => scanned(plainReads)), 'usage-scanned': median(() => scanned(usageReads)), 'usage-parsed': median(() => parsed(usageReads)), 'continuousUsage (once per break)': once };
for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(34)} ${v.toFixed(0).padStart(6)} ns`);
