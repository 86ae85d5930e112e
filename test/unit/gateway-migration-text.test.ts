/**
 * The text a gateway keeps for request migration (actors/gateway/legs.ts MigrationText, keepsPiece): counted in UTF-8
 * bytes, per stream (`migrationMaxBytes`) and across the gateway's streams (`migrationMaxTotalBytes`); a stream past
 * either cap stops keeping text and can no longer migrate (canMigrate), and its bytes leave the total, as they do when
 * it ends. The resume journal's per-stream cap counts bytes too.
 */
import { describe, expect, it } from 'vitest';
import { MigrationText, canMigrate, keepsPiece, resumedState, type StreamState } from '../../actors/gateway/legs.ts';
import { JournalWriter, type JournalAppend, type ResumeFrom } from '../../actors/gateway/resume.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import { applyOverrides, gatewaySchema } from '../../actors/gateway/config.ts';

const req: InferenceRequest = {
  v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'Hi', inputTokens: 2, maxTokens: 100, arrivalMs: 0, giveUpAtMs: 60_000, streamSubject: 'dyn.v1.stream.r1',
};
const fresh = (): StreamState => ({ out: 0, sent: 0, text: '', textBytes: 0, keepText: true, energyJ: 0, legs: 0 });
/** a stream that has sent `n` tokens of `piece` each, appended to `mt`. */
function streamed(mt: MigrationText, piece: string, n: number, st = fresh()): StreamState {
  for (let i = 0; i < n; i++) {
    st.sent++;
    mt.append(st, piece);
  }
  return st;
}

describe('keepsPiece', () => {
  const caps = { maxBytes: 10, maxTotalBytes: 25 };
  it('keeps a piece while both caps hold with it, at the caps themselves included', () => {
    expect(keepsPiece(0, 10, 0, caps)).toBe(true);
    expect(keepsPiece(6, 4, 21, caps)).toBe(true);
  });
  it('not past the stream cap, nor past the total, whichever passes', () => {
    expect(keepsPiece(8, 3, 0, caps)).toBe(false);
    expect(keepsPiece(0, 3, 23, caps)).toBe(false);
    expect(keepsPiece(0, 11, 0, caps)).toBe(false);
  });
});

describe('MigrationText: the per-stream cap, UTF-8 bytes', () => {
  it('canMigrate turns false once multi-byte text passes the cap in bytes (it is still below it in UTF-16 units)', () => {
    const mt = new MigrationText({ maxBytes: 16, maxTotalBytes: 1 << 20 });
    const st = streamed(mt, 'é', 8); // 8 characters, 16 bytes: at the cap
    expect(st.textBytes).toBe(16);
    expect(canMigrate(req, st, 3, 0)).toBe(true);
    mt.append(st, 'é'); // 9 characters (under 16), 18 bytes (over 16)
    expect(st.keepText).toBe(false);
    expect(st.text).toBe('');
    expect(canMigrate(req, st, 3, 0)).toBe(false);
    expect(mt.totalBytes).toBe(0);
    expect(mt.dropped).toBe(1);
  });

  it('an emoji counts 4 bytes: 4 of them pass a 15-byte cap', () => {
    const mt = new MigrationText({ maxBytes: 15, maxTotalBytes: 1 << 20 });
    const st = streamed(mt, '🙂', 3);
    expect([st.keepText, st.textBytes, st.text]).toEqual([true, 12, '🙂🙂🙂']);
    mt.append(st, '🙂');
    expect(canMigrate(req, st, 3, 0)).toBe(false);
  });

  it('a stream that stopped keeping text keeps nothing more, and its later pieces are not counted', () => {
    const mt = new MigrationText({ maxBytes: 4, maxTotalBytes: 1 << 20 });
    const st = streamed(mt, 'abc', 2);
    expect(st.keepText).toBe(false);
    mt.append(st, 'a');
    expect([st.text, st.textBytes, mt.totalBytes, mt.dropped]).toEqual(['', 0, 0, 1]);
  });
});

describe('MigrationText: the bound across streams', () => {
  it('the piece that would pass the total makes its stream stop keeping text; the others keep theirs', () => {
    const mt = new MigrationText({ maxBytes: 100, maxTotalBytes: 30 });
    const a = streamed(mt, 'x'.repeat(10), 2); // 20
    const b = streamed(mt, 'y'.repeat(5), 2); // 30: at the total
    expect(mt.totalBytes).toBe(30);
    expect([a.keepText, b.keepText]).toEqual([true, true]);
    mt.append(b, 'y'); // 31: past the total, though b itself holds 11 of its 100
    expect(b.keepText).toBe(false);
    expect(canMigrate(req, b, 3, 0)).toBe(false);
    expect(canMigrate(req, a, 3, 0)).toBe(true);
    expect(a.text).toBe('x'.repeat(20));
    expect(mt.totalBytes).toBe(20);
    expect(mt.dropped).toBe(1);
  });

  it('the total drops when a stream ends, and a new stream keeps its text again', () => {
    const mt = new MigrationText({ maxBytes: 100, maxTotalBytes: 30 });
    const a = streamed(mt, 'é', 10); // 20 bytes
    const b = streamed(mt, 'é', 5); // 30
    mt.release(a);
    expect(mt.totalBytes).toBe(10);
    const c = streamed(mt, 'é', 10);
    expect([c.keepText, c.textBytes, mt.totalBytes]).toEqual([true, 20, 30]);
    mt.release(b);
    mt.release(c);
    expect(mt.totalBytes).toBe(0);
  });

  it('a released stream keeps no more text: an append after its release is not counted in the total', () => {
    const mt = new MigrationText({ maxBytes: 100, maxTotalBytes: 30 });
    const a = streamed(mt, 'x', 5);
    mt.release(a);
    mt.append(a, 'xyz');
    expect([a.keepText, a.text, a.textBytes, mt.totalBytes, mt.dropped]).toEqual([false, '', 0, 0, 0]);
    mt.release(a);
    expect(mt.totalBytes).toBe(0);
  });

  it('a resumed stream claims its journal text when it fits, and stops keeping it when it does not', () => {
    const mt = new MigrationText({ maxBytes: 100, maxTotalBytes: 30 });
    const from: ResumeFrom = { sent: 10, text: 'é'.repeat(10), resumes: 0 }
    const r1 = resumedState(req, from, 100);
    expect(r1.textBytes).toBe(20);
    mt.claim(r1);
    expect([r1.keepText, mt.totalBytes]).toEqual([true, 20]);
    const r2 = resumedState(req, from, 100);
    mt.claim(r2); // 40 would pass 30
    expect([r2.keepText, mt.totalBytes]).toEqual([false, 20]);
    mt.release(r2);
    mt.release(r1);
    expect(mt.totalBytes).toBe(0);
  });
});

describe('the per-stream cap of a resume and of the journal, UTF-8 bytes', () => {
  it('resumedState: journal text over the cap in bytes (under it in characters) cannot migrate', () => {
    const from: ResumeFrom = { sent: 9, text: 'é'.repeat(9), resumes: 0 }
    expect(canMigrate(req, resumedState(req, from, 18), 3, 0)).toBe(true);
    expect(canMigrate(req, resumedState(req, from, 16), 3, 0)).toBe(false);
  });

  it('JournalWriter stops the journal once its text passes the cap in bytes', async () => {
    const entries: ResumeEntry[] = [];
    const append: JournalAppend = async (m) => void entries.push(ResumeEntry.decode(ResumeEntry.encode(m)));
    const w = new JournalWriter(append, 'j1', 0, 8);
    expect(await w.head({ req, created: 1, includeUsage: true, continuousUsage: false })).toBe(true);
    w.text(0, ' é', 1); // 3 bytes
    w.text(1, ' é', 1); // 6
    w.flush();
    await new Promise((r) => setImmediate(r));
    expect(entries.at(-1)!.stop).toBeUndefined();
    w.text(2, ' é', 1); // 9 bytes (6 characters): past 8
    await new Promise((r) => setImmediate(r));
    expect(entries.at(-1)!.stop).toMatch(/8 bytes/);
  });
});

describe('gateway config: the caps', () => {
  it('default to 1 MiB per request and 256 MiB in all; a cap must be a positive whole number of bytes', () => {
    const g = gatewaySchema.parse({});
    expect([g.migrationMaxBytes, g.migrationMaxTotalBytes]).toEqual([1 << 20, 256 << 20]);
    expect(applyOverrides(g, { migrationMaxTotalBytes: '4096' }, {}).migrationMaxTotalBytes).toBe(4096);
    expect(() => applyOverrides(g, { migrationMaxTotalBytes: '0' }, {})).toThrow(/migrationMaxTotalBytes/);
    expect(() => applyOverrides(g, { migrationMaxTotalBytes: '1.5' }, {})).toThrow(/migrationMaxTotalBytes/);
  });
});
