/**
 * The JSON Schema files and docs/PROTOCOL.md's subject table are generated from the zod schemas and the catalog
 * (one source): the committed files must equal what the code generates now, and the JSON Schemas must accept
 * and refuse what zod accepts and refuses.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode } from '@msgpack/msgpack';
import { PROTOCOL_MD, SCHEMA_DIR, protocolMd, schemaFiles } from '../../src/cli/gen-protocol.ts';
import { CATALOG, messageSchemas } from '../../protocols/catalog.ts';
import { CODECS, SAMPLES } from '../fixtures/actors/samples.ts';
import { committedValidators } from '../helpers/json-schema.ts';

describe('generated protocol files', () => {
  it('protocols/json-schema/ equals what the zod schemas generate (run: npx tsx src/cli/gen-protocol.ts)', () => {
    const want = schemaFiles();
    const have = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json')).sort();
    expect(have).toEqual(Object.keys(want).sort());
    for (const [f, text] of Object.entries(want)) expect(readFileSync(join(SCHEMA_DIR, f), 'utf8'), f).toBe(text);
  });

  it("docs/PROTOCOL.md's subject table equals the catalog's", () => {
    const md = readFileSync(PROTOCOL_MD, 'utf8');
    expect(protocolMd(md)).toBe(md);
  });

  it('every message of the catalog has a schema', () => {
    const names = new Set(Object.keys(messageSchemas()));
    for (const e of CATALOG) {
      for (const m of [...e.message.split(' | '), ...(e.reply ?? '').split(' | ')].map((s) => s.replace(/ \(JSON\)$/, '')).filter((s) => /^[A-Z]\w+$/.test(s))) {
        expect(names.has(m), `${e.subject}: ${m}`).toBe(true);
      }
    }
  });

  it('every message schema travels on a subject or KV key of the catalog', () => {
    const named = new Set(CATALOG.flatMap((e) => [...e.message.split(' | '), ...(e.reply ?? '').split(' | ')].map((s) => s.replace(/ \(JSON\)$/, ''))));
    expect(Object.keys(messageSchemas()).filter((m) => !named.has(m))).toEqual([]);
  });
});

describe('JSON Schemas agree with zod', () => {
  const validators = committedValidators();

  it('accept every sample message, decoded by an independent msgpack implementation', () => {
    for (const [name, codec] of Object.entries(CODECS)) {
      const decoded = decode(codec.encode(SAMPLES[name])) as unknown;
      expect(validators[name]!(decoded), name).toBeNull();
    }
  });

  it('refuse what zod refuses: wrong version, missing or ill-typed required fields, bad ids', () => {
    for (const [name, codec] of Object.entries(CODECS)) {
      const good = SAMPLES[name] as Record<string, unknown>;
      const bad: Record<string, unknown>[] = [{ ...good, v: 2 }, { ...good, v: undefined }];
      if ('id' in good) bad.push({ ...good, id: 'a.b' }, { ...good, id: 7 });
      for (const b of bad) {
        const clean = JSON.parse(JSON.stringify(b)) as unknown;
        expect(() => codec.check(clean)).toThrow();
        expect(validators[name]!(clean), `${name} ${JSON.stringify(b).slice(0, 80)}`).not.toBeNull();
      }
    }
  });
});
