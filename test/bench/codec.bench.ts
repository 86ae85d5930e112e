/**
 * The codec (msgpackr + the validator compiled from each zod schema), encode+decode per message, against
 * plain JSON.stringify/parse (no validation) and against zod's own parse on both sides, in the same run.
 * ns per encode+decode round trip, median of 5 batches.
 */
import type { BenchSection } from './types.ts';
import { SAMPLES, CODECS } from '../fixtures/actors/samples.ts';
import { packRaw, unpackRaw } from '../../protocols/codec.ts';
import { LegReport, subjects, type InferenceRequest, type LegReport as LegReportT } from '../../protocols/index.ts';
import { withoutPrompt } from '../../actors/gateway/router.ts';

function timeNs(fn: () => void, iters: number): number {
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    runs.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  runs.sort((a, b) => a - b);
  return runs[2];
}

export async function bench(): Promise<BenchSection> {
  const rows: Record<string, string | number>[] = [];
  for (const name of ['InferenceRequest', 'Admission', 'TokenChunk', 'Heartbeat', 'InstanceTelemetry', 'RequestRecord', 'ClusterStatus']) {
    const c = CODECS[name];
    const msg = SAMPLES[name];
    const iters = 20_000;
    let sink = 0;
    // warm-up
    for (let i = 0; i < 2000; i++) sink += (c.decode(c.encode(msg)) as object) ? 1 : 0;
    const mp = timeNs(() => {
      sink += (c.decode(c.encode(msg)) as object) ? 1 : 0;
    }, iters);
    // the schema's own zod parse on both sides: the codec's validation without compiled validators (for the ratio)
    const zs = timeNs(() => {
      sink += (c.schema.parse(unpackRaw(packRaw(c.schema.parse(msg)))) as object) ? 1 : 0;
    }, iters);
    const js = timeNs(() => {
      sink += (JSON.parse(JSON.stringify(msg)) as object) ? 1 : 0;
    }, iters);
    const bytes = c.encode(msg).length;
    rows.push({
      message: name,
      'codec ns/op': Math.round(mp),
      'JSON ns/op (baseline)': Math.round(js),
      'msgpack+zod parse ns/op': Math.round(zs),
      'ratio (codec / JSON)': (mp / js).toFixed(2),
      'ratio (codec / zod parse)': (mp / zs).toFixed(2),
      'msgpack bytes': bytes,
      'JSON bytes': Buffer.byteLength(JSON.stringify(msg)),
    });
    if (sink < 0) console.log(sink);
  }
  // the credited report of a replay-shaped request (2,000 token ids, 200 tokens), as the gateway sends it to its instance
  // without the prompt (InferenceRequest.promptForm) against with it, encode+decode in the same run
  const req = {
    v: 1, id: 'req-rt-1', model: 'llama3.1-8b', kind: 'completion', prompt: Array.from({ length: 2000 }, (_, i) => 100 + i), inputTokens: 2000,
    maxTokens: 200, minTokens: 200, ignoreEos: true, arrivalMs: 1_700_000_000_000, giveUpAtMs: 1_700_000_600_000, streamSubject: subjects.stream('req-rt-1'),
    type: 'LS', slo: { ttftMs: 1000, tbtMs: 100 }, ttftDeadlineMs: 1_700_000_001_000, predictedOutputTokens: 180, pool: 'p1', direct: true,
  } as InferenceRequest;
  const credited = (r: InferenceRequest): LegReportT => ({ v: 1, id: r.id, phase: 'credited', request: r, credit: { gateway: 'gw-1', epoch: 3 }, gateway: { id: 'gw-1', startedMs: 1_700_000_000_000 } });
  const withP = credited(req);
  const withoutP = credited(withoutPrompt(req));
  let sink = 0;
  const roundTrip = (m: LegReportT) => () => {
    sink += LegReport.decode(LegReport.encode(m)).id.length;
  };
  for (let i = 0; i < 500; i++) {
    roundTrip(withP)();
    roundTrip(withoutP)();
  }
  const a = timeNs(roundTrip(withP), 2000);
  const b = timeNs(roundTrip(withoutP), 20_000);
  if (sink < 0) console.log(sink);
  rows.push({
    message: 'LegReport credited, 2,000-id prompt: without / with the prompt',
    'codec ns/op': `${Math.round(b)} / ${Math.round(a)}`,
    'msgpack bytes': `${LegReport.encode(withoutP).length} / ${LegReport.encode(withP).length}`,
  });
  return {
    title: 'Codec: msgpack + compiled validation vs plain JSON and vs zod parsing (encode+decode per message)',
    notes: [
      `The last row: the credited report the gateway sends its instance for a request it starts on a credit (docs/DATAPATH.md "What the instance keeps of a request"), a replay-shaped request (2,000 token ids, 200 tokens), without its prompt (InferenceRequest.promptForm, as sent) against with it: ${(b / a).toFixed(3)}x the CPU per encode+decode.`,
      'Each op encodes then decodes one message. The codec (protocols/codec.ts) validates on both encode and decode with the validator compiled from the zod schema (protocols/fast-check.ts; zod runs only when it does not vouch, e.g. on an error); "msgpack+zod parse" runs zod\'s own parse on both sides; the JSON baseline validates nothing. Median of 5 batches of 20 000.',
    ],
    rows,
  };
}
