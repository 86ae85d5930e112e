/**
 * `dynamollm model predict --model M --gpu G --tp N --clock MHZ --batch B --context C [--prompt P] [--engine E] [--json]`:
 * one steady-state decode step of the performance/power model (modelled, not measured). The engine defaults to
 * today's vLLM (CALIBRATION.currentEngine); --engine vllm-2023 gives the paper-era engine the shipped profiles use.
 */
import type { Command } from 'commander';
import { num, req, tpArg, UsageError, wholeNum } from '../args.ts';
import { action, jsonOption, type ExitCode } from '../program.ts';
import { CALIBRATION } from '../../model/calibration.ts';
import { createPerfModel } from '../../model/perf.ts';

interface PredictOptions {
  model: string;
  gpu: string;
  tp: string;
  clock?: string;
  batch: string;
  context: string;
  prompt?: string;
  engine?: string;
  json?: boolean;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .command('predict')
    .description('one steady-state decode step of the performance/power model (modelled, not measured)')
    .requiredOption('--model <m>', 'model id (e.g. llama2-70b)')
    .requiredOption('--gpu <g>', 'GPU id: h100, h200, a100-80gb, a100-40gb')
    .requiredOption('--tp <n>', 'tensor parallelism')
    .option('--clock <mhz>', "SM clock, MHz (default the GPU's max)")
    .requiredOption('--batch <b>', 'sequences in the decode batch')
    .requiredOption('--context <c>', 'context tokens per sequence')
    .option('--prompt <p>', 'also predict the TTFT of a P-token prompt')
    .option('--engine <e>', `engine generation (default ${CALIBRATION.currentEngine}; vllm-2023 is the paper's era)`)
    .addOption(jsonOption())
    .action(action(exit, (values: PredictOptions) => predict(values)));
}

function predict(values: PredictOptions): number {
  const perf = createPerfModel(req(values.model, 'model'), req(values.gpu, 'gpu'), { engine: values.engine ?? CALIBRATION.currentEngine });
  const tp = tpArg(values.tp, perf.model), clock = num(values.clock, 'clock', perf.gpu.maxClockMhz);
  const batch = wholeNum(values.batch, 'batch', 1), context = wholeNum(values.context, 'context', 1);
  const prompt = values.prompt !== undefined ? wholeNum(values.prompt, 'prompt', 1) : undefined;
  const { minClockMhz: lo, maxClockMhz: hi } = perf.gpu;
  if (!(clock >= lo && clock <= hi)) throw new UsageError(`--clock must be within ${perf.gpu.id}'s SM clock range ${lo}..${hi} MHz, got ${values.clock}`);
  // the batch's KV cache must fit the GPUs' memory left after the weights (vLLM would not schedule it)
  const kv = perf.kvCapacityTokens(tp);
  if (batch * context > kv) {
    throw new UsageError(`--batch ${batch} x --context ${context} = ${batch * context} KV tokens, over the ${kv}-token KV capacity of ${perf.model.id} on ${tp} ${perf.gpu.id}`);
  }
  const step = { prefillTokens: 0, decodeSeqs: batch, decodeContextTokens: batch * context };
  const bd = perf.breakdown(step, tp, clock);
  const tbtMs = bd.totalMs;
  const powerW = bd.powerW;
  const out = {
    model: perf.model.id, gpu: perf.gpu.id, tp, clockMhz: clock, batch, context,
    tbtMs: r(tbtMs), ttftMs: prompt !== undefined ? r(perf.ttftMs(prompt, tp, clock)) : undefined,
    powerWPerGpu: r(powerW), instancePowerW: r(powerW * tp), joulesPerOutputToken: r((powerW * tp * tbtMs) / 1000 / batch),
    kvCapacityTokens: perf.kvCapacityTokens(tp), source: 'modelled (src/model, calibrated to public data)',
    engine: values.engine ?? CALIBRATION.currentEngine, gpuFamily: perf.gpu.family, effClockMhz: r(bd.effClockMhz),
    idlePowerWPerGpu: r(perf.idlePowerW(tp, clock, false)), loadedIdlePowerWPerGpu: r(perf.idlePowerW(tp, clock, true)),
    breakdownMs: { compute: r(bd.computeMs), memory: r(bd.memoryMs), kernels: r(bd.kernelMs), comm: r(bd.commMs), overhead: r(bd.overheadMs) },
  };
  if (values.json) process.stdout.write(JSON.stringify(out) + '\n');
  else for (const [k, v] of Object.entries(out)) if (v !== undefined) process.stdout.write(`${k.padEnd(22)} ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
  return 0;
}
const r = (x: number) => Number(x.toPrecision(4));
