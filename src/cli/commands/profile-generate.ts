/** `dynamollm profile generate --model M --gpu G --out FILE [--engine E] [--tp 2,4,8] [--clocks 800,...]
 *  [--max-num-batched-tokens N] [--max-num-seqs N] [--lengths-from TRACE]`: the engine scheduler budget the profile
 *  describes, and the workload whose mean lengths per type it is made for (default: the conversation trace's).
 *  `dynamollm profile generate --like FILE --out FILE [--date D]`: FILE again from the current model, with its
 *  grid, request types, scheduler budget and engine generation (how the shipped profiles are regenerated). */
import type { Command } from 'commander';
import { inputFile, req, UsageError } from '../args.ts';
import { action, type ExitCode } from '../program.ts';
import { createPerfModel, engineOfProfile } from '../../model/perf.ts';
import { loadProfile } from '../../telemetry/profile-io.ts';
import { CALIBRATION } from '../../model/calibration.ts';
import { generateProfile, regenerationOptions } from '../../model/generate.ts';
import { saveProfile } from '../../telemetry/profile-io.ts';
import { DEFAULT_THRESHOLDS, representativeTypes } from '../../model/request-types.ts';
import { longInputClassBound, overContext, readTrace } from '../../sim/trace.ts';
import type { RequestTypeSpec } from '../../model/types.ts';

const list = (v: string | undefined, name: string): number[] | undefined => {
  if (v === undefined) return undefined;
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isFinite(x) || x <= 0)) throw new UsageError(`--${name} must be a comma list of positive numbers, got '${v}'`);
  return xs;
};

interface GenerateOptions {
  model?: string;
  gpu?: string;
  out: string;
  like?: string;
  engine?: string;
  tp?: string;
  clocks?: string;
  date?: string;
  maxNumBatchedTokens?: string;
  maxNumSeqs?: string;
  lengthsFrom?: string;
}

export function registerGenerate(cmd: Command, exit: ExitCode): void {
  cmd
    .option('--model <m>', 'model id (e.g. llama2-70b); required unless --like')
    .option('--gpu <g>', 'GPU id (h100, h200, a100-80gb, a100-40gb); required unless --like')
    .requiredOption('--out <file>', 'where to write the profile (JSON)')
    .option('--like <profile>', 'regenerate this profile from the current model: its model, GPU, grid, request types, scheduler budget and engine generation')
    .option('--engine <e>', `engine generation (default ${CALIBRATION.defaultEngine})`)
    .option('--tp <list>', 'TP degrees, comma-separated (default 2,4,8; with --like: its degrees)')
    .option('--clocks <list>', 'SM clocks, MHz, comma-separated')
    .option('--date <yyyy-mm-dd>', 'date written into the profile (default today)')
    .option('--max-num-batched-tokens <n>', 'the engine scheduler budget the profile describes')
    .option('--max-num-seqs <n>', 'the engine max_num_seqs the profile describes')
    .option('--lengths-from <trace>', 'mean lengths per request type from this trace (default: the conversation trace)')
    .action(action(exit, (values: GenerateOptions) => generate(values)));
}

async function generate(values: GenerateOptions): Promise<number> {
  if (values.like !== undefined) return regenerate(inputFile(values.like, '--like'), req(values.out, 'out'), values.date, list(values.tp, 'tp'));
  const model = req(values.model, 'model'), gpu = req(values.gpu, 'gpu'), out = req(values.out, 'out');
  const engine = values.engine ?? CALIBRATION.defaultEngine;
  const perf = createPerfModel(model, gpu, { engine });
  const intOpt = (name: 'max-num-batched-tokens' | 'max-num-seqs', min: number): number | undefined => {
    const v = name === 'max-num-seqs' ? values.maxNumSeqs : values.maxNumBatchedTokens;
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const scheduler = { maxNumBatchedTokens: intOpt('max-num-batched-tokens', 2), maxNumSeqs: intOpt('max-num-seqs', 1) };
  let requestTypes: RequestTypeSpec[] | undefined;
  let lengthsNote = '';
  if (values.lengthsFrom !== undefined) {
    const lengthsFrom = inputFile(values.lengthsFrom, '--lengths-from');
    const rows: { inputTokens: number; outputTokens: number }[] = [];
    // the model's context (at least 8192, as simulate): longer rows are refused, not profiled; on a long-context
    // model the L input class runs up to the context, so its representative lengths are the trace's long prompts
    const ctx = Math.max(perf.model.maxContext, DEFAULT_THRESHOLDS.inputUpper.L);
    let refused = 0;
    for await (const r of readTrace(lengthsFrom)) if (overContext(r, ctx)) refused++;
    else rows.push(r);
    const th = { ...DEFAULT_THRESHOLDS, inputUpper: { ...DEFAULT_THRESHOLDS.inputUpper, L: longInputClassBound(ctx) } };
    const rep = representativeTypes(rows, undefined, th);
    if (refused) lengthsNote += ` ${refused} rows over the ${ctx}-token context left out.`;
    requestTypes = rep.types;
    lengthsNote = `${lengthsNote} Representative lengths per type: means of ${lengthsFrom} (${rows.length} rows, ${rep.dropped} beyond the longest class dropped; rows per type ${REQUEST_TYPE_LIST(rep.counts)}).`;
    process.stderr.write(`lengths from ${lengthsFrom}: ${rep.types.map((t) => `${t.type} ${t.inputTokens}/${t.outputTokens}`).join(', ')}\n`);
  }
  const t0 = Date.now();
  const p = generateProfile(perf, {
    tpDegrees: list(values.tp, 'tp'), clocksMhz: list(values.clocks, 'clocks'),
    requestTypes,
    scheduler: Object.fromEntries(Object.entries(scheduler).filter(([, v]) => v !== undefined)),
    date: values.date ?? new Date().toISOString().slice(0, 10),
    engine,
    calibration: calibrationNote(engine),
    notes: `Modelled, not measured: generated by the dynamollm performance and power model from public data (data/calibration/SOURCE.md).${lengthsNote}`,
  });
  saveProfile(out, p);
  process.stderr.write(`wrote ${out}: ${p.cells.length} cells in ${Date.now() - t0} ms\n`);
  return 0;
}

/** A profile again from the current model, with its own grid (or the TP degrees given), types, scheduler and engine generation. */
function regenerate(like: string, out: string, date: string | undefined, tpDegrees: number[] | undefined): number {
  const old = loadProfile(like);
  if (old.source.kind !== 'model') throw new UsageError(`--like ${like}: a measured profile cannot be regenerated from the model`);
  const engine = engineOfProfile(old);
  const t0 = Date.now();
  const p = generateProfile(createPerfModel(old.model, old.gpu, { engine }), {
    ...regenerationOptions(old), ...(tpDegrees ? { tpDegrees } : {}), engine, calibration: calibrationNote(engine), date: date ?? new Date().toISOString().slice(0, 10),
  });
  saveProfile(out, p);
  process.stderr.write(`wrote ${out} (like ${like}, engine ${engine}): ${p.cells.length} cells in ${Date.now() - t0} ms\n`);
  return 0;
}

/** Provenance of an engine generation's fitted parameters (and of the GPU family's). */
function calibrationNote(engine: string): string {
  return `src/model/calibration.ts engine '${engine}' (${CALIBRATION.provenance[engine] ?? ''}); GPU family: ${CALIBRATION.provenance.hopper ?? ''}`;
}

const REQUEST_TYPE_LIST = (c: Record<string, number>): string => Object.entries(c).map(([t, n]) => `${t} ${n}`).join(', ');
