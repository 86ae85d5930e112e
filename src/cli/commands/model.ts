/**
 * `dynamollm model predict --model M --gpu G --tp N --clock MHZ --batch B --context C [--prompt P] [--engine E] [--json]`:
 * one steady-state decode step of the performance/power model (modelled, not measured). The engine defaults to
 * today's vLLM (CALIBRATION.currentEngine); --engine vllm-2023 gives the paper-era engine the shipped profiles use.
 */
import { num, parse, req, UsageError } from '../args.ts';
import { CALIBRATION } from '../../model/calibration.ts';
import { createPerfModel } from '../../model/perf.ts';

export const summary = 'model predict: TBT, TTFT, power and J/token from the performance and power model';

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'predict') {
    process.stderr.write('usage: dynamollm model predict --model M --gpu G --tp N --clock MHZ --batch B --context C [--prompt P] [--engine E] [--json]\n');
    return 2;
  }
  const { values } = parse(rest, {
    model: { type: 'string' }, gpu: { type: 'string' }, tp: { type: 'string' }, clock: { type: 'string' }, batch: { type: 'string' },
    context: { type: 'string' }, prompt: { type: 'string' }, engine: { type: 'string' }, json: { type: 'boolean' },
  });
  const perf = createPerfModel(req(values.model, 'model'), req(values.gpu, 'gpu'), { engine: values.engine ?? CALIBRATION.currentEngine });
  const tp = num(values.tp, 'tp'), clock = num(values.clock, 'clock', perf.gpu.maxClockMhz), batch = num(values.batch, 'batch'), context = num(values.context, 'context');
  if (batch < 1) throw new UsageError('--batch must be >= 1');
  const step = { prefillTokens: 0, decodeSeqs: batch, decodeContextTokens: batch * context };
  const bd = perf.breakdown(step, tp, clock);
  const tbtMs = bd.totalMs;
  const powerW = bd.powerW;
  const out = {
    model: perf.model.id, gpu: perf.gpu.id, tp, clockMhz: clock, batch, context,
    tbtMs: r(tbtMs), ttftMs: values.prompt !== undefined ? r(perf.ttftMs(num(values.prompt, 'prompt'), tp, clock)) : undefined,
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
