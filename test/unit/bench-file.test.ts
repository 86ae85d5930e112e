/**
 * What `npm run bench` writes to BENCHMARKS.md (test/bench/benchmarks-file.ts): the sections it produced, the
 * previous file's sections it did not produce (hand-written, or of a bench not run), then bench-results/*.md. A full
 * run over the repository's own BENCHMARKS.md keeps every section it has.
 */
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchmarksFile, mdSections } from '../bench/benchmarks-file.ts';
import { REPO_ROOT } from '../helpers/nats.ts';

describe('BENCHMARKS.md as npm run bench writes it', () => {
  it('produced sections replace theirs; a section it did not produce stays; bench-results files come last, replacing their copies', () => {
    const previous = [
      '# Benchmarks', '', 'Written by an older run.', '',
      '## Codec', '', 'old figures', '',
      '## By hand: a run on another host', '', 'kept text', '',
      '## Quiet host', '', 'an older copy of the file',
    ].join('\n');
    const out = benchmarksFile('# Benchmarks\n\nWritten now.', [{ title: 'Codec', text: '## Codec\n\nnew figures' }], previous, ['## Quiet host\n\nthe file\n']);
    expect(out).toBe(['# Benchmarks', '', 'Written now.', '', '## Codec', '', 'new figures', '', '## By hand: a run on another host', '', 'kept text', '', '## Quiet host', '', 'the file', ''].join('\n'));
    expect(mdSections(out).map((s) => s.title)).toEqual(['Codec', 'By hand: a run on another host', 'Quiet host']);
  });

  it("a full run over the repository's BENCHMARKS.md keeps every section, the hand-run data-path and codec runs among them", () => {
    const previous = readFileSync(join(REPO_ROOT, 'BENCHMARKS.md'), 'utf8');
    const dir = join(REPO_ROOT, 'bench-results');
    const kept = readdirSync(dir).filter((f) => f.endsWith('.md')).sort().map((f) => readFileSync(join(dir, f), 'utf8'));
    const before = mdSections(previous);
    // every section this file has from a bench regenerated with new figures (here: the first two), the rest as they are
    const produced = before.slice(0, 2).map((s) => ({ title: s.title, text: `## ${s.title}\n\nregenerated` }));
    const after = mdSections(benchmarksFile('# Benchmarks', produced, previous, kept));
    expect(after.map((s) => s.title).sort()).toEqual(before.map((s) => s.title).sort());
    const text = after.map((s) => s.text).join('\n');
    expect(text).toContain('**The real-time run against the engine alone**');
    expect(text).toContain('The section\'s last row (2026-12-06 00:01 UTC');
  });

  it("every bench-results file's sections are in the repository's BENCHMARKS.md as they are in the file", () => {
    // npm run bench appends each bench-results file verbatim: a section edited in BENCHMARKS.md alone is lost at its next run
    const sections = new Map(mdSections(readFileSync(join(REPO_ROOT, 'BENCHMARKS.md'), 'utf8')).map((s) => [s.title, s.text]));
    const dir = join(REPO_ROOT, 'bench-results');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.md')).sort()) {
      for (const s of mdSections(readFileSync(join(dir, f), 'utf8'))) expect(sections.get(s.title), `${f}: ${s.title}`).toBe(s.text);
    }
  });
});
