/**
 * A bucket's open shared by its callers (src/runtime/kv-open.ts KvOpens, what Bus.kv uses), on a virtual clock: an open
 * still pending after KV_OPEN_AGAIN_MS is joined by a new attempt, and the bucket is whichever attempt opens it first.
 * A restarted manager whose first open of a lease bucket began while that bucket's NATS server was down (nats.js then
 * waits its 5-s JetStream default on each call) otherwise stayed without the bucket for 5-11 s after the server came
 * back (test/integration/lease-fresh-open.test.ts measures it on a real NATS cluster).
 */
import { describe, expect, it } from 'vitest';
import type { KV } from '@nats-io/kv';
import { KV_OPEN_AGAIN_MS, KvOpens } from '../../src/runtime/kv-open.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

/** An open the test settles by hand. */
function pending(): { p: Promise<KV>; resolve: (kv: KV) => void; reject: (err: Error) => void } {
  let resolve!: (kv: KV) => void;
  let reject!: (err: Error) => void;
  const p = new Promise<KV>((res, rej) => ((resolve = res), (reject = rej)));
  return { p, resolve, reject };
}
const bucket = (name: string) => ({ bucket: name }) as unknown as KV;
const flush = () => new Promise((r) => setImmediate(r));

describe('KvOpens: one open per bucket, joined by a new attempt once it is stale', () => {
  it('callers within KV_OPEN_AGAIN_MS share the open; a call after it starts another, and the first to open wins', async () => {
    const clock = new ManualClock(0);
    const opens = new KvOpens(clock);
    const attempts: ReturnType<typeof pending>[] = [];
    const open = () => {
      const a = pending();
      attempts.push(a);
      return a.p;
    };
    const first = opens.open('b', open);
    clock.advance(KV_OPEN_AGAIN_MS - 1);
    const second = opens.open('b', open);
    expect(attempts.length).toBe(1);
    clock.advance(1);
    const third = opens.open('b', open);
    expect(attempts.length).toBe(2);
    // the first attempt (began while the server was down) never answers; the second opens the bucket
    const kv = bucket('b');
    attempts[1]!.resolve(kv);
    expect(await Promise.race([third, flush().then(() => 'pending')])).toBe(kv);
    expect(await Promise.race([first, flush().then(() => 'pending')])).toBe(kv);
    expect(await Promise.race([second, flush().then(() => 'pending')])).toBe(kv);
    // opened: later calls get it without a new attempt, however late
    clock.advance(60_000);
    expect(await opens.open('b', open)).toBe(kv);
    expect(attempts.length).toBe(2);
  });

  it('an attempt that fails while another is pending does not fail the open; all failed: the next call tries anew', async () => {
    const clock = new ManualClock(0);
    const opens = new KvOpens(clock);
    const attempts: ReturnType<typeof pending>[] = [];
    const open = () => {
      const a = pending();
      attempts.push(a);
      return a.p;
    };
    const first = opens.open('b', open);
    clock.advance(KV_OPEN_AGAIN_MS);
    const second = opens.open('b', open);
    attempts[0]!.reject(new Error('timeout'));
    await flush();
    let failed: unknown;
    void second.catch((e: unknown) => (failed = e));
    await flush();
    expect(failed).toBeUndefined();
    attempts[1]!.reject(new Error('stream not found'));
    await expect(first).rejects.toThrow('stream not found');
    await expect(second).rejects.toThrow('stream not found');
    // nothing in flight: a call at once is a new attempt, not the failed open
    const third = opens.open('b', open);
    expect(attempts.length).toBe(3);
    attempts[2]!.resolve(bucket('b'));
    expect(await third).toEqual(bucket('b'));
  });

  it('attempts in flight are bounded per bucket; buckets are apart', async () => {
    const clock = new ManualClock(0);
    const opens = new KvOpens(clock);
    let n = 0;
    const never = () => {
      n++;
      return new Promise<KV>(() => {});
    };
    for (let t = 0; t < 30; t++) {
      void opens.open('b', never);
      clock.advance(KV_OPEN_AGAIN_MS);
    }
    expect(n).toBe(12);
    void opens.open('c', never);
    expect(n).toBe(13);
  });
});
