/**
 * Issue 5, the instance clock epoch: real nats-server, real actor processes (cluster, pool, node agent,
 * instance manager) and an emulated TP2 Llama3.1-8B engine at 1x. A load step up raises the instance's
 * clock within the first epoch after the step with p99 TTFT/TBT within the SLO; a drop lowers it. The
 * clock is read from InstanceTelemetry and from the decision events kept in the JetStream stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceTelemetry, subjects, type InstanceTelemetry as Tel } from '../../protocols/index.ts';
import { oneTp2InstanceConfig, openLoop, p99, startHarness, type Harness } from './control-harness.ts';

const EPOCH_S = 1;
let h: Harness;
const tel: Tel[] = [];

beforeAll(async () => {
  h = await startHarness(oneTp2InstanceConfig(EPOCH_S));
  h.bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => void tel.push(t), { capacity: 10_000 });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  await h.waitReady(1);
}, 90_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

const clockAt = (t: number) => [...tel].reverse().find((x) => x.sentMs <= t)?.clockMhz ?? 0;

describe('control plane: instance clock epoch', () => {
  it('a load step up raises the clock within an epoch with p99 TTFT/TBT in SLO; a drop lowers it', async () => {
    // light load: SS requests (input 100, 40 output tokens) at 1 req/s -> the least-energy clock is low
    const low = openLoop(h, 1, { maxTokens: 40, inputTokens: 100 });
    await new Promise((r) => setTimeout(r, 5000));
    const lowClock = clockAt(Date.now());
    const stepAt = Date.now();
    low.setRate(12);
    await new Promise((r) => setTimeout(r, 5000));
    const highEnd = Date.now();
    const highClock = clockAt(highEnd);
    const dropAt = Date.now();
    low.setRate(0.5);
    await new Promise((r) => setTimeout(r, 6000));
    const outs = await low.stop();
    const endClock = clockAt(Date.now());

    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    const events = await h.streamEvents();
    const clocks = events.filter((e) => e.kind === 'clock');
    const raise = clocks.find((e) => e.atMs > stepAt && Number(e.decision.clockMhz) > lowClock);
    expect(lowClock).toBeGreaterThan(0);
    expect(raise, `no clock raise after the step (low clock ${lowClock})`).toBeDefined();
    // the first epoch that ends after the step decides (the step may fall late in that epoch's window: then
    // the next one, still within two epoch lengths of the step)
    expect(raise!.atMs - stepAt).toBeLessThanOrEqual(2 * EPOCH_S * 1000 + 300);
    expect(highClock).toBeGreaterThan(lowClock);
    // the event carries its inputs: the measured load and the policy's predicted power
    expect(raise!.inputs.loadByType).toBeDefined();
    expect((raise!.inputs.loadByType as Record<string, number>).SS).toBeGreaterThan(2);
    // p99 TTFT (instance-measured from arrival) and TBT of the high-load phase within the SLO (Table IV: 250/100 ms)
    const high = outs.filter((o) => o.at >= stepAt && o.at < highEnd);
    expect(high.length).toBeGreaterThan(40);
    const ttftP99 = p99(high.map((o) => o.ttftMs ?? Infinity));
    expect(ttftP99).toBeLessThanOrEqual(250);
    const telHigh = tel.filter((t) => t.sentMs > stepAt + 1000 && t.sentMs <= highEnd + 1000 && t.tbtP99Ms !== undefined);
    const tbtP99 = Math.max(...telHigh.map((t) => t.tbtP99Ms!));
    expect(telHigh.length).toBeGreaterThan(0);
    expect(tbtP99).toBeLessThanOrEqual(100);
    // the drop lowers the clock again (EWMA: a few epochs)
    const lower = clocks.find((e) => e.atMs > dropAt && Number(e.decision.clockMhz) < highClock);
    expect(lower).toBeDefined();
    expect(endClock).toBeLessThan(highClock);
    // cluster status: power and energy come from the instances' telemetry (modelled for emulated GPUs)
    const s1 = await h.status();
    await new Promise((r) => setTimeout(r, 2200));
    const s2 = await h.status();
    const inst = s2!.pools.flatMap((p) => p.instances);
    expect(inst.length).toBeGreaterThan(0);
    for (const i of inst) {
      expect(i.powerW).toBeGreaterThan(0);
      expect(i.energyJ).toBeGreaterThan(0);
      // the value an instance last published
      expect(tel.some((t) => t.id === i.id && t.energyJ === i.energyJ)).toBe(true);
    }
    expect(s2!.powerW).toBeCloseTo(inst.reduce((a, i) => a + i.powerW, 0), 6);
    expect(s2!.energyJ).toBeGreaterThan(s1!.energyJ);
    // cluster energy grows by about power x time (2.2 s between the two reads, telemetry every 1 s)
    expect(s2!.energyJ - s1!.energyJ).toBeGreaterThan(0.3 * s2!.powerW);
    expect(s2!.energyJ - s1!.energyJ).toBeLessThan(4 * s2!.powerW);
    console.log(`status: cluster ${s2!.powerW.toFixed(0)} W, ${s2!.energyJ.toFixed(0)} J (+${(s2!.energyJ - s1!.energyJ).toFixed(0)} J in 2.2 s)`);
    console.log(`clock: low load ${lowClock} MHz -> step at +0 -> ${Number(raise!.decision.clockMhz)} MHz after ${raise!.atMs - stepAt} ms (epoch ${EPOCH_S * 1000} ms); ` +
      `high phase ${high.length} req, p99 TTFT ${ttftP99} ms, p99 TBT ${tbtP99} ms; drop -> ${Number(lower!.decision.clockMhz)} MHz after ${lower!.atMs - dropAt} ms, end ${endClock} MHz`);
  }, 60_000);
});
