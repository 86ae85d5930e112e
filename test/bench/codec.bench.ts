/**
 * msgpack (msgpackr) + zod validation, encode+decode per message, against plain JSON.stringify/parse (no
 * validation) in the same run. ns per encode+decode round trip, median of 5 batches.
 */
import type { BenchSection } from './types.ts';
import { SAMPLES, CODECS } from '../fixtures/actors/samples.ts';

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
    const js = timeNs(() => {
      sink += (JSON.parse(JSON.stringify(msg)) as object) ? 1 : 0;
    }, iters);
    const bytes = c.encode(msg).length;
    rows.push({
      message: name,
      'msgpack+zod ns/op': Math.round(mp),
      'JSON ns/op (baseline)': Math.round(js),
      'ratio (msgpack+zod / JSON)': (mp / js).toFixed(2),
      'msgpack bytes': bytes,
      'JSON bytes': Buffer.byteLength(JSON.stringify(msg)),
    });
    if (sink < 0) console.log(sink);
  }
  return {
    title: 'Codec: msgpack + zod validation vs plain JSON (encode+decode per message)',
    notes: [
      'Each op encodes then decodes one message. msgpack+zod validates on both encode and decode (protocols/codec.ts); the JSON baseline validates nothing. Median of 5 batches of 20 000.',
    ],
    rows,
  };
}
