/**
 * The twin check over a window with pool epochs (see twin.bench.ts): deploy/twin.yaml, Llama-3.1-8B on 8 emulated
 * H100s in one pool starting as 4xTP2 with a 30-s pool epoch, the conversation trace's first 300 s at --speed 2,
 * so the pool machine decides a re-shard inside the 150-s wall window, live and simulated (the simulator's pool
 * epoch runs the same machine, starts in the config's layout, `asConfigured`, and carries the re-shard out unit
 * by unit as the live pool does, `reshardExecution: 'units'`, each new engine serving after `instanceStartS`:
 * the emulated engine's start, process and NATS connection, TWIN_START_S, default 3 s: the live pool's start unit took
 * 2.5-3.8 s in four runs on the 2-core VM at load average 4-12 (the bench's note on the live re-shards); each drained engine's
 * GPUs free after `instanceStopS`: the emulated engine's stop, from the instance's SIGTERM to its 'stopped' status
 * once its engine process has exited, TWIN_STOP_S, default 0.5 s: 0.51-0.58 s on the 2-core VM at load average 20).
 */
import type { BenchSection } from './types.ts';
import { runTwin, type TwinSpec } from './twin.bench.ts';

/** This window's spec (TWIN_RESHARD_CONFIG, TWIN_RESHARD_S s of trace at speed 2). */
export const reshardSpec = (): TwinSpec => ({
    title: 'Twin check with re-shard epochs: live cluster vs simulator on the same trace window',
    // TWIN_RESHARD_CONFIG: another config of this shape (e.g. deploy/twin.yaml with scaling.drainMigrateS)
    config: process.env.TWIN_RESHARD_CONFIG ?? 'deploy/twin.yaml',
    windowS: Number(process.env.TWIN_RESHARD_S ?? 300),
    speed: 2,
    shape: '1 server x 8 H100 starting as 4xTP2, one pool, 30-s pool epoch, re-shards carried out unit by unit',
    sim: {
      profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 2, asConfigured: true,
      epochs: { clusterS: 3600, poolS: 30, instanceS: 5 }, reshardExecution: 'units', costs: { instanceStartS: Number(process.env.TWIN_START_S ?? 3), instanceStopS: Number(process.env.TWIN_STOP_S ?? 0.5) },
      knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
    },
});

export async function bench(): Promise<BenchSection> {
  return runTwin(reshardSpec());
}
