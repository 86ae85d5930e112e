/**
 * The twin check over a window with pool epochs (see twin.bench.ts): deploy/twin.yaml, Llama-3.1-8B on 8 emulated
 * H100s in one pool starting as 2xTP4 with a 30-s pool epoch, so the pool machine decides a re-shard inside a
 * 150-s window, live and simulated (the simulator's pool epoch runs the same machine and starts in the
 * config's layout, `asConfigured`).
 */
import type { BenchSection } from './types.ts';
import { runTwin } from './twin.bench.ts';

export async function bench(): Promise<BenchSection> {
  return runTwin({
    title: 'Twin check with re-shard epochs: live cluster vs simulator on the same trace window',
    config: 'deploy/twin.yaml',
    windowS: Number(process.env.TWIN_RESHARD_S ?? 150),
    shape: '1 server x 8 H100 starting as 2xTP4, one pool, 30-s pool epoch',
    sim: {
      profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 4, asConfigured: true,
      epochs: { clusterS: 3600, poolS: 30, instanceS: 5 },
      knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
    },
  });
}
