/**
 * `dynamollm replay --trace FILE [--speed X] [--limit N] [--start S] [--duration S] [--json] [--out FILE] [--url URL]`:
 * plays a trace (Azure LLM inference CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, or JSONL
 * `timestamp,input_length,output_length`) against the gateway with open-loop arrivals, shows a progress
 * bar and prints a summary (src/telemetry/replay.ts). Exit code 0 when every request is accounted for.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { httpUrl, inputFile, nonNegativeNum, positiveNum, wholeNum } from '../args.ts';
import { action, jsonOption, type ExitCode } from '../program.ts';
import { formatSummary, replayTrace, type ReplayProgress } from '../../telemetry/replay.ts';
import { sloSettingsOf } from './simulate.ts';
import type { SloSettings } from '../../policy/slo.ts';

interface ReplayOptions {
  trace: string;
  url: string;
  apiKey?: string;
  model?: string;
  speed: string;
  limit?: string;
  start?: string;
  duration?: string;
  timeScale: string;
  maxInflight: string;
  json?: boolean;
  out?: string;
  config?: string;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .requiredOption('--trace <file>', 'Azure LLM inference CSV or JSONL (shipped: data/traces/AzureLLMInferenceTrace_conv.csv)')
    .option('--url <url>', 'endpoint', 'http://127.0.0.1:8000')
    .option('--api-key <key>', 'Bearer key (default env DYNAMOLLM_API_KEY or OPENAI_API_KEY)')
    .option('--model <id>', 'model id (default: the first of /v1/models)')
    .option('--speed <x>', 'arrival-rate multiplier', '1')
    .option('--limit <n>', 'at most N requests')
    .option('--start <s>', 'skip the first S seconds of trace time (the window starts there)')
    .option('--duration <s>', 'only S seconds of trace time (from --start)')
    .option('--time-scale <k>', "the cluster engines' time-scale: latencies are multiplied by K for SLO checks", '1')
    .option('--max-inflight <n>', 'client-side bound of requests in flight', '4096')
    .option('--config <file>', "the cluster's config: its slo: and thresholds: type and judge the requests as its gateway and instances do (default Table IV)")
    .addOption(jsonOption())
    .option('--out <file>', 'also write the summary as JSON to FILE')
    .addHelpText('after', '\nExit 0 when every request is accounted for (ok, rejected or failed), 1 otherwise.')
    .action(action(exit, (values: ReplayOptions) => replay(values)));
}

/** The endpoint must answer before any request is timed: one line naming it otherwise. */
async function probe(url: string, apiKey: string | undefined): Promise<void> {
  try {
    await fetch(`${url}/v1/models`, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(5000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
}

async function replay(values: ReplayOptions): Promise<number> {
  const trace = inputFile(values.trace, '--trace');
  const url = httpUrl(values.url, 'url').replace(/\/+$/, '');
  // every argument is checked before the endpoint is probed: a bad one sends nothing
  const speed = positiveNum(values.speed, 'speed');
  const limit = values.limit !== undefined ? wholeNum(values.limit, 'limit', 1) : undefined;
  const startS = values.start !== undefined ? nonNegativeNum(values.start, 'start') : undefined;
  const durationS = values.duration !== undefined ? positiveNum(values.duration, 'duration') : undefined;
  const timeScale = positiveNum(values.timeScale, 'time-scale');
  const maxInflight = wholeNum(values.maxInflight, 'max-inflight', 1);
  const slo = sloOption(values);
  const apiKey = values.apiKey ?? process.env.DYNAMOLLM_API_KEY ?? process.env.OPENAI_API_KEY;
  await probe(url, apiKey);
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig);
  const tty = process.stderr.isTTY;
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
    url,
    apiKey,
    model: values.model,
    speed,
    limit,
    startS,
    durationS,
    timeScale,
    maxInflight,
    ...slo,
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
  process.stdout.write((values.json ? JSON.stringify(s, null, 2) : formatSummary(s)) + '\n');
  if (values.out) writeFileSync(values.out, JSON.stringify(s, null, 2));
  return s.ok + s.rejected + s.failed === s.sent ? 0 : 1;
}

/** the --config's SLOs and thresholds, as replayTrace takes them; none: its default (Table IV). */
function sloOption(values: ReplayOptions): { slo?: SloSettings } {
  const { slo, thresholds } = sloSettingsOf(values);
  return slo && thresholds ? { slo: { slo, thresholds } } : {};
}
