/**
 * `npm run fuzz [N] [FILTER]`: N inputs (default 100,000) per surface whose name contains FILTER (default all);
 * prints crashes (must be 0) and typed errors per surface.
 */
import { SURFACES, closeFuzzGateway, fuzz } from './surfaces.ts';

const n = Number(process.argv[2] ?? 100_000);
const filter = process.argv[3] ?? '';
// the YAML parser warns on odd tags through process warnings: thousands of lines in a config fuzz run
process.emitWarning = () => {};
let crashes = 0;
const chosen = SURFACES.filter((s) => s.name.includes(filter));
for (const s of chosen) {
  const t0 = Date.now();
  const r = await fuzz(s, n);
  crashes += r.crashes;
  process.stdout.write(`${s.name.padEnd(60)} runs ${r.runs}  typed errors ${r.typedErrors}  crashes ${r.crashes}  ${Date.now() - t0} ms${r.example ? `\n  first crash: ${r.example}` : ''}\n`);
}
await closeFuzzGateway();
process.stdout.write(`fuzz: ${chosen.length} surfaces x ${n} inputs, crashes ${crashes}\n`);
process.exit(crashes ? 1 : 0);
