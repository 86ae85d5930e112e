/**
 * The datapath bench's CPU accounting (test/bench/datapath-cpu.ts) on inputs whose answers are known: roles from
 * command lines (a gateway forked by a gateway is a worker), each role's cores busy, busiest process and busiest thread
 * and CPU per request between two snapshots, the per-role sums of the real-time run, the markdown table, and the
 * engine-alone baseline taken twice (mean, spread, the warning past 20%); the closed loop's clients split over its threads.
 */
import { describe, expect, it } from 'vitest';
import { busiestThreadMs, engineBaseline, loadTable, msByRole, roleLoads, roleOf, type CpuSnapshot } from '../bench/datapath-cpu.ts';
import { splitClients } from '../bench/closed-loop.ts';

const cmd = (...argv: string[]) => argv.join('\0') + '\0';

describe('roleOf', () => {
  it('names the engine, each actor kind, nats-server and up', () => {
    expect(roleOf(cmd('node', 'bin/dynamollm.js', 'engine-emulator', '--model', 'm'))).toBe('engine');
    expect(roleOf(cmd('node', 'bin/dynamollm.js', 'actor', 'instance', '--id', 'i0'))).toBe('instance');
    expect(roleOf(cmd('/usr/bin/nats-server', '-c', 'x.conf'))).toBe('nats-server');
    expect(roleOf(cmd('node', 'bin/dynamollm.js', 'up', '--config', 'c.json'))).toBe('up');
  });
  it('tells a gateway worker (its parent a gateway) from a gateway', () => {
    const gw = cmd('node', 'bin/dynamollm.js', 'actor', 'gateway', '--id', 'gw-0');
    expect(roleOf(gw, 'up')).toBe('gateway');
    expect(roleOf(gw, 'gateway')).toBe('gateway-worker');
    expect(roleOf(gw, 'gateway-primary')).toBe('gateway-worker');
  });
});

describe('roleLoads', () => {
  const roles = new Map([[1, 'gateway-worker'], [2, 'gateway-worker'], [3, 'instance'], [4, 'client (this bench)'], [5, 'gone']]);
  const th = (...ms: [number, number][]) => new Map(ms);
  const before: CpuSnapshot = new Map([
    [1, { procMs: 0, threadMs: th([1, 0], [11, 0]) }], [2, { procMs: 100, threadMs: th([2, 50], [21, 50]) }], [3, { procMs: 0, threadMs: th([3, 0]) }],
    [4, { procMs: 10, threadMs: th([4, 10], [41, 0], [42, 0]) }], [5, { procMs: 0, threadMs: th([5, 0]) }],
  ]);
  // over 2 s and 1,000 requests: worker 1 used 1.8 s (main thread 1.6), worker 2 0.9 s (main 0.8), the instance 0.5 s,
  // the client 1.0 s (its main thread 0.1, its client threads 0.5 and 0.4; a thread 43 started within the window)
  const after: CpuSnapshot = new Map([
    [1, { procMs: 1800, threadMs: th([1, 1600], [11, 200]) }], [2, { procMs: 1000, threadMs: th([2, 850], [21, 100]) }], [3, { procMs: 500, threadMs: th([3, 500]) }],
    [4, { procMs: 1010, threadMs: th([4, 110], [41, 500], [42, 400], [43, 900]) }],
  ]);
  const loads = roleLoads(before, after, roles, 2, 1000);
  it('sums a role over its processes, with its busiest process and busiest thread, busiest role first', () => {
    expect(loads.map((r) => r.role)).toEqual(['gateway-worker', 'client (this bench)', 'instance']);
    const w = loads[0]!;
    expect(w.processes).toBe(2);
    expect(w.cores).toBeCloseTo(1.35);
    expect(w.busiestCores).toBeCloseTo(0.9);
    expect(w.busiestThreadCores).toBeCloseTo(0.8);
    expect(w.usPerReq).toBeCloseTo(2700);
    expect(loads[1]!.cores).toBeCloseTo(0.5);
    // the client's busiest thread is a client thread, not its main thread; a thread absent from a snapshot is left out
    expect(loads[1]!.busiestThreadCores).toBeCloseTo(0.25);
    expect(loads[2]!.usPerReq).toBeCloseTo(500);
  });
  it('leaves out a process gone within the window', () => {
    expect(loads.some((r) => r.role === 'gone')).toBe(false);
  });
  it('renders a caption and one table row per role', () => {
    const t = loadTable('direct path', { wallS: 2, requests: 1000, hostCores: 3.25, hostCpus: 16, roles: loads });
    expect(t).toContain('direct path: 2.00 s, 1000 requests (500.00 req/s); the host 3.25 of 16 CPUs busy');
    expect(t).toContain('| gateway-worker | 2 | 1.35 | 0.90 | 0.80 | 2700.00 |');
    expect(t).toContain('| role | processes | cores busy | busiest process | busiest thread | CPU us/request |');
    expect(t.split('\n').filter((l) => l.startsWith('| ')).length).toBe(1 + loads.length);
  });
});

describe('msByRole', () => {
  it('sums each role of a snapshot', () => {
    const snap: CpuSnapshot = new Map([[1, { procMs: 30, threadMs: new Map() }], [2, { procMs: 12, threadMs: new Map() }], [3, { procMs: 5, threadMs: new Map() }]]);
    expect(msByRole(snap, new Map([[1, 'gateway'], [2, 'gateway'], [3, 'nats-server']]))).toEqual({ gateway: 42, 'nats-server': 5 });
  });
});

describe('engineBaseline', () => {
  it('is the mean of the two measurements, with their spread over the smaller', () => {
    const b = engineBaseline(4000, 3600);
    expect(b.mean).toBe(3800);
    expect(b.spread).toBeCloseTo(400 / 3600);
    expect(b.warning).toBeUndefined();
  });
  it('warns when they differ by more than 20%, either way round', () => {
    const b = engineBaseline(2299, 4487);
    expect(b.mean).toBe(3393);
    expect(b.warning).toMatch(/moved 95% .*2299\.00 req\/s before the paths, 4487\.00 after/);
    expect(engineBaseline(4487, 2299).warning).toMatch(/moved 95%/);
    expect(engineBaseline(1200, 1000).warning).toBeUndefined();
    expect(engineBaseline(1201, 1000).warning).toBeDefined();
  });
});

describe('busiestThreadMs', () => {
  it('is the most one thread spent between the snapshots, over the threads in both', () => {
    expect(busiestThreadMs(new Map([[1, 100], [2, 0], [3, 0]]), new Map([[1, 150], [2, 300], [4, 900]]))).toBe(300);
    expect(busiestThreadMs(new Map(), new Map([[1, 5]]))).toBe(0);
  });
});

describe('splitClients', () => {
  it('spreads the clients over the threads evenly, the larger shares first', () => {
    expect(splitClients(16, 4)).toEqual([4, 4, 4, 4]);
    expect(splitClients(18, 4)).toEqual([5, 5, 4, 4]);
    expect(splitClients(32, 1)).toEqual([32]);
  });
  it('leaves no thread without a client', () => {
    expect(splitClients(3, 4)).toEqual([1, 1, 1]);
    expect(splitClients(0, 4)).toEqual([]);
    expect(splitClients(5, 0)).toEqual([5]);
  });
});
