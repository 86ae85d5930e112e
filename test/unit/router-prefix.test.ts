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

  it('a holder with a modest queue of mostly cached turns still wins over an idle instance; a queue that costs more than its cache saves loses', () => {
    // three TP8 instances of one pool: h holds a session's history, e and f are idle
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { LS: 'pool-LS' }, pools: [{ pool: 'pool-LS', types: ['LS'], retired: false }], epoch: 1, issuedBy: 'cm-0', sentMs: T0 }, T0);
    const history = text(7, 40 * PREFIX_CHUNK_CHARS);
    let seq = 0;
    const put = (id: string, pending: number, share: number) => routerStatus(s, {
      // TP8: one request in flight keeps it under its SLO cap for LS (the cap is the guard of its own)
      ...status(id, ++seq), tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7], running: pending > 0 ? 1 : 0, pendingPrefillTokens: pending,
      prefixCacheTokens: { lookup: 100_000, hit: Math.round(100_000 * share) },
    }, T0);
    for (const id of ['e', 'f']) put(id, 0, 0.75);
    put('h', 0, 0.75);
    expect(routerPick(s, 'pool-LS', req(history), new Set(['e', 'f']), T0, rc(true))).toBe('h');
    // the next turn, 3,392 tokens (4 characters a token), finds 2,560 cached at h; h waits on one earlier turn of
    // another session admitted and not prefilled, which its status counts whole (3,000 tokens) and whose engine has served 75% of its prompt
    // tokens from cache: ~750 tokens + 832 before this prompt's first token, against 3,392 on an idle instance
    put('h', 3000, 0.75);
    for (const id of ['e', 'f']) put(id, 0, 0.75);
    expect(routerPick(s, 'pool-LS', req(history + text(8, 13 * PREFIX_CHUNK_CHARS)), new Set(), T0, rc(true))).toBe('h');
    // the balance: a backlog whose uncached part (12,000 x 25% = 3,000 tokens) costs more than h's cache saves
    // (2,560) sends the turn to an idle instance, which then holds the history too
    put('h', 12_000, 0.75);
    for (const id of ['e', 'f']) put(id, 0, 0.75);
    expect(routerPick(s, 'pool-LS', req(history + text(9, 13 * PREFIX_CHUNK_CHARS)), new Set(), T0, rc(true))).toBe('e');
  });

  it('a holder whose clock is low now still gets the turn when it takes it within its SLO at max clock', () => {
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { LS: 'pool-LS' }, pools: [{ pool: 'pool-LS', types: ['LS'], retired: false }], epoch: 1, issuedBy: 'cm-0', sentMs: T0 }, T0);
    const history = text(5, 40 * PREFIX_CHUNK_CHARS);
    let seq = 0;
    const low = Math.min(...profile.clocksMhz);
    const put = (id: string, clockMhz: number, running: number) => routerStatus(s, {
      ...status(id, ++seq), tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7], clockMhz, running, pendingPrefillTokens: 0, prefixCacheTokens: { lookup: 100_000, hit: 75_000 },
    }, T0);
    for (const id of ['e', 'f', 'h']) put(id, 1980, 0);
    expect(routerPick(s, 'pool-LS', req(history), new Set(['e', 'f']), T0, rc(true))).toBe('h');
    // the epoch lowered h's clock while it streams one answer: at that clock it cannot take an LS request within
    // its SLO, at max clock it can (its manager raises the clock); e and f run at max clock
    put('h', low, 1);
    for (const id of ['e', 'f']) put(id, 1980, 0);
    const next = req(history + text(6, 13 * PREFIX_CHUNK_CHARS));
    expect(routerPick(s, 'pool-LS', next, new Set(), T0, rc(true))).toBe('h');
  });

  it("remembers per instance what its KV cache holds: a session whose prefix its engine evicted is routed by load, a recent one still to its holder", () => {
    // Llama2-70B on TP2 H100s holds ~22k tokens of KV cache (src/model): 347 chunks of 64 tokens
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { LS: 'pool-LS' }, pools: [{ pool: 'pool-LS', types: ['LS'], retired: false }], epoch: 1, issuedBy: 'cm-0', sentMs: T0 }, T0);
    let seq = 0;
    const idle = () => {
      for (const id of ['e', 'f', 'h']) routerStatus(s, { ...status(id, ++seq), tp: 2, gpuIds: [0, 1] }, T0);
    };
    // ten sessions of 40 chunks (2,560 tokens) each went to h: 400 chunks, more than its cache holds
    const sessions = Array.from({ length: 10 }, (_, k) => text(20 + k, 40 * PREFIX_CHUNK_CHARS));
    for (const p of sessions) {
      idle();
      expect(routerPick(s, 'pool-LS', req(p), new Set(['e', 'f']), T0, rc(true))).toBe('h');
    }
    // the first session's blocks are the least recently used: its engine evicted them, and the router forgot them
    idle();
    expect(routerPick(s, 'pool-LS', req(sessions[0] + text(40, 5 * PREFIX_CHUNK_CHARS)), new Set(), T0, rc(true))).not.toBe('h');
    idle();
    expect(routerPick(s, 'pool-LS', req(sessions[9] + text(41, 5 * PREFIX_CHUNK_CHARS)), new Set(), T0, rc(true))).toBe('h');
  });
});
