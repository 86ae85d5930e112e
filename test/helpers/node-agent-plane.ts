/**
 * The node-agent chaos suites' control plane (test/chaos/node-agent-*.test.ts, instance-disconnect, instance-leave-dispatch):
 * the control harness with one node agent, n0, running two TP2 Llama-3.1-8B instances on its 4 emulated H100s at four
 * times real speed, instance epochs every second, liveness within 1.5 s (or `liveness`); and the directory of n0's adoption
 * records (per cluster id: NATS servers and node), which name the instance managers it supervises.
 */
import { startControlPlane, type Harness } from '../integration/control-harness.ts';
import { adoptionDir, pidAlive, readRecords } from '../../src/runtime/adoption.ts';
import { killTree } from './procs.ts';

export interface NodeAgentPlane {
  h: Harness;
  /** n0's adoption records' directory */
  dir: string;
  /**
   * Stops the harness, then kills the instance managers n0's records name and `more` that still run, with their
   * children: an adopted instance manager is no descendant of the suite's processes.
   */
  stop(more?: Iterable<number>): Promise<void>;
}

export async function startNodeAgentPlane(o: { liveness?: { statusIntervalMs?: number; deadAfterMs?: number; leaseTtlMs?: number } } = {}): Promise<NodeAgentPlane> {
  const h = await startControlPlane({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 4 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500, ...o.liveness },
    engine: { kind: 'emulator', timeScale: 4, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  }, { ready: 2 });
  const dir = adoptionDir(`dynamollm|${h.nats.url}|n0`);
  return {
    h, dir,
    async stop(more = []) {
      const pids = new Set([...readRecords(dir).map((r) => r.pid), ...more]);
      await h.stop();
      killTree([...pids].filter((p) => pidAlive(p)));
    },
  };
}
