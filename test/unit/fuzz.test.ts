/** A CI-sized share of `npm run fuzz`: every decoder/parser surface, 300 inputs each; no crash allowed. */
import { describe, expect, it } from 'vitest';
import { SURFACES, fuzz } from '../fuzz/surfaces.ts';

describe('fuzz (CI share)', () => {
  for (const s of SURFACES) {
    it(s.name, () => {
      const r = fuzz(s, 300);
      expect(r.crashes, r.example).toBe(0);
    });
  }
});
