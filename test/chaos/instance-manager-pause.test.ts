/**
 * An instance manager that is alive but answers nothing (SIGSTOP) is replaced (actors/node-agent/main.ts): its pool
 * leader finds it silent for its death window and asks its node agent to start it again; the node agent, whose
 * watchdog saw it miss its liveness probes, kills it and starts it anew under its id instead of answering `already`.
 * The watchdog's own kill is set far off here (misses x interval = 100 s), so only the start request can replace it.
 * Real processes: nats-server, a cluster and a pool manager, a node agent, two instance managers and their engines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type Harness } from '../integration/control-harness.ts';
import { descendants } from '../helpers/procs.ts';

let h: Harness;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startControlPlane({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 4 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500, watchdog: { intervalMs: 500, misses: 200, startGraceMs: 30_000 } },
    engine: { kind: 'emulator', timeScale: 4, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  }, { ready: 2 });
}, 120_000);

afterAll(async () => {
  await h?.stop();
}, 60_000);

/** instance id -> pid of the node agent's instance managers. */
function managers(): Map<string, number> {
  const out = new Map<string, number>();
  for (const [pid, args] of descendants([h.procs.get('n0')!.pid!])) {
    const m = / actor instance --id (\S+)/.exec(args);
    if (m) out.set(m[1]!, pid);
  }
  return out;
}

describe('a stopped instance manager', () => {
  it.runIf(process.platform === 'linux')('is replaced on its pool leader\'s start request, and requests complete after', async () => {
    const before = managers();
    expect(before.size).toBe(2);
    const [id, pid] = [...before][0]!;
    process.kill(pid, 'SIGSTOP');
    const t0 = Date.now();
    let next: number | undefined;
    while (Date.now() - t0 < 60_000) {
      const now = managers().get(id);
      if (now !== undefined && now !== pid) {
        next = now;
        break;
      }
      await sleep(250);
    }
    try {
      process.kill(pid, 0);
      process.kill(pid, 'SIGCONT');
    } catch {
      // killed, as it should be
    }
    expect(next, `instance manager ${id} replaced`).toBeDefined();
    // the watchdog's own kill (100 s of silence) cannot explain it
    expect(Date.now() - t0).toBeLessThan(60_000);
    await h.waitReady(2, 60_000);
    const outs = await Promise.all(Array.from({ length: 4 }, (_, i) => h.send(i)));
    for (const o of outs) expect(o.error ?? 'ok', o.id).toBe('ok');
  }, 150_000);
});
