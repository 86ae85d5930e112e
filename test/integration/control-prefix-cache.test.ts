/**
 * Prefix caching live: real nats-server, real actor processes, an emulated TP2 engine with automatic prefix caching
 * (config engine.prefixCaching -> the engine's --enable-prefix-caching). The instance manager reads the engine's
 * vllm:prefix_cache_queries / _hits from its /metrics and reports them in its InstanceStatus (prefixCacheTokens),
 * and the pool leader's re-shard epoch reads the pool's reuse from those statuses (policy poolPrefixReuse, the
 * function the simulator's pool epoch runs on its engines' counters).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oneTp2InstanceConfig, startControlPlane, type Harness } from './control-harness.ts';
import { InstanceStatus, controlSubjects, type DecisionEvent } from '../../protocols/index.ts';

let h: Harness;
const statuses: InstanceStatus[] = [];

beforeAll(async () => {
  const c = oneTp2InstanceConfig(2);
  h = await startControlPlane({ ...c, epochs: { clusterS: 600, poolS: 4, instanceS: 2 }, engine: { ...(c.engine as object), prefixCaching: true } });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.push(s), { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

describe('control plane: the engine prefix cache counts reach the status and the pool', () => {
  it('three requests with one 2,000-token prompt: the status reports 6,000 tokens looked up and 2 x 1,984 hit; the pool epoch reads 66% reuse', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await h.send(i, { inputTokens: 2000, maxTokens: 4, promptOfInputTokens: true });
      expect(r.ok, r.error).toBe(true);
    }
    const want = { lookup: 6000, hit: 2 * 1984 }; // 124 whole blocks of 16 within the first 1,999 tokens
    let seen: InstanceStatus | undefined;
    for (const until = Date.now() + 10_000; !seen && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 250));
      seen = statuses.find((s) => s.prefixCacheTokens?.lookup === want.lookup);
    }
    expect(seen?.prefixCacheTokens, `statuses: ${JSON.stringify(statuses.at(-1)?.prefixCacheTokens)}`).toEqual(want);
    // the pool leader's next re-shard epoch decides with that reuse (an epoch every 4 s)
    const sinceMs = seen!.sentMs;
    let ev: DecisionEvent | undefined;
    for (const until = Date.now() + 15_000; !ev && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 500));
      ev = (await h.streamEvents()).find((e) => e.kind === 'reshard' && e.atMs >= sinceMs && e.inputs.prefixReuse !== undefined);
    }
    expect(ev, 'no re-shard decision with the measured reuse').toBeDefined();
    expect(ev!.inputs.prefixReuse).toBeCloseTo(want.hit / want.lookup, 6);
    expect(ev!.summary).toContain('prefix reuse 66%: TP2 only');
  }, 60_000);
});
