/**
 * `dynamollm engine-emulator`: a vLLM-compatible engine process backed by the continuous-batching core and
 * the performance model (src/model), for running dynamollm without GPUs. Prints one JSON line
 * `{"event":"listening","port":N}` on stdout once the port is bound (/health is 503 until the modelled
 * weight loading is over, then 200). Exits 0 on SIGTERM/SIGINT.
 */
import { num, parse, req, UsageError } from '../args.ts';
import { DEFAULT_SCHEDULER } from '../../model/scheduler.ts';

export const summary = 'run a vLLM-compatible emulated engine (HTTP API + batching core + emulated GPU)';

const HELP = `usage: dynamollm engine-emulator --model M --tp N --port P [options]
  --model M                   model id of the performance model (e.g. llama2-70b)
  --gpu G                     GPU id (h100 | h200 | a100-80gb); default h100
  --tp N                      tensor parallelism degree (number of emulated GPUs)
  --port P                    HTTP port; 0 picks a free one (printed as {"event":"listening","port":N})
  --host H                    bind address; default 127.0.0.1
  --time-scale X              run X times faster than real time; default 1
  --seed S                    PRNG seed of output lengths and text; default 1
  --startup-delay-ms MS       modelled weight-loading time before /health is 200, ms; default 0
  --max-num-seqs N            vLLM max_num_seqs; default 256
  --max-num-batched-tokens N  vLLM max_num_batched_tokens (chunked prefill budget); default 8192
  --long-prefill-token-threshold N  vLLM long_prefill_token_threshold: a prompt with more tokens left gets at
                              most N per step (short prompts behind it are not held up); default 0 = off
  --max-waiting N             bound of the waiting queue (503 beyond it); default 4096
  --stream-interval N         vLLM's --stream-interval: the first token streams at once, later ones in events
                              of N tokens (and the last); default 1
  --served-model-name NAME    name clients send as 'model'; default the model's HF name
  --zero-delay                steps take no wall time (measure the control-plane path alone)
  --exit-on-stdin-close       exit when stdin closes (set by the engine manager: no orphans if it dies)
`;

export async function run(argv: string[]): Promise<number | undefined> {
  const { values } = parse(argv, {
    model: { type: 'string' },
    gpu: { type: 'string' },
    tp: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    'time-scale': { type: 'string' },
    seed: { type: 'string' },
    'startup-delay-ms': { type: 'string' },
    'max-num-seqs': { type: 'string' },
    'max-num-batched-tokens': { type: 'string' },
    'long-prefill-token-threshold': { type: 'string' },
    'max-waiting': { type: 'string' },
    'stream-interval': { type: 'string' },
    'served-model-name': { type: 'string' },
    'zero-delay': { type: 'boolean' },
    'exit-on-stdin-close': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const model = req(values.model, 'model');
  const gpu = values.gpu ?? 'h100';
  const tp = num(values.tp, 'tp');
  const port = num(values.port, 'port');
  const timeScale = num(values['time-scale'], 'time-scale', 1);
  const posInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${name} must be a positive integer, got ${v}`);
    return v;
  };
  const nonNegInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`--${name} must be an integer >= 0, got ${v}`);
    return v;
  };
  posInt(tp, 'tp');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got ${port}`);
  if (!(timeScale > 0)) throw new UsageError(`--time-scale must be > 0, got ${timeScale}`);
  const { createPerfModel } = await import('../../model/index.ts');
  const { EmulatorServer } = await import('../../engine/emulator/server.ts');
  const perf = createPerfModel(model, gpu);
  const emu = new EmulatorServer({
    perf,
    tp,
    timeScale,
    servedModelName: values['served-model-name'],
    seed: num(values.seed, 'seed', 1),
    startupDelayMs: num(values['startup-delay-ms'], 'startup-delay-ms', 0),
    maxNumSeqs: posInt(num(values['max-num-seqs'], 'max-num-seqs', DEFAULT_SCHEDULER.maxNumSeqs), 'max-num-seqs'),
    maxNumBatchedTokens: posInt(num(values['max-num-batched-tokens'], 'max-num-batched-tokens', DEFAULT_SCHEDULER.maxNumBatchedTokens), 'max-num-batched-tokens'),
    longPrefillTokenThreshold: nonNegInt(num(values['long-prefill-token-threshold'], 'long-prefill-token-threshold', 0), 'long-prefill-token-threshold'),
    maxWaiting: posInt(num(values['max-waiting'], 'max-waiting', 4096), 'max-waiting'),
    zeroDelay: values['zero-delay'] ?? false,
    streamInterval: posInt(num(values['stream-interval'], 'stream-interval', 1), 'stream-interval'),
  });
  const bound = await emu.listen(port, values.host ?? '127.0.0.1');
  process.stdout.write(JSON.stringify({ event: 'listening', port: bound, model: emu.servedModelName, tp, gpu }) + '\n');
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    if (values['exit-on-stdin-close']) {
      process.stdin.on('end', stop);
      process.stdin.on('close', stop);
      process.stdin.on('error', stop);
      process.stdin.resume();
    }
  });
  await emu.close();
  return 0;
}
