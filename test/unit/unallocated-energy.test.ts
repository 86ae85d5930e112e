/**
 * GPUs that no instance holds: the node agent's meter (modelled idle power in model time; measured counters
 * over the intervals a GPU was unallocated), and how their energy enters the cluster's: the gateway's
 * Prometheus counter and cluster power, the dashboard's state, the cluster leader's energy book.
 */
import { describe, expect, it } from 'vitest';
import { UnallocatedGpuMeter } from '../../src/telemetry/unallocated-energy.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { addReading, emptyBook, nodeReadingId } from '../../src/telemetry/energy-ledger.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { NodeTelemetry, type InstanceTelemetry } from '../../protocols/messages.ts';
import { subjects } from '../../protocols/subjects.ts';
import { permissionsOf } from '../../protocols/permissions.ts';
import { getGpuSpec } from '../../src/model/catalog.ts';

const node = (energyJ: number, over: Partial<NodeTelemetry> = {}): NodeTelemetry => ({
  v: 1, node: 'n0', gpus: 8, unallocated: [4, 5], powerW: 138, energyJ, energySource: 'modelled', sentMs: 0, ...over,
});

describe('UnallocatedGpuMeter', () => {
  it('modelled: idle power x unallocated GPUs x the interval, charged to the set that held during it, in model time', () => {
    const idle = getGpuSpec('h100').idlePowerW;
    const m = new UnallocatedGpuMeter({ kind: 'modelled', idlePowerW: idle, timeScale: 2 });
    expect(m.sample(0, [0, 1, 2]).energyJ).toBe(0);
    // 3 GPUs for 1 s of wall time = 2 s of model time
    expect(m.sample(1000, [0]).energyJ).toBeCloseTo(3 * idle * 2, 9);
    // then 1 GPU for 0.5 s
    const r = m.sample(1500, []);
    expect(r.energyJ).toBeCloseTo(3 * idle * 2 + idle * 1, 9);
    expect(r.powerW).toBe(0);
    // nothing unallocated: nothing charged; a clock going backwards charges nothing
    expect(m.sample(5000, [7]).energyJ).toBeCloseTo(7 * idle, 9);
    expect(m.sample(4000, [7]).energyJ).toBeCloseTo(7 * idle, 9);
    expect(m.sample(5000, []).energyJ).toBeCloseTo(7 * idle, 9);
  });

  it('measured: the counters of the GPUs unallocated over the interval only; a counter reset charges nothing', () => {
    const m = new UnallocatedGpuMeter({ kind: 'measured' });
    m.sample(0, [1], [1_000_000, 5_000_000]);
    // GPU 0 is an instance's (its 9 kJ are the instance's); GPU 1 drew 70 J in 1 s
    let r = m.sample(1000, [0, 1], [10_000_000, 5_070_000]);
    expect(r.energyJ).toBeCloseTo(70, 9);
    expect(r.powerW).toBeCloseTo(70, 9);
    // GPU 0's counter went backwards (driver reload): only GPU 1's 65 J
    r = m.sample(2000, [], [100, 5_135_000]);
    expect(r.energyJ).toBeCloseTo(135, 9);
    // a missing reading charges nothing
    expect(m.sample(3000, [1]).energyJ).toBeCloseTo(135, 9);
  });

  it('rejects a modelled meter without a power or time scale', () => {
    expect(() => new UnallocatedGpuMeter({ kind: 'modelled', idlePowerW: Number.NaN, timeScale: 1 })).toThrow(RangeError);
    expect(() => new UnallocatedGpuMeter({ kind: 'modelled', idlePowerW: 69, timeScale: 0 })).toThrow(RangeError);
  });
});

describe('unallocated GPUs in the cluster energy', () => {
  const inst: InstanceTelemetry = {
    v: 1, id: 'i1', pool: 'p', tp: 2, gpus: [0, 1], clockMhz: 1980, maxClockMhz: 1980, powerW: 600, energyJ: 100,
    energySource: 'modelled', queued: 0, running: 0, loadByType: {}, state: 'running', sentMs: 0,
  };

  it('gateway metrics: a counter per node (agent restarts counted from zero), its power in the cluster power', async () => {
    const m = new TelemetryMetrics({ processMetrics: false });
    m.onInstance(inst, 0);
    m.onNode(node(500), 0);
    m.onNode(node(700), 1000);
    m.onNode(node(50), 2000); // the agent restarted
    const fams = parsePrometheusText(await m.text());
    const v = (fam: string, labels: Record<string, string> = {}) => fams.get(fam)?.samples.find((s) => Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
    expect(v('dynamollm_unallocated_gpu_energy_joules_total', { node: 'n0', source: 'modelled' })).toBe(750);
    expect(v('dynamollm_unallocated_gpus', { node: 'n0' })).toBe(2);
    expect(v('dynamollm_cluster_power_watts')).toBe(738);
    // stale: its gauges and power go, its counter stays, and its next reading adds only the increment
    m.sweep(40_000);
    let f2 = parsePrometheusText(await m.text());
    expect(f2.get('dynamollm_unallocated_gpus')?.samples.length ?? 0).toBe(0);
    expect(f2.get('dynamollm_cluster_power_watts')!.samples[0]!.value).toBe(0);
    m.onNode(node(80), 41_000);
    f2 = parsePrometheusText(await m.text());
    expect(f2.get('dynamollm_unallocated_gpu_energy_joules_total')!.samples[0]!.value).toBe(780);
  });

  it('dashboard state: energy and power include the unallocated GPUs', () => {
    const l = new LiveState({ staleAfterMs: 15_000 });
    l.onInstance(inst, 0);
    l.onInstance({ ...inst, energyJ: 160 }, 1000);
    l.onNode(node(500), 0);
    l.onNode(node(540), 1000);
    const s = l.snapshot(1000);
    expect(s.energyJ).toBe(60 + 40);
    expect(s.powerW).toBe(600 + 138);
    expect(s.unallocatedPowerW).toBe(138);
    expect(l.snapshot(20_000).unallocatedPowerW).toBe(0);
  });

  it('energy book: a node reading adds to the cluster total and to no pool', () => {
    const b = emptyBook();
    addReading(b, { id: 'i1', pool: 'p', energyJ: 10 }, 'whole');
    addReading(b, { id: nodeReadingId('n0'), energyJ: 30 }, 'whole');
    addReading(b, { id: nodeReadingId('n0'), energyJ: 45 }, 'whole');
    expect(b.energyJ).toBe(55);
    expect([...b.poolEnergyJ]).toEqual([['p', 10]]);
  });

  it('on the wire: validated, on its own subject, published by its node agent only, read by gateways, the cluster and observers', () => {
    expect(NodeTelemetry.decode(NodeTelemetry.encode(node(1)))).toEqual(node(1));
    expect(() => NodeTelemetry.encode({ ...node(1), energyJ: -1 })).toThrow();
    expect(subjects.telNode('n0')).toBe('dyn.v1.tel.node.n0');
    const pub = (kind: Parameters<typeof permissionsOf>[0]['role'], id: string) => permissionsOf({ role: kind, id }).publish;
    const sub = (kind: Parameters<typeof permissionsOf>[0]['role'], id: string) => permissionsOf({ role: kind, id }).subscribe;
    expect(pub('node', 'n0')).toContain('dyn.v1.tel.node.n0');
    expect(pub('node', 'n0')).not.toContain('dyn.v1.tel.node.*');
    expect(sub('cluster', 'c0')).toContain('dyn.v1.tel.node.*');
  });
});
