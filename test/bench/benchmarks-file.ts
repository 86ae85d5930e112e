/**
 * BENCHMARKS.md as `npm run bench` writes it: its header, the sections this run produced, the sections of the
 * previous file that this run did not produce and that no bench-results/ file holds (written by hand, or by a bench
 * that failed or was not run: kept, never dropped), then every bench-results/*.md verbatim (sections measured
 * elsewhere or by hand, each stating its own command, date and machine).
 */

export interface MdSection {
  /** the heading's text, after '## '. */
  title: string;
  /** the section from its heading to the next, trimmed. */
  text: string;
}

/** The '## ' sections of a markdown text, in order (what comes before the first heading is left out). */
export function mdSections(md: string): MdSection[] {
  const out: MdSection[] = [];
  let cur: string[] | undefined;
  const flush = () => {
    if (cur) out.push({ title: cur[0]!.slice(3).trim(), text: cur.join('\n').trim() });
  };
  for (const line of md.split('\n')) {
    if (line.startsWith('## ')) {
      flush();
      cur = [line];
    } else cur?.push(line);
  }
  flush();
  return out;
}

/** The file: `header`, then `produced`, then the previous file's other sections, then `kept` (bench-results/*.md texts, in order). */
export function benchmarksFile(header: string, produced: readonly MdSection[], previous: string | undefined, kept: readonly string[]): string {
  const keptSections = kept.flatMap((k) => mdSections(k));
  const taken = new Set([...produced, ...keptSections].map((s) => s.title));
  const left = previous === undefined ? [] : mdSections(previous).filter((s) => !taken.has(s.title));
  return [header.trim(), ...produced.map((s) => s.text), ...left.map((s) => s.text), ...kept.map((k) => k.trim())].join('\n\n') + '\n';
}
