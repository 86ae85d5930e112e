import { describe, expect, it } from 'vitest';
import { addReading, bookFromRecord, bookToRecord, emptyBook, takeOver } from '../../src/telemetry/energy-ledger.ts';
import { EnergyLedger } from '../../protocols/control.ts';

describe('energy ledger (cluster energy across leader changes)', () => {
  it('sums increments of each instance counter, a counter drop being a new instance manager', () => {
    const b = emptyBook();
    expect(addReading(b, { id: 'a', pool: 'p', energyJ: 100 })).toBe(0); // first sight: counts from now
    expect(addReading(b, { id: 'a', pool: 'p', energyJ: 150 })).toBe(50);
    expect(addReading(b, { id: 'a', pool: 'p', energyJ: 20 })).toBe(20); // restarted manager under the same id
    expect(addReading(b, { id: 'b', pool: 'q', energyJ: 7 }, 'whole')).toBe(7);
    expect(b.energyJ).toBe(77);
    expect(Object.fromEntries(b.poolEnergyJ)).toEqual({ p: 70, q: 7 });
  });

  it('a successor continues the stored book with its own latest readings, not from 0', () => {
    // the leader's book, stored at its last write: 1000 J, instance a at 400 J, b at 300 J
    const stored = bookFromRecord({ energyJ: 1000, poolEnergyJ: { p: 1000 }, counters: { a: 400, b: 300 } });
    // a standby that started late saw only a little (its own book: 30 J)
    const own = emptyBook();
    addReading(own, { id: 'a', pool: 'p', energyJ: 420 });
    addReading(own, { id: 'a', pool: 'p', energyJ: 450 });
    // its latest readings: a grew by 50, b restarted and is at 10, c started after the stored write
    const b = takeOver(stored, own, [
      { id: 'a', pool: 'p', energyJ: 450 },
      { id: 'b', pool: 'p', energyJ: 10 },
      { id: 'c', pool: 'q', energyJ: 5 },
    ]);
    expect(b.energyJ).toBe(1000 + 50 + 10 + 5);
    expect(Object.fromEntries(b.poolEnergyJ)).toEqual({ p: 1060, q: 5 });
    // further readings go on from there
    addReading(b, { id: 'a', pool: 'p', energyJ: 460 });
    expect(b.energyJ).toBe(1075);
    // the stored book is not changed by the successor
    expect(stored.energyJ).toBe(1000);
  });

  it('without a stored book the successor keeps its own; the book travels as an EnergyLedger', () => {
    const own = emptyBook();
    addReading(own, { id: 'a', pool: 'p', energyJ: 1 }, 'whole');
    expect(takeOver(undefined, own, [])).toBe(own);
    const wire = EnergyLedger.decode(EnergyLedger.encode({ v: 1, ...bookToRecord(own), leader: 'cm-0', atMs: 5 }));
    expect(bookFromRecord(wire)).toEqual(own);
  });
});
