/**
 * The cost of the gateway's request validation (parseOpenAiRequest) on two request bodies, for two trees of the code
 * at once: `typical` (a chat request with temperature, top_p, max_tokens, streaming with usage) and `sampling` (a
 * completion with top_k, min_p, penalties, seed, stop and logprobs). Rounds of `n` parses alternate between the trees
 * (this one and the one given as `base`, a checkout of another commit), each timed in CPU time (process.cpuUsage);
 * prints ns per parse, the median of `rounds` rounds, per tree and body, and each body's ratio tree / base.
 *
 *   nice -n 10 npx tsx scripts/param-parse-cost.ts <base tree> [n=20000] [rounds=21]
 */
import { resolve } from 'node:path';

type Parse = (kind: 'chat' | 'completion', body: unknown) => unknown;
const base = process.argv[2];
if (!base) throw new Error('usage: param-parse-cost.ts <base tree> [n] [rounds]');
const n = Number(process.argv[3] ?? 20000);
const rounds = Number(process.argv[4] ?? 21);
const load = async (dir: string): Promise<Parse> => ((await import(resolve(dir, 'actors/gateway/openai.ts'))) as { parseOpenAiRequest: Parse }).parseOpenAiRequest;
const trees: [string, Parse][] = [['this', await load(resolve(import.meta.dirname, '..'))], ['base', await load(base)]];

const bodies: Record<string, ['chat' | 'completion', () => unknown]> = {
  typical: ['chat', () => ({ model: 'm', messages: [{ role: 'user', content: 'Summarize the energy use of this cluster.' }], max_tokens: 256, temperature: 0.7, top_p: 0.9, stream: true, stream_options: { include_usage: true } })],
  sampling: ['completion', () => ({ model: 'm', prompt: 'Once upon a time', max_tokens: 64, temperature: 0.8, top_p: 0.95, top_k: 40, min_p: 0.05, presence_penalty: 0.5, frequency_penalty: 0.2, repetition_penalty: 1.1, seed: 42, stop: ['\n\n', 'END'], logprobs: 5 })],
};
// bodies are built before timing: a parse gets a fresh object as JSON.parse would give it
const samples: Record<string, unknown[]> = {};
for (const [name, [, make]] of Object.entries(bodies)) samples[name] = Array.from({ length: n }, make);

let sink = 0;
const times: Record<string, number[]> = {};
for (let r = -2; r < rounds; r++) {
  for (const [tree, parse] of r % 2 === 0 ? trees : [...trees].reverse()) {
    for (const [name, [kind]] of Object.entries(bodies)) {
      const xs = samples[name]!;
      const t0 = process.cpuUsage();
      for (let i = 0; i < n; i++) sink += parse(kind, xs[i]) === undefined ? 0 : 1;
      const d = process.cpuUsage(t0);
      if (r >= 0) (times[`${tree} ${name}`] ??= []).push(((d.user + d.system) * 1000) / n);
    }
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const name of Object.keys(bodies)) {
  const a = median(times[`this ${name}`]!), b = median(times[`base ${name}`]!);
  console.log(`${name}: this ${a.toFixed(0)} ns, base ${b.toFixed(0)} ns per parse, this / base ${(a / b).toFixed(2)}`);
}
if (sink < 0) console.log(sink);
