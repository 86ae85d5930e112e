/**
 * An instance raises its clock before prefilling a prompt that its clock would prefill past the TTFT SLO: real
 * nats-server, real actor processes, an emulated TP2 Llama3.1-70B engine at 1x. Light load lowers the clock at
 * the first epochs (to the profile's lowest clocks); then one 7,800-token prompt (long class, 2 s TTFT SLO; the
 * profile's long cell is ~3k tokens) arrives. At 800 MHz the emulated TP2 prefill of 7,800 tokens takes ~2.9 s (at 1 GHz ~2.3 s,
 * at 1.6 GHz ~1.5 s; the emulator runs the profile's own model, engineOfProfile);
 * the instance manager must raise the clock (policy prefillClockFloor) before handing the prompt to the engine,
 * so the first token comes inside the SLO.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oneTp2InstanceConfig, openLoop, startControlPlane, type Harness } from './control-harness.ts';
import type { DecisionEvent } from '../../protocols/index.ts';

const EPOCH_S = 3;
let h: Harness;

beforeAll(async () => {
  h = await startControlPlane({ ...oneTp2InstanceConfig(EPOCH_S), model: 'llama3.1-70b', profile: 'profiles/llama3.1-70b.h100.json' });
}, 90_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

const clockEvents = async (): Promise<DecisionEvent[]> => (await h.streamEvents()).filter((e) => e.kind === 'clock' && e.actor.includes('pool-all'));

describe('control plane: the clock a long prompt needs is set before its prefill', () => {
  it('an 8k-token prompt at a low-clocked idle instance raises the clock before its first token', async () => {
    const load = openLoop(h, 0.5, { maxTokens: 8, inputTokens: 100 });
    let low: number | undefined;
    for (const until = Date.now() + 6 * EPOCH_S * 1000; low === undefined && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 500));
      const ev = (await clockEvents()).filter((e) => Number(e.decision.clockMhz) <= 1000).at(-1);
      if (ev) low = Number(ev.decision.clockMhz);
    }
    const outs = await load.stop();
    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    expect(low, 'light load did not lower the clock to <= 1000 MHz').toBeDefined();
    const sentAt = Date.now();
    const r = await h.send(1_000, { inputTokens: 7800, maxTokens: 4, promptOfInputTokens: true });
    expect(r.ok, r.error).toBe(true);
    const raise = (await clockEvents()).find((e) => e.atMs >= sentAt - 50 && e.summary.includes('prefill backlog'));
    expect(raise, 'no prefill-backlog clock raise').toBeDefined();
    console.log(`clock ${low} MHz before; 7.8k-token prompt -> ${Number(raise!.decision.clockMhz)} MHz after ${raise!.atMs - sentAt} ms; TTFT ${r.ttftMs ?? 'none'} ms`);
    expect(Number(raise!.decision.clockMhz)).toBeGreaterThanOrEqual(1550); // 1600 on the profile grid, the GPU's nearest supported clock
    // set before the prefill: the raise precedes the prompt's first token (the TTFT it buys against the 2-s SLO is a
    // latency figure on this machine, logged above)
    expect(r.chunkAt[0], 'a first token').toBeDefined();
    expect(raise!.atMs, `raise at +${raise!.atMs - sentAt} ms, first token at +${r.chunkAt[0]! - sentAt} ms`).toBeLessThan(r.chunkAt[0]!);
  }, 90_000);
});
