/**
 * `npm run bench`: runs every test/bench/*.bench.ts (each exports `bench(): Promise<BenchSection>`),
 * prints the results and rewrites BENCHMARKS.md with the date and machine (./benchmarks-file.ts: what it keeps). A section compares against a
 * baseline measured in the same run and states the ratio. `npm run bench -- <filter>` runs matching files.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import type { BenchSection } from './types.ts';
import { benchmarksFile } from './benchmarks-file.ts';

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2];
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => !filter || f.includes(filter))
  .sort();

const sections: BenchSection[] = [];
for (const f of files) {
  process.stdout.write(`# ${f}\n`);
  try {
    const mod = (await import(join(here, f))) as { bench(): Promise<BenchSection> };
    const s = await mod.bench();
    sections.push(s);
    process.stdout.write(renderSection(s) + '\n');
  } catch (err) {
    const s: BenchSection = { title: f, notes: [`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`], rows: [] };
    sections.push(s);
    process.stdout.write(renderSection(s) + '\n');
    process.exitCode = 1;
  }
}

function renderSection(s: BenchSection): string {
  const out = [`## ${s.title}`, ''];
  for (const n of s.notes ?? []) out.push(n, '');
  if (s.rows.length) {
    const cols = Object.keys(s.rows[0]);
    out.push('| ' + cols.join(' | ') + ' |', '|' + cols.map(() => '---').join('|') + '|');
    for (const r of s.rows) out.push('| ' + cols.map((c) => String(r[c] ?? '')).join(' | ') + ' |');
    out.push('');
  }
  return out.join('\n');
}

const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
const header = [
  '# Benchmarks',
  '',
  `Written by \`npm run bench\` on ${new Date().toISOString()} — ${os.cpus().length} x ${cpu}, ` +
    `${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.type()} ${os.release()}.`,
  'Each section measures its baseline in the same run; ratios compare the two.',
  '',
].join('\n');
if (!filter) {
  // Sections measured elsewhere (e.g. NVML on a lent H100) or by hand are kept as committed files in bench-results/
  // and appended verbatim, each stating its own date and machine; a section of the previous file that this run did
  // not produce and no such file holds is kept too (./benchmarks-file.ts)
  const dir = join(here, '..', '..', 'bench-results');
  const file = join(here, '..', '..', 'BENCHMARKS.md');
  let kept: string[] = [];
  try {
    kept = readdirSync(dir)
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => readFileSync(join(dir, f), 'utf8'));
  } catch {
    kept = [];
  }
  let previous: string | undefined;
  try {
    previous = readFileSync(file, 'utf8');
  } catch {
    previous = undefined;
  }
  writeFileSync(file, benchmarksFile(header, sections.map((s) => ({ title: s.title, text: renderSection(s) })), previous, kept));
}
