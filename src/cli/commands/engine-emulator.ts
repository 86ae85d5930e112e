/**
 * `dynamollm engine-emulator`: a vLLM-compatible engine process backed by the continuous-batching core and
 * the performance model (src/model), for running dynamollm without GPUs. Prints one JSON line
 * `{"event":"listening","port":N}` on stdout once the port is bound (/health is 503 until the modelled
 * weight loading is over, then 200). Exits 0 on SIGTERM/SIGINT.
 */
import type { Command } from 'commander';
import { num, req, tpArg, UsageError } from '../args.ts';
import { getModelSpec } from '../../model/catalog.ts';
import { action, type ExitCode } from '../program.ts';
import { DEFAULT_SCHEDULER } from '../../model/scheduler.ts';

interface EmulatorOptions {
  model?: string;
  gpu?: string;
  calibrationEngine?: string;
  tp?: string;
  port?: string;
  host?: string;
  timeScale?: string;
  seed?: string;
  startupDelayMs?: string;
  maxNumSeqs?: string;
  maxNumBatchedTokens?: string;
  longPrefillTokenThreshold?: string;
  maxLogprobs?: string;
  maxWaiting?: string;
  streamInterval?: string;
  tokenOffsets?: boolean;
  reasoningParser?: string;
  enablePrefixCaching?: boolean;
  blockSize?: string;
  servedModelName?: string;
  zeroDelay?: boolean;
  exitOnStdinClose?: boolean;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .requiredOption('--model <m>', 'model id of the performance model (e.g. llama2-70b)')
    .option('--gpu <g>', 'GPU id (h100 | h200 | a100-80gb)', 'h100')
    .option('--calibration-engine <e>', "fitted engine generation of the performance model (src/model/calibration.ts; default the shipped profiles'); the instance manager passes its profile's (source.engine), so both are one model")
    .requiredOption('--tp <n>', 'tensor parallelism degree (number of emulated GPUs)')
    .requiredOption('--port <p>', 'HTTP port; 0 picks a free one (printed as {"event":"listening","port":N})')
    .option('--host <h>', 'bind address', '127.0.0.1')
    .option('--time-scale <x>', 'run X times faster than real time', '1')
    .option('--seed <s>', 'PRNG seed of output lengths and text', '1')
    .option('--startup-delay-ms <ms>', 'modelled weight-loading time before /health is 200, ms', '0')
    .option('--max-num-seqs <n>', 'vLLM max_num_seqs', String(DEFAULT_SCHEDULER.maxNumSeqs))
    .option('--max-num-batched-tokens <n>', 'vLLM max_num_batched_tokens (chunked prefill budget)', String(DEFAULT_SCHEDULER.maxNumBatchedTokens))
    .option('--long-prefill-token-threshold <n>', 'vLLM long_prefill_token_threshold: a prompt with more tokens left gets at most N per step; 0 = off', '0')
    .option('--max-logprobs <n>', "vLLM's --max-logprobs: most alternatives per token a request may ask for (logprobs / top_logprobs; more is vLLM's 400)", '20')
    .option('--max-waiting <n>', 'bound of the waiting queue (503 beyond it)', '4096')
    .option('--stream-interval <n>', "vLLM's --stream-interval: the first token streams at once, later ones in events of N tokens", '1')
    .option('--no-token-offsets', "events of several tokens do not say when each was made (as vLLM's: only stream_options.continuous_usage_stats tells their count)")
    .option('--reasoning-parser <name>', "vLLM's --reasoning-parser: a chat's plain-text output opens with reasoning (the first half of its tokens), streamed as delta.reasoning_content")
    .option('--enable-prefix-caching', "vLLM's automatic prefix caching: a prompt's full KV blocks stay cached (LRU within the KV capacity) and a later prompt with the same leading blocks prefills only the rest")
    .option('--block-size <n>', "tokens per KV block (vLLM's --block-size; the prefix cache's granularity)", '16')
    .option('--served-model-name <name>', "name clients send as 'model' (default the model's HF name)")
    .option('--zero-delay', 'steps take no wall time (measure the control-plane path alone)')
    .option('--exit-on-stdin-close', 'exit when stdin closes (set by the engine manager: no orphans if it dies)')
    .addHelpText('after', "\nEnvironment: VLLM_API_KEY: as vLLM's --api-key, /v1 calls need 'Authorization: Bearer <key>'")
    .action(action(exit, (values: EmulatorOptions) => runEmulator(values)));
}

async function runEmulator(values: EmulatorOptions): Promise<number> {
  const model = req(values.model, 'model');
  const gpu = values.gpu ?? 'h100';
  const tp = tpArg(values.tp, getModelSpec(model));
  const port = num(values.port, 'port');
  const timeScale = num(values.timeScale, 'time-scale', 1);
  const posInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${name} must be a positive integer, got ${v}`);
    return v;
  };
  const nonNegInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`--${name} must be an integer >= 0, got ${v}`);
    return v;
  };
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got ${port}`);
  if (!(timeScale > 0)) throw new UsageError(`--time-scale must be > 0, got ${timeScale}`);
  const { createPerfModel } = await import('../../model/index.ts');
  const { EmulatorServer } = await import('../../engine/emulator/server.ts');
  const perf = createPerfModel(model, gpu, { engine: values.calibrationEngine });
  if (perf.kvCapacityTokens(tp) <= 0) throw new UsageError(`--tp ${tp}: ${model}'s weights leave no KV cache room on ${tp} ${gpu} (pick a larger --tp)`);
  // DYNAMOLLM_LOG_LEVEL=debug (an instance manager's engine inherits its environment): each streamed request's first
  // token, one JSON line on stdout (the manager logs its engine's lines at debug level)
  const { createLogger } = await import('../../runtime/logger.ts');
  const log = createLogger({ name: 'engine-emulator' });
  const emu = new EmulatorServer({
    perf,
    tp,
    timeScale,
    servedModelName: values.servedModelName,
    seed: num(values.seed, 'seed', 1),
    startupDelayMs: num(values.startupDelayMs, 'startup-delay-ms', 0),
    maxNumSeqs: posInt(num(values.maxNumSeqs, 'max-num-seqs', DEFAULT_SCHEDULER.maxNumSeqs), 'max-num-seqs'),
    maxNumBatchedTokens: posInt(num(values.maxNumBatchedTokens, 'max-num-batched-tokens', DEFAULT_SCHEDULER.maxNumBatchedTokens), 'max-num-batched-tokens'),
    longPrefillTokenThreshold: nonNegInt(num(values.longPrefillTokenThreshold, 'long-prefill-token-threshold', 0), 'long-prefill-token-threshold'),
    maxLogprobs: nonNegInt(num(values.maxLogprobs, 'max-logprobs', 20), 'max-logprobs'),
    maxWaiting: posInt(num(values.maxWaiting, 'max-waiting', 4096), 'max-waiting'),
    zeroDelay: values.zeroDelay ?? false,
    streamInterval: posInt(num(values.streamInterval, 'stream-interval', 1), 'stream-interval'),
    tokenOffsets: values.tokenOffsets !== false,
    enablePrefixCaching: values.enablePrefixCaching ?? false,
    ...(values.reasoningParser ? { reasoningParser: values.reasoningParser } : {}),
    blockSize: posInt(num(values.blockSize, 'block-size', 16), 'block-size'),
    // as vLLM: the API key comes from the environment (never the command line, which `ps` shows)
    ...(process.env.VLLM_API_KEY ? { apiKey: process.env.VLLM_API_KEY } : {}),
    ...(log.isLevelEnabled('debug') ? { onFirstToken: (t: { requestId: string | undefined; receivedMs: number; firstTokenMs: number }) => log.debug({ event: 'first_token', rid: t.requestId, receivedMs: t.receivedMs, firstTokenMs: t.firstTokenMs }, 'first token') } : {}),
  });
  const bound = await emu.listen(port, values.host ?? '127.0.0.1');
  process.stdout.write(JSON.stringify({ event: 'listening', port: bound, model: emu.servedModelName, tp, gpu }) + '\n');
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    if (values.exitOnStdinClose) {
      process.stdin.on('end', stop);
      process.stdin.on('close', stop);
      process.stdin.on('error', stop);
      process.stdin.resume();
    }
  });
  await emu.close();
  // the stdin pipe the manager keeps open would keep this process alive (and its GPUs held) until the manager's
  // SIGKILL: let it go, so that the process exits now
  process.stdin.destroy();
  return 0;
}
