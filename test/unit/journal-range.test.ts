/**
 * A resumable stream's unresumable ranges (actors/gateway/journal-writer.ts, docs/PROTOCOL.md "Resumable streams"):
 * an entry the journal does not hold within giveUpMs opens a range (the client stops waiting, an open marker goes
 * right after the entry in flight, the appends go on: a resume from any id is refused); once the journal holds every
 * event the client was sent, regain closes it at the next event (a resume from before it is refused, from it on
 * served, the client waits for the journal again); a later silence opens another. A stop the older writer appended
 * after a resume took its stream over (its leg ended by that resume: its error) does not refuse a later resume.
 */
import { describe, expect, it } from 'vitest';
import { resumePlan } from '../../actors/gateway/sse-stream.ts';
import { JournalWriter, foldJournal, type JournalAppend } from '../../actors/gateway/resume.ts';
import { ResumeEntry } from '../../protocols/journal.ts';

const head = (): NonNullable<ResumeEntry['head']> => ({
  req: { v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'p', inputTokens: 3, maxTokens: 10, arrivalMs: 0, giveUpAtMs: 1, streamSubject: 'dyn.v1.stream.r1' },
  created: 1, includeUsage: true, continuousUsage: false,
});
/** until the writer's acks of this turn ran. */
const settle = () => new Promise((r) => setImmediate(r));

describe('JournalWriter: unresumable ranges', () => {
  it('an entry not held within giveUpMs opens an unresumable range (appends go on); once the journal holds what was sent, regain closes it', async () => {
    let up = false;
    const held: ResumeEntry[] = [];
    const append: JournalAppend = async (e) => {
      if (!up) throw new Error('no responders');
      held.push(ResumeEntry.decode(ResumeEntry.encode(e)));
    };
    const timeouts: string[] = [];
    const w = new JournalWriter(append, 'r1', 0, 1 << 20, { headMs: 1000, attemptMs: 50, lagMs: 0, giveUpMs: 250 }, undefined, undefined, (wait) => timeouts.push(wait));
    up = true;
    expect(await w.head(head())).toBe(true);
    up = false;
    w.text(0, ' a', 1);
    w.flush();
    expect(w.held()).toBe(true);
    const released = new Promise<number>((r) => {
      const t0 = Date.now();
      w.onRelease(() => r(Date.now() - t0));
    });
    // released by the deadline, not by an ack
    expect(await released).toBeGreaterThanOrEqual(240);
    expect(w.unresumable).toMatch(/within 250 ms/);
    expect(timeouts).toEqual(['write']);
    expect(w.held()).toBe(false);
    // still journaled, not waited for; the journal lacks event 0 and 1, so the range stays open
    w.text(1, ' b', 1);
    w.flush();
    expect(w.held()).toBe(false);
    expect(w.regain(2)).toBe(false);
    up = true;
    for (let t = 0; t < 60 && foldJournal(held)?.events.length !== 2; t++) await new Promise((r) => setTimeout(r, 50));
    // the open marker right after the entry in flight, then the events: a resume from any event is refused
    const s = foldJournal(held)!;
    expect(s.events.map((e) => e.text).join('')).toBe(' a b');
    expect(s.stop).toBeUndefined();
    expect(s.unresumable).toMatchObject({ from: 0, why: expect.stringMatching(/did not hold an entry within 250 ms/) });
    expect(held.findIndex((e) => e.unresumable)).toBeLessThan(held.findIndex((e) => e.from === 1));
    expect(resumePlan(held, { id: 'r1', index: 0 }, 'completion', undefined)).toMatchObject({ error: { status: 410 } });
    // the journal holds events 0 and 1 (all the client was sent): the range closes at 2, the client waits again
    expect(w.regain(2)).toBe(true);
    expect(w.unresumable).toBeUndefined();
    w.text(2, ' c', 1);
    w.flush();
    expect(w.held()).toBe(true);
    await new Promise<void>((r) => w.onRelease(r));
    await settle();
    expect(w.held()).toBe(false);
    expect(foldJournal(held)!.unresumable).toEqual({ from: 0, until: 2 });
    expect(resumePlan(held, { id: 'r1', index: 1 }, 'completion', undefined)).toMatchObject({ error: { status: 410 } });
    const after = resumePlan(held, { id: 'r1', index: 2 }, 'completion', undefined);
    expect('plan' in after && after.plan).toMatchObject({ events: [], sent: 3, text: ' a b c', next: 3 });
    // another silence: another range, opened past the first
    up = false;
    w.text(3, ' d', 1);
    w.flush();
    await new Promise<void>((r) => w.onRelease(r));
    expect(w.unresumable).toMatch(/within 250 ms/);
    up = true;
    for (let t = 0; t < 60 && foldJournal(held)?.unresumable?.from !== 3; t++) await new Promise((r) => setTimeout(r, 50));
    expect(foldJournal(held)!.unresumable).toMatchObject({ from: 3 });
    expect(resumePlan(held, { id: 'r1', index: 2 }, 'completion', undefined)).toMatchObject({ error: { status: 410 } });
  });
});

describe('the fold across writer generations', () => {
  it('the stop an older writer wrote after a resume took its stream over (its leg ended by that resume) is not the later writer\'s', () => {
    const ev = (...t: string[]) => t.map((text) => ({ text, tokens: 1 }));
    // the resume read the head and ' a b'; then the gateway still streaming it got its instance's error and stopped its
    // journal, before the resumed writer's first entry
    const entries: ResumeEntry[] = [{ v: 1, id: 'r1', gen: 0, head: head() }, { v: 1, id: 'r1', gen: 0, from: 0, events: ev(' a', ' b') }, { v: 1, id: 'r1', gen: 0, stop: 'the stream ended with an error' }];
    expect(foldJournal(entries)!.stop).toBeDefined();
    entries.push({ v: 1, id: 'r1', gen: 1, leg: { id: 'r1-g1abcm1', instance: 'i0', legs: 1, sentBefore: 2, energyJ: 1 } }, { v: 1, id: 'r1', gen: 1, from: 2, events: ev(' c') });
    const s = foldJournal(entries)!;
    expect(s.stop).toBeUndefined();
    expect(s.events.map((e) => e.text).join('')).toBe(' a b c');
    // the resumed writer's client, cut after ' c', resumes again: served
    const again = resumePlan(entries, { id: 'r1', index: 2 }, 'completion', undefined);
    expect('error' in again ? again.error.message : again.plan.next).toBe(3);
    // the resumed writer's own stop counts
    expect(foldJournal([...entries, { v: 1, id: 'r1', gen: 1, stop: 'an error' }])!.stop).toBe('an error');
  });
});
