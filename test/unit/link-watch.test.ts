/**
 * The cluster planner's view of its servers and instances against its own link to the bus (src/policy/link-watch.ts
 * with policy aliveServers and observedLoad), on a virtual clock: a planner whose link was down, or unproven (no
 * lease round trip answered: a cut its client has not noticed, a partition), takes none of that silence for a
 * server's death or an instance's absence; back, each gets the whole bound from the link's return to report.
 */
import { describe, expect, it } from 'vitest';
import { initialLinkWatch, linkEvent, linkGapMs, linkProof, silenceFromMs, type LinkWatch } from '../../src/policy/link-watch.ts';
import { aliveServers, observedLoad } from '../../src/policy/machines/cluster.ts';

const DEAD = 3000;
const GAP = linkGapMs(DEAD);
const servers = [{ id: 's0', gpus: 8 }, { id: 's1', gpus: 8 }];
/** the lease's round trips answered every 1000 ms in [fromMs, toMs] */
const proofs = (w: LinkWatch, fromMs: number, toMs: number): LinkWatch => {
  for (let t = fromMs; t <= toMs; t += 1000) w = linkProof(w, t, GAP);
  return w;
};
const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

describe('the planner and its own link', () => {
  it('with the link proven, a server silent past 3 x deadAfterMs is gone (the control)', () => {
    const w = proofs(initialLinkWatch(), 0, 12_000);
    const seen = new Map([['s0', 12_000], ['s1', 1000]]);
    expect(ids(aliveServers(servers, seen, 12_100, DEAD, silenceFromMs(w, 12_100, GAP)))).toEqual(['s0']);
  });

  it('a link down for 11 s: back, a server not heard yet is not gone, and its instances keep their load', () => {
    let w = proofs(initialLinkWatch(), 0, 1000);
    w = linkEvent(w, false, 1000);
    // during the outage: nobody's silence counts
    expect(silenceFromMs(w, 8000, GAP)).toBe(8000);
    w = linkEvent(w, true, 12_000);
    w = proofs(w, 12_000, 13_000);
    const seen = new Map([['s0', 12_050], ['s1', 1000]]);
    expect(ids(aliveServers(servers, seen, 12_100, DEAD, silenceFromMs(w, 12_100, GAP)))).toEqual(['s0', 's1']);
    const instances = [{ st: { loadByType: { SS: 2 } }, seenMs: 12_050 }, { st: { loadByType: { SS: 3 } }, seenMs: 1000 }];
    expect(observedLoad(instances, 12_100, DEAD, silenceFromMs(w, 12_100, GAP))).toEqual({ SS: 5 });
    // s1 really is gone: gone 3 x deadAfterMs after the link's return
    expect(ids(aliveServers(servers, seen, 21_001, DEAD, silenceFromMs(proofs(w, 14_000, 21_000), 21_001, GAP)))).toEqual(['s0']);
  });

  it('a cut its client has not noticed (no disconnect, no lease answer): no server is gone; the first proof after it restarts the clocks', () => {
    let w = proofs(initialLinkWatch(), 0, 1000);
    const seen = new Map([['s0', 1000], ['s1', 1000]]);
    expect(silenceFromMs(w, 11_000, GAP)).toBe(11_000);
    expect(ids(aliveServers(servers, seen, 11_000, DEAD, silenceFromMs(w, 11_000, GAP)))).toEqual(['s0', 's1']);
    w = linkProof(w, 11_000, GAP);
    expect(silenceFromMs(w, 11_100, GAP)).toBe(11_000);
    seen.set('s0', 11_050);
    expect(ids(aliveServers(servers, seen, 11_100, DEAD, silenceFromMs(w, 11_100, GAP)))).toEqual(['s0', 's1']);
  });
});
