/**
 * parseProfile checks the cells itself (src/model/profile.ts cellOf) and leaves the rest to zod: what it returns
 * and the error it names are zod's, cell by cell. Every case below is a profile that differs from a valid one in
 * one cell: the error names the field as zod does, and a valid profile comes back with zod's own shape (its keys
 * only, in the schema's order).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { createPerfModel, generateProfile, parseProfile } from '../../src/model/index.ts';

const small = JSON.stringify(generateProfile(createPerfModel('llama3.1-8b', 'h100'), { tpDegrees: [1, 2], clocksMhz: [800, 1980], loadSteps: 4 }));
const KEYS = ['type', 'tp', 'clockMhz', 'load', 'powerW', 'energyPerRequestJ', 'ttftP50Ms', 'ttftP99Ms', 'tbtP50Ms', 'tbtP99Ms', 'meetsSlo'];

/** the small profile with cell 5 changed by `edit`. */
function withCell(edit: (c: Record<string, unknown>) => unknown): unknown {
  const doc = JSON.parse(small) as { cells: unknown[] };
  const c = doc.cells[5] as Record<string, unknown>;
  const r = edit(c);
  if (r !== undefined) doc.cells[5] = r;
  return doc;
}

describe('profile cells', () => {
  it.each([
    ['a negative power', (c: Record<string, unknown>) => void (c.powerW = -1), 'cells.5.powerW: Number must be greater than or equal to 0'],
    ['an infinite TTFT', (c: Record<string, unknown>) => void (c.ttftP99Ms = Infinity), 'cells.5.ttftP99Ms: Number must be finite'],
    ['a fractional TP', (c: Record<string, unknown>) => void (c.tp = 1.5), 'cells.5.tp: Expected integer, received float'],
    ['TP 0', (c: Record<string, unknown>) => void (c.tp = 0), 'cells.5.tp: Number must be greater than 0'],
    ['a TP as a string', (c: Record<string, unknown>) => void (c.tp = '2'), 'cells.5.tp: Expected number, received string'],
    ['an unknown type', (c: Record<string, unknown>) => void (c.type = 'XX'), "cells.5.type: Invalid enum value. Expected 'SS' | 'SM' | 'SL' | 'MS' | 'MM' | 'ML' | 'LS' | 'LM' | 'LL', received 'XX'"],
    ['meetsSlo as a string', (c: Record<string, unknown>) => void (c.meetsSlo = 'yes'), 'cells.5.meetsSlo: Expected boolean, received string'],
    ['a missing clock', (c: Record<string, unknown>) => {
      delete c.clockMhz;
    }, 'cells.5.clockMhz: Required'],
    ['a NaN load', (c: Record<string, unknown>) => void (c.load = NaN), 'cells.5.load: Expected number, received nan'],
    ['null', () => null, 'cells.5: Expected object, received null'],
    ['an array', () => [], 'cells.5: Expected object, received array'],
  ])('a cell with %s is refused as zod names it', (_what, edit, message) => {
    expect(() => parseProfile(withCell(edit))).toThrow(message);
  });

  it("a valid profile comes back in zod's shape: unknown keys of a cell dropped, the schema's key order", () => {
    const p = parseProfile(withCell((c) => void (c.extra = 1)));
    expect(Object.keys(p.cells[5]!)).toEqual(KEYS);
    for (const c of p.cells) expect(Object.keys(c)).toEqual(KEYS);
    // a cell made with another key order or a null prototype is the same cell
    const reordered = parseProfile(withCell((c) => Object.assign(Object.create(null) as object, Object.fromEntries(Object.entries(c).reverse()))));
    expect(reordered.cells[5]).toEqual(p.cells[5]);
    expect(Object.keys(reordered.cells[5]!)).toEqual(KEYS);
    // the other fields are checked by zod: unknown top-level keys dropped
    expect('extra' in parseProfile({ ...(JSON.parse(small) as object), extra: 1 })).toBe(false);
  });

  it('every shipped profile parses to its document (no field lost or changed)', () => {
    const dir = new URL('../../profiles/', import.meta.url).pathname;
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const doc = JSON.parse(readFileSync(dir + f, 'utf8')) as Record<string, unknown>;
      expect(JSON.parse(JSON.stringify(parseProfile(doc))), f).toEqual(doc);
    }
  });
});
