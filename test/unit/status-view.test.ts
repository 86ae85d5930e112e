/** `dynamollm status` (src/telemetry/status-view.ts): an instance whose GPU read failed shows its power's age, the cluster its stale watts. */
import { describe, expect, it } from 'vitest';
import { renderStatus } from '../../src/telemetry/status-view.ts';
import type { ClusterStatus } from '../../protocols/messages.ts';

const inst = { tp: 2, gpus: [0, 1], clockMhz: 1980, energyJ: 900, queued: 0, running: 1, state: 'ready' };
const st = (stale: boolean): ClusterStatus => ({
  v: 1, leader: 'cm-0', atMs: 0, freeGpus: 0, powerW: 1000, energyJ: 5000, ...(stale ? { stalePowerW: 400 } : {}),
  pools: [{ id: 'p', types: ['SS'], gpus: 4, instances: [{ id: 'i0', ...inst, powerW: 600 }, { id: 'i1', ...inst, gpus: [2, 3], powerW: 400, ...(stale ? { gpuStaleMs: 3000 } : {}) }] }],
});

describe('renderStatus', () => {
  it("marks an instance's power read before its GPU read failed, and the cluster's stale part", () => {
    const lines = renderStatus(st(true)).split('\n');
    expect(lines[0]).toMatch(/power 1000 W \(400 W of it stale\)/);
    expect(lines.find((l) => l.startsWith('i1 '))).toMatch(/ready {2}\(GPU read failed: power 3 s old\)$/);
    expect(lines.find((l) => l.startsWith('i0 '))).toMatch(/ready$/);
    expect(renderStatus(st(false))).not.toMatch(/stale|old/);
  });
});
