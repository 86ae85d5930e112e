/** `npm run fuzz [N]`: N inputs (default 100,000) per surface; prints crashes (must be 0) and typed errors. */
import { SURFACES, fuzz } from './surfaces.ts';

const n = Number(process.argv[2] ?? 100_000);
let crashes = 0;
for (const s of SURFACES) {
  const t0 = Date.now();
  const r = fuzz(s, n);
  crashes += r.crashes;
  process.stdout.write(`${s.name.padEnd(60)} runs ${r.runs}  typed errors ${r.typedErrors}  crashes ${r.crashes}  ${Date.now() - t0} ms${r.example ? `\n  first crash: ${r.example}` : ''}\n`);
}
process.stdout.write(`fuzz: ${SURFACES.length} surfaces x ${n} inputs, crashes ${crashes}\n`);
process.exit(crashes ? 1 : 0);
