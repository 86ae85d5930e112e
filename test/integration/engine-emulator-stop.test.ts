/**
 * The emulator's stop (`dynamollm engine-emulator`, managed by the same VllmEngine as vLLM): SIGTERM ends the
 * process, its GPUs free, though the manager keeps its stdin pipe open (--exit-on-stdin-close); the manager's
 * SIGKILL after the grace is for an engine that hangs. A re-shard starts the next engine on those GPUs only once
 * this one has exited, and the simulator charges that exit (costs.instanceStopS).
 */
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/index.ts';
import type { EngineExitInfo } from '../../src/engine/engine.ts';

describe('engine emulator stop', () => {
  it('exits on SIGTERM with code 0, within the grace (not killed at its end)', async () => {
    const engine = createEngine({ kind: 'emulator', model: 'llama3.1-8b', gpu: 'h100', tp: 2, gpuIds: [0, 1], port: 0, healthDeadlineMs: 60_000 });
    const exits: EngineExitInfo[] = [];
    engine.on('exit', (i) => exits.push(i));
    await engine.start();
    // a grace longer than any exit: an engine still there at its end is SIGKILLed, and that shows in its exit
    await engine.stop(30_000);
    expect(exits).toEqual([expect.objectContaining({ code: 0, signal: null, expected: true })]);
  }, 90_000);
});
