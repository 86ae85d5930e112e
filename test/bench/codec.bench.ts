/**
 * The codec (msgpackr + the validator compiled from each zod schema), encode+decode per message, against
 * plain JSON.stringify/parse (no validation) and against zod's own parse on both sides, in the same run.
 * ns per encode+decode round trip, median of 5 batches.
 */
import type { BenchSection } from './types.ts';
import { SAMPLES, CODECS } from '../fixtures/actors/samples.ts';
import { packRaw, unpackRaw } from '../../protocols/codec.ts';

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
    // the schema's own zod parse on both sides, as the codec did before compiled validators (for the ratio)
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
  return {
    title: 'Codec: msgpack + compiled validation vs plain JSON and vs zod parsing (encode+decode per message)',
    notes: [
      'Each op encodes then decodes one message. The codec (protocols/codec.ts) validates on both encode and decode with the validator compiled from the zod schema (protocols/fast-check.ts; zod runs only when it does not vouch, e.g. on an error); "msgpack+zod parse" runs zod\'s own parse on both sides; the JSON baseline validates nothing. Median of 5 batches of 20 000.',
    ],
    rows,
  };
}
