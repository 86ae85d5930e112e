/**
 * `--set` overrides of the gateway's nested journal settings (actors/gateway/config.ts applyOverrides):
 * `journal.<name>=value` sets that one setting, the others kept; an unknown name or an invalid value is refused.
 */
import { describe, expect, it } from 'vitest';
import { applyOverrides, gatewaySchema } from '../../actors/gateway/config.ts';
import { DEFAULT_JOURNAL_TIMING } from '../../actors/gateway/journal-writer.ts';

describe('gateway config: --set journal.<name>', () => {
  it('sets one journal setting and keeps the others (from the file or the defaults)', () => {
    const g = gatewaySchema.parse({ journal: { sloShare: 0.5, headMs: 3000 } });
    const out = applyOverrides(g, { 'journal.sloShare': '0', 'journal.giveUpMs': '20000' }, {});
    expect(out.journal).toEqual({ ...DEFAULT_JOURNAL_TIMING, headMs: 3000, sloShare: 0, giveUpMs: 20_000 });
    expect(g.journal.sloShare).toBe(0.5);
  });

  it('refuses a name the journal does not have, and a value its schema refuses', () => {
    const g = gatewaySchema.parse({});
    expect(() => applyOverrides(g, { 'journal.nope': '1' }, {})).toThrow(/journal\.nope: not a journal setting \(journal\.headMs, /);
    expect(() => applyOverrides(g, { 'journal.sloShare': '2' }, {})).toThrow(/journal\.sloShare/);
    expect(() => applyOverrides(g, { 'journal.headMs': 'x' }, {})).toThrow(/journal\.headMs/);
    expect(() => applyOverrides(g, { 'journals.headMs': '1' }, {})).toThrow(/not a gateway setting/);
  });
});
