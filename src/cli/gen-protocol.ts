/**
 * Writes what other languages read: protocols/json-schema/<Message>.json (from the zod schemas) and the subject
 * table of docs/PROTOCOL.md (from protocols/catalog.ts, between its GENERATED markers).
 *   npx tsx src/cli/gen-protocol.ts          write
 *   npx tsx src/cli/gen-protocol.ts --check  exit 1 when a committed file differs
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CATALOG } from '../../protocols/catalog.ts';
import { jsonSchemas } from '../../protocols/json-schema.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SCHEMA_DIR = join(ROOT, 'protocols', 'json-schema');
export const PROTOCOL_MD = join(ROOT, 'docs', 'PROTOCOL.md');
const BEGIN = '<!-- GENERATED subjects: npx tsx src/cli/gen-protocol.ts -->';
const END = '<!-- END GENERATED subjects -->';

export function schemaFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, s] of Object.entries(jsonSchemas())) out[`${name}.json`] = JSON.stringify(s, null, 2) + '\n';
  return out;
}

export function subjectTable(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    '| subject | kind | message | publisher | rate | kept in | observer reads |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const e of CATALOG) {
    const msg = e.reply ? `${e.message} -> ${e.reply}` : e.message;
    const link = (m: string) => (/^[A-Z]\w+$/.test(m) ? `[${m}](../protocols/json-schema/${m}.json)` : m);
    const msgMd = msg.split(/( -> | \| )/).map((p) => (p === ' -> ' || p === ' | ' ? esc(p) : link(p))).join('');
    lines.push(`| \`${esc(e.subject)}\` | ${e.pattern} | ${msgMd} | ${esc(e.publisher)} | ${esc(e.rate)} | ${e.stream ?? ''} | ${e.observer ? 'yes' : 'no'} |`);
  }
  return `${BEGIN}\n${lines.join('\n')}\n${END}`;
}

export function protocolMd(current: string): string {
  const a = current.indexOf(BEGIN);
  const b = current.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${PROTOCOL_MD}: markers ${BEGIN} ... ${END} missing`);
  return current.slice(0, a) + subjectTable() + current.slice(b + END.length);
}

function main(check: boolean): number {
  const want = schemaFiles();
  let stale = 0;
  if (!existsSync(SCHEMA_DIR)) mkdirSync(SCHEMA_DIR, { recursive: true });
  const have = new Set(readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json')));
  for (const [f, text] of Object.entries(want)) {
    const p = join(SCHEMA_DIR, f);
    if (existsSync(p) && readFileSync(p, 'utf8') === text) continue;
    stale++;
    if (check) process.stderr.write(`stale: protocols/json-schema/${f}\n`);
    else writeFileSync(p, text);
  }
  for (const f of have) if (!(f in want)) {
    stale++;
    process.stderr.write(`not generated (remove it): protocols/json-schema/${f}\n`);
  }
  const md = readFileSync(PROTOCOL_MD, 'utf8');
  const next = protocolMd(md);
  if (next !== md) {
    stale++;
    if (check) process.stderr.write('stale: docs/PROTOCOL.md subject table\n');
    else writeFileSync(PROTOCOL_MD, next);
  }
  return check && stale > 0 ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.includes('--check'));
