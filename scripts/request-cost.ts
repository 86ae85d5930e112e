/**
 * The gateway's per-request JavaScript for one replay-shaped request (a 2,000-token-id prompt, 200 tokens, continuous
 * usage: the real-time bench's requests), step by step on the functions the gateway runs: the body's decode and
 * JSON.parse, its validation (parseOpenAiRequest), the prompt's count, the engine call's request and its JSON, and the
 * HTTP/1.1 request's bytes. Rounds of `n` requests alternate between the two paths (`json`: JSON.parse of the whole
 * body and JSON.stringify of the engine's, as every request without a canonical id prompt takes; `ids`: parseJsonBody
 * and completionPayload). Each step runs over the round's `n` requests at once, timed in CPU time (process.cpuUsage:
 * a preempted process is not charged, as this noisy VM's wall clock would). Prints us per request of each step, the
 * median of `rounds` rounds of each path.
 *
 *   nice -n 10 npx tsx scripts/request-cost.ts [n=500] [rounds=21]
 */
import { parseOpenAiRequest } from '../actors/gateway/openai.ts';
import { parseJsonBody } from '../actors/gateway/body.ts';
import { PromptCounter } from '../actors/gateway/tokens.ts';
import { engineRequestOf } from '../actors/gateway/legs.ts';
import { completionBody, completionPayload } from '../src/engine/client.ts';
import type { InferenceRequest } from '../protocols/index.ts';

const n = Number(process.argv[2] ?? 500);
const rounds = Number(process.argv[3] ?? 21);
/** the round's path: `json`, JSON.parse of the whole body and JSON.stringify of the engine's (every request without a canonical id prompt); `ids`, parseJsonBody and completionPayload */
let old = false;
const raw = Buffer.from(JSON.stringify({
  model: 'm', prompt: Array.from({ length: 2000 }, (_, i) => 100 + i), max_tokens: 200, min_tokens: 200, ignore_eos: true,
  stream: true, stream_options: { include_usage: true, continuous_usage_stats: true },
}));
const counter = new PromptCounter(async () => ({ v: 1, ok: true, count: 0, maxModelLen: 8192 }));
counter.maxModelLen.set('m', 8192);

let sink = 0;
const bodies: unknown[] = new Array<unknown>(n);
const parsed: ReturnType<typeof parseOpenAiRequest>[] = new Array<ReturnType<typeof parseOpenAiRequest>>(n);
const payloads: string[] = new Array<string>(n);
const steps: Record<string, (i: number) => void> = {
  'decode + JSON.parse': (i) => {
    bodies[i] = (old ? JSON.parse : parseJsonBody)(raw.toString('utf8'));
  },
  validate: (i) => {
    parsed[i] = parseOpenAiRequest('completion', bodies[i]);
  },
  count: (i) => {
    sink += counter.known('m', parsed[i]!.prompt, undefined, parsed[i]!.params)!.count;
  },
  'engine request JSON': (i) => {
    const p = parsed[i]!;
    const ir: InferenceRequest = { v: 1, id: 'r', model: 'm', kind: 'completion', inputTokens: 2000, maxTokens: p.maxTokens, arrivalMs: 0, giveUpAtMs: 60_000, streamSubject: 's', prompt: p.prompt, minTokens: p.minTokens, ignoreEos: p.ignoreEos };
    const req = engineRequestOf(ir, 0, undefined, true);
    payloads[i] = old ? JSON.stringify(completionBody(req)) : completionPayload(req);
  },
  'HTTP/1.1 bytes': (i) => {
    const head = `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\ncontent-type: application/json\r\nx-request-id: r\r\nContent-Length: ${Buffer.byteLength(payloads[i]!)}\r\nConnection: keep-alive\r\n\r\n`;
    sink += Buffer.from(head + payloads[i]!).length;
  },
};

const per: Record<string, Record<string, number[]>> = { json: {}, ids: {} };
for (let r = 0; r < 2 * (rounds + 1); r++) {
  old = r % 2 === 0;
  const t: Record<string, number> = {};
  for (const [k, f] of Object.entries(steps)) {
    const a = process.cpuUsage();
    for (let i = 0; i < n; i++) f(i);
    const d = process.cpuUsage(a);
    t[k] = (d.user + d.system) / n;
  }
  if (r < 2) continue; // warm-up rounds
  for (const [k, v] of Object.entries(t)) (per[old ? 'json' : 'ids']![k] ??= []).push(v);
}
if (payloads.some((p) => p !== payloads[0]) || sink <= 0) throw new Error('the paths wrote different engine bodies');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const total = { json: 0, ids: 0 };
console.log(`${'step'.padEnd(22)} ${'json'.padStart(10)} ${'ids'.padStart(10)}`);
for (const k of Object.keys(steps)) {
  const [a, b] = [median(per.json![k]!), median(per.ids![k]!)];
  total.json += a;
  total.ids += b;
  console.log(`${k.padEnd(22)} ${a.toFixed(2).padStart(7)} us ${b.toFixed(2).padStart(7)} us`);
}
console.log(`${'total'.padEnd(22)} ${total.json.toFixed(2).padStart(7)} us ${total.ids.toFixed(2).padStart(7)} us (ids/json ${(total.ids / total.json).toFixed(2)}; body ${raw.length} bytes, engine payload ${payloads[0]!.length} bytes)`);
