/**
 * Intake's walk along a chain of pools (policy spillPasses, spillNext), answer by answer: the one rule the cluster
 * manager's intake, the gateway's routing and the simulator's arrivals run.
 */
import { describe, expect, it } from 'vitest';
import { spillNext, spillPasses, type SpillAnswer, type SpillMove } from '../../src/policy/machines/cluster.ts';

type A = SpillAnswer & { from: string };
const overloaded = (from: string): A => ({ ok: false, error: { code: 'overloaded' }, from });
const admitted = (from: string): A => ({ ok: true, from });

function offered(m: SpillMove<string, A>): { pool: string; spill: boolean } {
  if (m.kind !== 'offer') throw new Error(`expected an offer, got the end (${JSON.stringify(m)})`);
  return m.offer;
}

describe('spillNext', () => {
  it('walks the spill pass, then the chain again without spill, each refusal as overloaded going on', () => {
    let m = spillNext<string, A>({ offers: spillPasses(['SS', 'SL', 'MS']) });
    const seen: { pool: string; spill: boolean }[] = [];
    for (;;) {
      seen.push(offered(m));
      if (m.kind !== 'offer') break;
      m = spillNext(m.walk, overloaded(m.offer.pool));
      if (m.kind === 'end') break;
    }
    expect(seen).toEqual([
      { pool: 'SS', spill: true }, { pool: 'SL', spill: true }, { pool: 'MS', spill: true },
      { pool: 'SS', spill: false }, { pool: 'SL', spill: false }, { pool: 'MS', spill: false },
    ]);
    // every pool refused: the walk ends with the last refusal
    expect(m).toEqual({ kind: 'end', answer: overloaded('MS') });
  });

  it('ends at an admission', () => {
    let m = spillNext<string, A>({ offers: spillPasses(['SS', 'SL']) });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] }, overloaded('SS'));
    expect(offered(m)).toEqual({ pool: 'SL', spill: true });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] }, admitted('SL'));
    expect(m).toEqual({ kind: 'end', answer: admitted('SL') });
  });

  it('ends at a refusal other than overloaded (an invalid request is not offered to the next pool)', () => {
    const m = spillNext<string, A>({ offers: spillPasses(['SS', 'SL']) });
    const invalid: A = { ok: false, error: { code: 'invalid_request' }, from: 'SS' };
    expect(spillNext(m.kind === 'offer' ? m.walk : { offers: [] }, invalid)).toEqual({ kind: 'end', answer: invalid });
    // no error at all (a refusal without a reason) ends it too
    const bare: A = { ok: false, from: 'SS' };
    expect(spillNext(m.kind === 'offer' ? m.walk : { offers: [] }, bare)).toEqual({ kind: 'end', answer: bare });
  });

  it('a pool with no instance to ask (no answer) is passed over, the last overloaded refusal kept for the end', () => {
    let m = spillNext<string, A>({ offers: spillPasses(['SS', 'SL']) });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] }, overloaded('SS'));
    expect(offered(m)).toEqual({ pool: 'SL', spill: true });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] }); // SL: nothing to ask
    expect(offered(m)).toEqual({ pool: 'SS', spill: false });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] });
    expect(offered(m)).toEqual({ pool: 'SL', spill: false });
    m = spillNext(m.kind === 'offer' ? m.walk : { offers: [] });
    expect(m).toEqual({ kind: 'end', answer: overloaded('SS') });
  });

  it('no pool at all, or none answering: the end with no answer', () => {
    expect(spillNext<string, A>({ offers: spillPasses([]) })).toEqual({ kind: 'end' });
    const m = spillNext<string, A>({ offers: spillPasses(['LL']) });
    expect(offered(m)).toEqual({ pool: 'LL', spill: false });
    expect(spillNext(m.kind === 'offer' ? m.walk : { offers: [] })).toEqual({ kind: 'end' });
  });
});
