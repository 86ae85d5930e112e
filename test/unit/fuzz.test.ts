/** A CI-sized share of `npm run fuzz`: every decoder/parser surface, 300 inputs each; no crash allowed. */
import { afterAll, describe, expect, it } from 'vitest';
import { SURFACES, closeFuzzGateway, fuzz } from '../fuzz/surfaces.ts';

describe('fuzz (CI share)', () => {
  afterAll(closeFuzzGateway);
  for (const s of SURFACES) {
    it(s.name, async () => {
      const r = await fuzz(s, 300);
      expect(r.crashes, r.example).toBe(0);
    });
  }
});
