/**
 * The hand-written TokenChunk validator (protocols/messages.ts, the codec's fast path) against the zod
 * schema it stands in for: on generated valid, mutated and garbage inputs, whatever the fast check accepts
 * zod accepts and returns unchanged; and the codec's answer (value or error message) is zod's.
 */
import { describe, expect, it } from 'vitest';
import { tokenChunk, TokenChunk, fastTokenChunkCheck, MAX_CHUNK_TOKENS } from '../../protocols/messages.ts';
import { ProtocolError } from '../../protocols/errors.ts';
import { compileFastCheck } from '../../protocols/fast-check.ts';
import { CODECS, SAMPLES } from '../fixtures/actors/samples.ts';
import { z } from 'zod';

// small deterministic PRNG (mulberry32) so a failure reproduces
function rng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WEIRD: unknown[] = [
  undefined, null, true, false, 0, -0, -1, 1.5, 2 ** 53, NaN, Infinity, -Infinity, '', 'x', 'a'.repeat(129), 'bad id!', 'LL', 'XX',
  'stop', 'error', 'modelled', [], [0, 1], [-1], [NaN], {}, { a: 1 }, 1e300,
];

function validChunk(r: () => number): Record<string, unknown> {
  const c: Record<string, unknown> = { v: 1, id: 'req_' + Math.floor(r() * 1e9).toString(36), seq: Math.floor(r() * 500), text: ' tok'.repeat(Math.floor(r() * 4)), tokens: Math.floor(r() * 5) };
  if (r() < 0.5) c.instance = 'inst-0';
  if (r() < 0.5) c.pool = 'pool-all';
  if (r() < 0.5) c.type = ['SS', 'ML', 'LL'][Math.floor(r() * 3)];
  if (r() < 0.3) c.ttftMs = r() * 300;
  if (r() < 0.3) c.tokenOffsetsMs = Array.from({ length: Math.floor(r() * 6) }, (_, i) => i * r() * 20);
  if (r() < 0.2) {
    c.done = true;
    c.finishReason = r() < 0.5 ? 'stop' : 'length';
    c.usage = { promptTokens: 10, completionTokens: 20, energyJ: r() * 100, energySource: r() < 0.5 ? 'modelled' : 'measured' };
  }
  if (r() < 0.05) c.error = { code: 'timeout', message: 'x', retryable: true };
  return c;
}

function mutate(c: Record<string, unknown>, r: () => number): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(c);
  const keys = ['v', 'id', 'seq', 'text', 'tokens', 'done', 'finishReason', 'usage', 'instance', 'pool', 'type', 'ttftMs', 'tokenOffsetsMs', 'relayCredit', 'error', 'extra'];
  const n = 1 + Math.floor(r() * 2);
  for (let i = 0; i < n; i++) {
    const k = keys[Math.floor(r() * keys.length)]!;
    const p = r();
    if (p < 0.2) delete out[k];
    else if (p < 0.3 && k === 'usage') out.usage = { ...(out.usage as object), [['promptTokens', 'energyJ', 'energySource', 'x'][Math.floor(r() * 4)]!]: WEIRD[Math.floor(r() * WEIRD.length)] };
    else if (p < 0.4 && k === 'tokenOffsetsMs') out.tokenOffsetsMs = [0, WEIRD[Math.floor(r() * WEIRD.length)]];
    else out[k] = WEIRD[Math.floor(r() * WEIRD.length)];
  }
  return out;
}

function zodVerdict(x: Record<string, unknown>): { ok: boolean; data?: unknown } {
  const z = tokenChunk.safeParse(x);
  return z.success ? { ok: true, data: z.data } : { ok: false };
}

describe('TokenChunk fast validator vs zod', () => {
  it('accepts only what zod accepts unchanged, on 20 000 generated inputs', () => {
    const r = rng(42);
    let fastYes = 0, zodYes = 0, fastNoZodYes = 0;
    for (let i = 0; i < 20_000; i++) {
      const base = validChunk(r);
      const x = r() < 0.3 ? base : mutate(base, r);
      const fast = fastTokenChunkCheck(x);
      const z = zodVerdict(x);
      if (fast) {
        fastYes++;
        expect(z.ok, JSON.stringify(x)).toBe(true);
        expect(z.data).toEqual(x);
      }
      if (z.ok) zodYes++;
      if (!fast && z.ok) fastNoZodYes++;
    }
    // the fast path must actually carry the common traffic (valid chunks without error/extra keys)
    expect(fastYes).toBeGreaterThan(4000);
    // zod-only accepts are the shapes the fast path leaves to zod (error field, unknown keys)
    expect(fastNoZodYes).toBeLessThan(zodYes);
  });

  it('the codec answers exactly like zod: same value or the same ProtocolError message', () => {
    const r = rng(7);
    for (let i = 0; i < 3000; i++) {
      const x = mutate(validChunk(r), r);
      if (x.v !== 1) continue; // version handled before either validator
      const z = tokenChunk.safeParse(x);
      let got: unknown, err: unknown;
      try {
        got = TokenChunk.check(x, 's');
      } catch (e) {
        err = e;
      }
      if (z.success) expect(got).toEqual(z.data);
      else {
        expect(err).toBeInstanceOf(ProtocolError);
        expect((err as Error).message).toContain('TokenChunk: invalid payload');
      }
    }
  });

  it('edge cases: offsets cap, -0, unknown key, error field', () => {
    const ok = { v: 1, id: 'a', seq: 0, text: '', tokens: 0 };
    expect(fastTokenChunkCheck(ok)).toBe(true);
    expect(fastTokenChunkCheck({ ...ok, seq: -0 })).toBe(tokenChunk.safeParse({ ...ok, seq: -0 }).success);
    expect(fastTokenChunkCheck({ ...ok, tokenOffsetsMs: new Array(MAX_CHUNK_TOKENS + 1).fill(0) })).toBe(false);
    expect(tokenChunk.safeParse({ ...ok, tokenOffsetsMs: new Array(MAX_CHUNK_TOKENS + 1).fill(0) }).success).toBe(false);
    expect(fastTokenChunkCheck({ ...ok, extra: 1 })).toBe(false); // zod strips it: left to zod
    expect(TokenChunk.check({ ...ok, extra: 1 })).toEqual(ok);
    expect(fastTokenChunkCheck({ ...ok, error: { code: 'timeout', message: 'm', retryable: true } })).toBe(false);
    expect(() => TokenChunk.check({ ...ok, id: 'bad id' })).toThrow(/TokenChunk: invalid payload \(id:/);
  });
});

describe('compiled validators (protocols/fast-check.ts) vs zod, every codec', () => {
  /** every path to a value inside x (objects and arrays), the root excluded. */
  function paths(x: unknown, pre: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
    if (x !== null && typeof x === 'object') {
      for (const k of Object.keys(x)) {
        const p = [...pre, Array.isArray(x) ? Number(k) : k];
        out.push(p);
        paths((x as Record<string, unknown>)[k], p, out);
      }
    }
    return out;
  }
  function mutateDeep(x: Record<string, unknown>, r: () => number): Record<string, unknown> {
    const out = structuredClone(x);
    const ps = paths(out);
    const n = 1 + Math.floor(r() * 2);
    for (let i = 0; i < n && ps.length; i++) {
      const p = ps[Math.floor(r() * ps.length)]!;
      let parent: Record<string | number, unknown> = out;
      for (const k of p.slice(0, -1)) parent = (parent === null || typeof parent !== 'object' ? parent : parent[k]) as Record<string | number, unknown>;
      if (parent === null || typeof parent !== 'object') continue;
      const last = p[p.length - 1]!;
      const q = r();
      if (q < 0.15 && !Array.isArray(parent)) delete parent[last];
      // (decoded msgpack never puts named keys on an array)
      else if (q < 0.25 && !Array.isArray(parent)) parent[r() < 0.5 ? 'extra' : '__x'] = 1;
      else parent[last] = structuredClone(WEIRD[Math.floor(r() * WEIRD.length)]);
    }
    return out;
  }

  for (const [name, c] of Object.entries(CODECS)) {
    it(`${name}: vouches for its sample, and only for what zod accepts unchanged`, () => {
      const fast = compileFastCheck(c.schema);
      const sample = SAMPLES[name] as Record<string, unknown>;
      expect(fast(sample), 'the valid sample takes the fast path').toBe(true);
      const r = rng(name.length * 7919);
      for (let i = 0; i < 1500; i++) {
        const x = mutateDeep(sample, r);
        const z = c.schema.safeParse(x);
        if (fast(x)) {
          expect(z.success, `${name} ${JSON.stringify(x)}`).toBe(true);
          expect(z.data).toEqual(x);
        }
        if (x.v !== 1) continue;
        let got: unknown, err: unknown;
        try {
          got = c.check(x, 's');
        } catch (e) {
          err = e;
        }
        if (z.success) expect(got).toEqual(z.data);
        else expect(err).toBeInstanceOf(ProtocolError);
      }
    });
  }

  it('unions: a later option vouches only when the earlier ones surely reject', () => {
    const s = z.object({ a: z.union([z.object({ k: z.string() }), z.record(z.unknown())]) });
    const fast = compileFastCheck(s);
    // zod's first option strips `x`: the value changes, so the compiled check must not vouch
    expect(fast({ a: { k: 's', x: 1 } })).toBe(false);
    expect(s.parse({ a: { k: 's', x: 1 } })).toEqual({ a: { k: 's' } });
    expect(fast({ a: { k: 's' } })).toBe(true);
    const n = compileFastCheck(z.object({ n: z.number().int().positive(), f: z.number().finite().optional() }));
    expect(n({ n: 1 })).toBe(true);
    expect(n({ n: 0 })).toBe(false);
    expect(n({ n: 1, f: Infinity })).toBe(false);
    expect(n({ n: NaN })).toBe(false);
    expect(compileFastCheck(z.object({ s: z.string().email() }))({ s: 'a@b.c' })).toBe(false); // unknown check: zod decides
  });
});
