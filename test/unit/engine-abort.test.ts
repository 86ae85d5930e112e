/**
 * LeanAbort (src/engine/abort.ts), the gateway's cancellation of a leg and of its engine call: what the engine
 * client reads of it behaves as an AbortController's signal does, side by side with a real one.
 */
import { describe, expect, it } from 'vitest';
import { LeanAbort } from '../../src/engine/abort.ts';

describe('LeanAbort', () => {
  it('aborts once, with the reason given, calling its listeners in order, synchronously, as AbortController does', () => {
    for (const make of [() => new AbortController(), () => new LeanAbort()]) {
      const ac = make();
      const seen: string[] = [];
      const a = () => seen.push(`a:${(ac.signal.reason as Error).message}`);
      const b = () => seen.push('b');
      const c = () => seen.push('c');
      ac.signal.addEventListener('abort', a, { once: true });
      ac.signal.addEventListener('abort', b);
      ac.signal.addEventListener('abort', c);
      ac.signal.removeEventListener('abort', b);
      expect(ac.signal.aborted).toBe(false);
      expect(ac.signal.reason).toBeUndefined();
      ac.abort(new Error('first'));
      seen.push('after');
      ac.abort(new Error('second'));
      ac.signal.addEventListener('abort', () => seen.push('late'));
      expect(seen).toEqual(['a:first', 'c', 'after']);
      expect(ac.signal.aborted).toBe(true);
      expect((ac.signal.reason as Error).message).toBe('first');
    }
  });

  it('without a reason, the reason is an AbortError DOMException, as AbortController gives', () => {
    const lean = new LeanAbort();
    const real = new AbortController();
    lean.abort();
    real.abort();
    expect(lean.reason).toBeInstanceOf(DOMException);
    expect((lean.reason as DOMException).name).toBe((real.signal.reason as DOMException).name);
    expect((lean.reason as DOMException).name).toBe('AbortError');
  });
});
