/**
 * Write a synthetic long-context trace with prefix reuse (src/sim/prefix-trace.ts; Mooncake-style JSONL with
 * ms timestamps and hash_ids). Usage: npx tsx scripts/synth-prefix-trace.ts OUT [MINUTES=60] [SESSIONS_PER_S=0.25] [SEED=1]
 */
import { createWriteStream } from 'node:fs';
import { synthPrefixTrace } from '../src/sim/prefix-trace.ts';

const [out, minutes = '60', sps = '0.25', seed = '1'] = process.argv.slice(2);
if (!out) {
  process.stderr.write('usage: npx tsx scripts/synth-prefix-trace.ts OUT [MINUTES] [SESSIONS_PER_S] [SEED]\n');
  process.exit(2);
}
const w = createWriteStream(out);
let n = 0;
for (const row of synthPrefixTrace({ durationS: Number(minutes) * 60, sessionsPerS: Number(sps), seed: Number(seed) })) {
  w.write(JSON.stringify(row) + '\n');
  n++;
}
w.end(() => process.stderr.write(`${out}: ${n} requests\n`));
