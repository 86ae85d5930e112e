/**
 * `dynamollm replay --trace FILE [--speed X] [--limit N] [--duration S] [--json OUT] [--url URL]`:
 * plays a trace (Azure LLM inference CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, or JSONL
 * `timestamp,input_length,output_length`) against the gateway with open-loop arrivals, shows a progress
 * bar and prints a summary (src/telemetry/replay.ts). Exit code 0 when every request is accounted for.
 */
import { writeFileSync } from 'node:fs';
import { parse, num, req } from '../args.ts';
import { formatSummary, replayTrace, type ReplayProgress } from '../../telemetry/replay.ts';

export const summary = 'replay a request trace against the gateway and summarise latency, SLOs and energy';

const USAGE = `usage: dynamollm replay --trace FILE [options]
  --trace FILE        Azure LLM inference CSV or JSONL (shipped: data/traces/AzureLLMInferenceTrace_conv.csv)
  --url URL           endpoint (default http://127.0.0.1:8000)
  --api-key KEY       Bearer key (default env DYNAMOLLM_API_KEY or OPENAI_API_KEY)
  --model ID          model id (default: the first of /v1/models)
  --speed X           arrival-rate multiplier (default 1)
  --limit N           at most N requests
  --duration S        only the first S seconds of trace time
  --time-scale K      the cluster engines' time-scale: latencies are multiplied by K for SLO checks (default 1)
  --max-inflight N    client-side bound of requests in flight (default 4096)
  --json OUT          also write the summary as JSON`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    trace: { type: 'string' },
    url: { type: 'string' },
    'api-key': { type: 'string' },
    model: { type: 'string' },
    speed: { type: 'string' },
    limit: { type: 'string' },
    duration: { type: 'string' },
    'time-scale': { type: 'string' },
    'max-inflight': { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const trace = req(values.trace, 'trace');
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig);
  const tty = process.stderr.isTTY;
  const limit = values.limit !== undefined ? num(values.limit, 'limit') : undefined;
  const bar = (p: ReplayProgress) => {
    const width = 30;
    const frac = limit ? Math.min(1, p.done / limit) : 0;
    const filled = Math.round(frac * width);
    const line =
      (limit ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '') +
      `sent ${p.sent} done ${p.done} in flight ${p.inflight} | ok ${p.ok} rejected ${p.rejected} failed ${p.failed} | trace ${(p.traceMs / 1000).toFixed(0)} s, wall ${(p.elapsedMs / 1000).toFixed(0)} s`;
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  };
  let lastPrint = 0;
  const s = await replayTrace({
    trace,
    url: values.url ?? 'http://127.0.0.1:8000',
    apiKey: values['api-key'] ?? process.env.DYNAMOLLM_API_KEY ?? process.env.OPENAI_API_KEY,
    model: values.model,
    speed: num(values.speed, 'speed', 1),
    limit,
    durationS: values.duration !== undefined ? num(values.duration, 'duration') : undefined,
    timeScale: num(values['time-scale'], 'time-scale', 1),
    maxInflight: num(values['max-inflight'], 'max-inflight', 4096),
    signal: ac.signal,
    onProgress: (p) => {
      // not a TTY (CI logs): a line every 5 s instead of a redrawn bar
      if (tty || p.elapsedMs - lastPrint >= 5000) {
        lastPrint = p.elapsedMs;
        bar(p);
      }
    },
  });
  process.off('SIGINT', onSig);
  if (tty) process.stderr.write('\n');
  process.stdout.write(formatSummary(s) + '\n');
  if (values.json) writeFileSync(values.json, JSON.stringify(s, null, 2));
  return s.ok + s.rejected + s.failed === s.sent ? 0 : 1;
}
