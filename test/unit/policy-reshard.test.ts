import { describe, it, expect } from 'vitest';
import { matchReshard, canonicalPlacement, maxWeightAssignment, TABLE_VI_CONFIGS, TABLE_VI_TAU, LLAMA2_70B_BYTES, staggerSteps } from '../../src/policy/index.ts';
import { darkReshardUnit, reshardSteps } from '../../src/policy/pool-shards.ts';
import type { InstanceConfig } from '../../src/policy/index.ts';

const CONFIGS: Record<(typeof TABLE_VI_CONFIGS)[number], InstanceConfig[]> = {
  TP2: [{ tp: 2, count: 1 }],
  '4xTP2': [{ tp: 2, count: 4 }],
  TP4: [{ tp: 4, count: 1 }],
  'TP2+TP4': [{ tp: 2, count: 1 }, { tp: 4, count: 1 }],
  '2xTP4': [{ tp: 4, count: 2 }],
  TP8: [{ tp: 8, count: 1 }],
};

describe('Hungarian', () => {
  it('finds the maximum-weight assignment (checked against brute force)', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 30; trial++) {
      const r = 1 + Math.floor(rnd() * 5), c = 1 + Math.floor(rnd() * 5);
      const w = Array.from({ length: r }, () => Array.from({ length: c }, () => Math.floor(rnd() * 10)));
      const brute = (i: number, used: Set<number>): number => {
        if (i === r) return 0;
        let best = brute(i + 1, used); // row unassigned (when r > c)
        for (let j = 0; j < c; j++) if (!used.has(j)) { used.add(j); best = Math.max(best, w[i]![j]! + brute(i + 1, used)); used.delete(j); }
        return best;
      };
      const { assignment, total } = maxWeightAssignment(w);
      expect(total).toBe(brute(0, new Set()));
      const cols = assignment.filter((j) => j >= 0);
      expect(new Set(cols).size).toBe(cols.length);
    }
  });
});

describe('re-shard matching vs Table VI', () => {
  it('reproduces all 36 source -> target costs (tau) in one 8-GPU server', () => {
    const got = TABLE_VI_CONFIGS.map((s) => TABLE_VI_CONFIGS.map((t) => matchReshard(canonicalPlacement(CONFIGS[s]), CONFIGS[t]).costTau));
    const mismatches: string[] = [];
    TABLE_VI_CONFIGS.forEach((s, i) => TABLE_VI_CONFIGS.forEach((t, j) => { if (got[i]![j] !== TABLE_VI_TAU[i]![j]) mismatches.push(`${s}->${t}: ${got[i]![j]} vs ${TABLE_VI_TAU[i]![j]}`); }));
    console.log('Table VI reproduced:\n' + got.map((r, i) => `${TABLE_VI_CONFIGS[i]!.padEnd(8)} ${r.join(' ')}`).join('\n'));
    expect(mismatches).toEqual([]);
  });

  it('keeps the most weights in place', () => {
    // TP8 -> 2xTP4: every GPU keeps one of its eighth, moves one
    const r = matchReshard(canonicalPlacement(CONFIGS.TP8), CONFIGS['2xTP4']);
    expect(r.bytesKept).toBeCloseTo(LLAMA2_70B_BYTES, 0);
    expect(r.bytesMoved).toBeCloseTo(LLAMA2_70B_BYTES, 0);
    // same config: nothing moves, instances stay on their GPUs
    const same = matchReshard(canonicalPlacement(CONFIGS['TP2+TP4']), CONFIGS['TP2+TP4']);
    expect(same.bytesMoved).toBe(0);
    expect(same.placements.map((p) => p.gpus)).toEqual([[0, 1, 2, 3], [4, 5]]);
  });

  it('places instances on the server that already runs them, and marks weight-less servers fresh', () => {
    const cur = [{ id: 'a', tp: 8, gpus: [0, 1, 2, 3, 4, 5, 6, 7] }, { id: 'b', tp: 4, gpus: [8, 9, 10, 11] }];
    const r = matchReshard(cur, [{ tp: 4, count: 1 }, { tp: 8, count: 2 }]);
    const tp4 = r.placements.find((p) => p.tp === 4)!;
    expect(tp4.gpus).toEqual([8, 9, 10, 11]);
    expect(tp4.bytesMoved).toBe(0);
    expect(r.placements.filter((p) => p.fresh).length).toBe(1);
  });

  it('staggers a reconfiguration in batches, starts before stops', () => {
    const cur = canonicalPlacement([{ tp: 2, count: 4 }, { tp: 8, count: 1 }]);
    const steps = staggerSteps(cur, [{ tp: 8, count: 1 }, { tp: 4, count: 2 }, { tp: 8, count: 1 }], 1);
    expect(steps.every((s) => s.length === 1)).toBe(true);
    const kinds = steps.map((s) => s[0]!.kind);
    expect(kinds.lastIndexOf('start')).toBeLessThan(kinds.indexOf('stop') === -1 ? Infinity : kinds.indexOf('stop'));
    const scored = staggerSteps(cur, [{ tp: 4, count: 2 }], 2, (u) => (u.kind === 'stop' ? 100 : 1));
    expect(scored[0]![0]!.kind).toBe('stop');
  });
});

describe('re-shard units that leave a pool dark', () => {
  const inst = (id: string, gpus: number[]) => ({ id, tp: gpus.length, gpus });
  it('a single unit over every serving instance\'s GPUs is dark; one that leaves another serving is not', () => {
    const cur = [inst('a', [0, 1, 2, 3]), inst('b', [4, 5, 6, 7])];
    const merge = reshardSteps(cur, [{ tp: 8, count: 1 }], 8).flat();
    expect(darkReshardUnit(cur, merge)).toMatchObject({ tp: 8, from: ['a', 'b'] });
    const split = reshardSteps(cur, [{ tp: 2, count: 4 }], 8).flat();
    expect(split.length).toBeGreaterThan(1);
    expect(darkReshardUnit(cur, split)).toBeUndefined();
    // one TP8 into two TP4: the first TP4 drains the TP8, nothing else serves
    const one = [inst('c', [0, 1, 2, 3, 4, 5, 6, 7])];
    expect(darkReshardUnit(one, reshardSteps(one, [{ tp: 4, count: 2 }], 8).flat())).toMatchObject({ tp: 4, from: ['c'] });
    // with GPUs free on a second server, the new instance starts beside the old one: not dark
    const spare = [inst('d', [0, 1, 2, 3])];
    expect(darkReshardUnit(spare, [{ kind: 'reshard', tp: 8, gpus: [8, 9, 10, 11, 12, 13, 14, 15], from: ['d'], savingJ: 0 }])).toBeUndefined();
  });
});

describe('re-shard units on the pool\'s free GPUs', () => {
  const inst = (id: string, gpus: number[]) => ({ id, tp: gpus.length, gpus });
  const all = [0, 1, 2, 3, 4, 5, 6, 7];
  it('a pool that left GPUs out (burst guard) splits its TP4 onto them, start first: never dark', () => {
    // the live case: 4xTP2 merged into one TP4 (roles on GPUs 0,2,1,3), GPUs 4-7 granted and in no instance
    const cur = [inst('t4', [0, 2, 1, 3])];
    const weightsKept = reshardSteps(cur, [{ tp: 2, count: 2 }], 8).flat();
    expect(darkReshardUnit(cur, weightsKept)).toMatchObject({ tp: 2, from: ['t4'] });
    const units = reshardSteps(cur, [{ tp: 2, count: 2 }], 8, all).flat();
    expect(darkReshardUnit(cur, units)).toBeUndefined();
    // the first unit starts on an aligned free block beside the TP4; once it serves the TP4 is gone and the second
    // unit's GPUs are free (no unit drains anything first)
    expect(units[0]).toMatchObject({ tp: 2, gpus: [4, 5], from: ['t4'] });
    expect(units).toHaveLength(2);
    expect(units[1]!.gpus.some((g) => units[0]!.gpus.includes(g))).toBe(false);
    expect(units.every((u) => u.kind !== 'stop')).toBe(true);
  });

  it('a unit moves only while its GPUs are held and a free block of its server exists', () => {
    // one TP4 on GPUs 0-3 of a server whose GPUs 4-7 are granted and free -> 4xTP2: the two new TP2s start on the
    // free GPUs; the two that split the TP4 find no free GPU left and stay on its GPUs (it drains first, while the
    // new ones serve); one server 1 GPU granted and free is never used (units stay on their server)
    const cur = [inst('a', [0, 1, 2, 3])];
    const units = reshardSteps(cur, [{ tp: 2, count: 4 }], 8, [...all, 8]).flat();
    const placed = units.filter((u) => u.kind !== 'stop');
    expect(placed.map((u) => u.tp)).toEqual([2, 2, 2, 2]);
    expect(placed.flatMap((u) => u.gpus).sort((x, y) => x - y)).toEqual(all);
    const onFree = placed.filter((u) => u.gpus.every((g) => g >= 4));
    const onHeld = placed.filter((u) => u.gpus.every((g) => g < 4));
    expect(onFree).toHaveLength(2);
    expect(onHeld).toHaveLength(2);
    expect(units.indexOf(onFree[1]!)).toBeLessThan(units.indexOf(onHeld[0]!));
    expect(darkReshardUnit(cur, units)).toBeUndefined();
  });

  it('with no free granted GPU the units stay on the GPUs of the instances they replace, each on an aligned block', () => {
    // the weight-keeping placement splits a TP8 into TP4s on [0,2,4,6] and [1,3,5,7]: GPUs no instance id names
    // (instanceIdOf's g<first>x<tp>) and no credential is made for (possibleInstances)
    const one = [inst('c', all)];
    expect(reshardSteps(one, [{ tp: 4, count: 2 }], 8).flat().map((u) => u.gpus)).toEqual([[0, 2, 4, 6], [1, 3, 5, 7]]);
    const units = reshardSteps(one, [{ tp: 4, count: 2 }], 8, all).flat();
    expect(units.map((u) => [u.gpus, u.from])).toEqual([[[0, 1, 2, 3], ['c']], [[4, 5, 6, 7], ['c']]]);
    expect(darkReshardUnit(one, units)).toMatchObject({ tp: 4, from: ['c'] });
  });

  it('every unit that starts an instance lands on an aligned block (the twin run\'s 1xTP4 -> 2xTP2 started a TP2 on [1,3])', () => {
    // the TP4 as the pool started it (its GPUs in order): the matching splits it into [0,2] and [1,3]
    const t4 = [inst('t4', [0, 1, 2, 3])];
    expect(reshardSteps(t4, [{ tp: 2, count: 2 }], 8).flat().map((u) => u.gpus)).toEqual([[0, 2], [1, 3]]);
    expect(reshardSteps(t4, [{ tp: 2, count: 2 }], 8, all).flat().map((u) => u.gpus)).toEqual([[4, 5], [0, 1]]);
    // its roles on GPUs 0,2,1,3 (a merge of two TP2s): [0,1] and [2,3], the second aligned as it is
    expect(reshardSteps([inst('t4', [0, 2, 1, 3])], [{ tp: 2, count: 2 }], 8, all).flat().map((u) => u.gpus)).toEqual([[4, 5], [2, 3]]);
    // a TP2 the matching placed on [0,2]: the TP2 a 2xTP2 layout adds goes to a free aligned block, not to [1,3]
    expect(reshardSteps([inst('a', [0, 2])], [{ tp: 2, count: 2 }], 8, all).flat().map((u) => u.gpus)).toEqual([[4, 5]]);
    // on a second server with no free GPU: aligned blocks of that server's own GPUs (the TP4 drains first)
    const two = [inst('b', [8, 10, 9, 11])];
    expect(reshardSteps(two, [{ tp: 2, count: 2 }], 8, [...all, 8, 9, 10, 11]).flat().map((u) => u.gpus)).toEqual([[8, 9], [10, 11]]);
  });

  it('a unit with no aligned block of free GPUs takes one from an instance the re-shard stops, or moves a kept one aside', () => {
    const aligned = (u: { tp: number; gpus: number[] }) => u.gpus[0]! % u.tp === 0 && u.gpus.every((g, i) => g === u.gpus[0]! + i);
    // the simulated morning rise: 4xTP2 -> TP2+TP4; the matching merges [2,3] and [4,5] (no id names [2,4,3,5]), and
    // every GPU is held: the TP4 replaces [4,5] and [6,7] instead, and the stop of [6,7] stops [2,3]
    const four = [inst('a', [0, 1]), inst('b', [2, 3]), inst('c', [4, 5]), inst('d', [6, 7])];
    const merged = reshardSteps(four, [{ tp: 2, count: 1 }, { tp: 4, count: 1 }], 8, all).flat();
    expect(merged.map((u) => [u.kind, u.gpus, u.from])).toEqual([['reshard', [4, 5, 6, 7], ['c', 'd']], ['stop', [2, 3], ['b']]]);
    // TP2s on [0,1] and [4,5] -> 2xTP2+TP4: free GPUs [2,3,6,7] hold no aligned TP4:
    // the TP2 on [0,1] moves to [6,7] (its replacement serves before it drains) and the TP4 starts on [0,1,2,3]
    const split = [inst('c', [4, 5]), inst('a', [0, 1])];
    const moved = reshardSteps(split, [{ tp: 2, count: 2 }, { tp: 4, count: 1 }], 8, all).flat();
    expect(moved.map((u) => [u.kind, u.gpus, u.from])).toEqual([['reshard', [6, 7], ['a']], ['start', [0, 1, 2, 3], []]]);
    for (const u of [...merged, ...moved]) expect(aligned(u)).toBe(true);
    expect(darkReshardUnit(split, moved)).toBeUndefined();
  });
});


describe('which of like instances a re-shard stops, and when (stopsByLoad)', () => {
  const inst = (id: string, gpus: number[], inFlight?: number) => ({ id, tp: gpus.length, gpus, ...(inFlight !== undefined ? { inFlight } : {}) });
  const stops = (units: { kind: string; from: string[] }[]) => units.filter((u) => u.kind === 'stop').map((u) => u.from.join('+'));
  it('4xTP2 -> 1xTP2 keeps the least busy and stops the others busiest first; without inFlight the placement\'s order', () => {
    const four = (w?: number[]) => [0, 2, 4, 6].map((g, k) => inst(`i${k}`, [g, g + 1], w?.[k]));
    expect(stops(reshardSteps(four(), [{ tp: 2, count: 1 }], 8).flat())).toEqual(['i1', 'i2', 'i3']);
    const units = reshardSteps(four([1, 7, 0, 2]), [{ tp: 2, count: 1 }], 8).flat();
    expect(stops(units)).toEqual(['i1', 'i3', 'i0']);
    // each stop unit names its instance's own GPUs
    expect(units.map((u) => u.gpus)).toEqual([[2, 3], [6, 7], [0, 1]]);
    // ties keep the placement's order
    expect(stops(reshardSteps(four([3, 3, 3, 3]), [{ tp: 2, count: 1 }], 8).flat())).toEqual(['i1', 'i2', 'i3']);
  });

  it('an instance on another server, or whose GPUs a new instance takes, is not traded', () => {
    // two servers, 2xTP2 on each -> 3xTP2: the stop stays on server 1 (its busy pair's idle one is kept), never
    // moving to server 0's idle pair
    const two = [inst('s0a', [0, 1], 0), inst('s0b', [2, 3], 0), inst('s1a', [8, 9], 9), inst('s1b', [10, 11], 0)];
    expect(stops(reshardSteps(two.map(({ inFlight: _, ...c }) => c), [{ tp: 2, count: 3 }], 8).flat())).toEqual(['s1b']);
    expect(stops(reshardSteps(two, [{ tp: 2, count: 3 }], 8).flat())).toEqual(['s1a']);
    // 2xTP2 -> 1xTP4: both TP2s' GPUs go to the TP4 (a re-shard unit, no stop to trade)
    const merge = reshardSteps([inst('a', [0, 1], 0), inst('b', [2, 3], 9)], [{ tp: 4, count: 1 }], 8).flat();
    expect(merge.map((u) => [u.kind, [...u.from].sort()])).toEqual([['reshard', ['a', 'b']]]);
  });
});
