/**
 * The gateway's cache-aware routing (src/policy/machines/router.ts with `prefixRouting`): live requests carry no
 * block hashes, so the router hashes the prompt's text in fixed-size chunks (policy promptChunkHashes) and keeps,
 * per instance, the chunks it routed there (RoutedPrefixes); preferPrefixHolder, the simulator's rule on block
 * hashes, picks among the eligible instances.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialRouterState, routerPick, routerStatus, routerTable, type RouterConfig } from '../../src/policy/machines/router.ts';
import { PREFIX_CHUNK_CHARS, RoutedPrefixes, promptChunkHashes } from '../../src/policy/prefix.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const rc = (prefixRouting: boolean): RouterConfig => ({ profile, headroom: 0.2, deadAfterMs: 3000, prefixRouting });
let n = 0;
const req = (prompt: string): InferenceRequest => {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt, inputTokens: Math.ceil(prompt.length / 4), maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'LS' };
};
const status = (id: string, seq: number): InstanceStatus => ({
  v: 1, id, pool: 'pool-LS', node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state: 'ready', startedMs: T0, seq, sentMs: T0,
  clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
});
const text = (seed: number, chars: number) => Array.from({ length: chars }, (_, i) => String.fromCharCode(97 + ((i * 7 + seed * 13 + ((i * seed) % 11)) % 26))).join('');

function router(prefixRouting: boolean) {
  const s = initialRouterState();
  routerTable(s, { v: 1, routes: { LS: 'pool-LS' }, pools: [{ pool: 'pool-LS', types: ['LS'], retired: false }], epoch: 1, issuedBy: 'cm-0', sentMs: T0 }, T0);
  let seq = 0;
  // fresh statuses before each request: every instance idle (the load choice alone would not tell them apart)
  const ids = ['a', 'b', 'c', 'd'];
  const pick = (r: InferenceRequest, only?: string) => {
    seq++;
    for (const id of ids) routerStatus(s, status(id, seq), T0);
    return routerPick(s, 'pool-LS', r, new Set(only ? ids.filter((x) => x !== only) : []), T0, rc(prefixRouting));
  };
  return { s, pick };
}

describe('gateway: cache-aware routing on the prompt text', () => {
  it('chunk hashes name the prefix: equal up to where the texts differ, whole chunks only', () => {
    const a = text(1, 10 * PREFIX_CHUNK_CHARS + 17);
    const b = a.slice(0, 6 * PREFIX_CHUNK_CHARS + 5) + text(2, 4 * PREFIX_CHUNK_CHARS);
    const ha = promptChunkHashes({ prompt: a }).hashes, hb = promptChunkHashes({ prompt: b }).hashes;
    expect(ha).toHaveLength(10);
    expect(hb.slice(0, 6)).toEqual(ha.slice(0, 6));
    expect(hb[6]).not.toBe(ha[6]);
    const idx = new RoutedPrefixes(4);
    idx.record('x', ha);
    // bounded: the 4 most recent chunks only (the prompt's last ones), so its prefix no longer matches
    expect(idx.matched('x', ha)).toBe(0);
    idx.record('y', ha.slice(0, 3));
    expect(idx.matched('y', hb)).toBe(3);
  });

  it('a session\'s next turn goes where its prefix went; without prefix routing the turns spread', () => {
    for (const on of [true, false]) {
      const { pick } = router(on);
      const sessions = [1, 2, 3, 4].map((k) => text(k, 40 * PREFIX_CHUNK_CHARS));
      // each session's first turn on its own instance (the others excluded: as after refusals)
      const first = sessions.map((p, k) => pick(req(p), ['a', 'b', 'c', 'd'][k]));
      expect(first).toEqual(['a', 'b', 'c', 'd']);
      // the next turn of each session: its history plus a new message, every instance idle
      const next = sessions.map((p, k) => pick(req(p + text(10 + k, 3 * PREFIX_CHUNK_CHARS))));
      if (on) expect(next).toEqual(first);
      else expect(next.filter((id, k) => id === first[k]).length).toBeLessThanOrEqual(1);
    }
  });
});
