/**
 * An emulated engine restarted by its instance manager brings its GPUs back with it, on its new port
 * (src/gpu/following.ts): real processes (nats-server, a cluster and a pool manager, a node agent, one instance
 * manager and its emulated engine). The engine is SIGKILLed; while it restarts the GPU reads fail and the telemetry
 * says so (gpuStaleMs), and the cluster's power says how much of it is that instance's old reading (stalePowerW); once the instance serves again, every read succeeds (energy keeps rising, from where it
 * was), the requests sent meanwhile are served, and the power read follows them. The emulated GPU's power is its
 * average over the last second of the engine's timeline (as NVML's on an H100): at time scale 1 that second is the
 * telemetry's period, so each reading holds the requests of the second before it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type Harness } from '../integration/control-harness.ts';
import { ClusterTelemetry, InstanceTelemetry, controlSubjects, InstanceStatus, subjects, type ClusterTelemetry as ClusterTel, type InstanceTelemetry as Tel, type InstanceStatus as St } from '../../protocols/index.ts';
import { descendants } from '../helpers/procs.ts';

let h: Harness;
const tel: Tel[] = [];
const st: St[] = [];
const cluster: ClusterTel[] = [];
type Sent = Awaited<ReturnType<Harness['send']>> & { sentAt: number };
const sent: Sent[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startControlPlane({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  }, { ready: 1 });
  h.bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => void tel.push(t), { capacity: 4096 });
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void st.push(s), { capacity: 4096 });
  h.bus.subscribe(subjects.telCluster(), ClusterTelemetry, (c) => void cluster.push(c), { capacity: 4096 });
}, 120_000);

afterAll(async () => {
  await h?.stop();
}, 60_000);

describe('an emulated engine restarted on another port', () => {
  it.runIf(process.platform === 'linux')('its GPUs are read and clocked again, the energy counted on from where it was', async () => {
    // requests twice a second, so that the instance's clock epoch has something to decide, and on until the
    // telemetry after the restart is read: an idle engine's power is the same figure every second
    let loading = true;
    const pending: Promise<unknown>[] = [];
    const load = (async () => {
      for (let i = 0; loading; i++) {
        const sentAt = Date.now();
        pending.push(h.send(i).then((o) => sent.push({ ...o, sentAt })));
        await sleep(500);
      }
    })();
    await sleep(2000);
    const engines = [...descendants([h.procs.get('n0')!.pid!])].filter(([, args]) => args.includes('engine-emulator'));
    expect(engines).toHaveLength(1);
    // killed 0.8 s after a telemetry (1/s): the next one falls 0.2 s into the restart, which takes ~0.6 s here
    const last = tel.length;
    while (tel.length === last) await sleep(10);
    await sleep(800);
    const before = tel.at(-1)!;
    expect(before.energyJ).toBeGreaterThan(0);
    const killedAt = Date.now();
    process.kill(engines[0]![0], 'SIGKILL');
    const t = Date.now() + 30_000;
    // back: a ready status sent after the restart began (one sent before the crash was noticed does not count)
    const restartedAt = () => st.find((s) => s.sentMs > killedAt && s.state === 'restarting')?.sentMs;
    const readyAgain = () => st.find((s) => s.sentMs > (restartedAt() ?? Infinity) && s.state === 'ready')?.sentMs;
    while (readyAgain() === undefined && Date.now() < t) await sleep(100);
    const back = readyAgain();
    expect(back).toBeDefined();
    await sleep(8000);
    loading = false;
    await load;
    await Promise.all(pending);
    // while the engine restarted, its GPUs could not be read: the telemetry says its figures are stale
    const restarting = tel.filter((x) => x.sentMs > killedAt && x.sentMs < back! && x.state === 'restarting');
    expect(restarting.filter((x) => x.gpuStaleMs !== undefined && x.gpuStaleMs > 0).length).toBeGreaterThan(0);
    const after = tel.filter((x) => x.sentMs > back!);
    expect(after.length).toBeGreaterThan(3);
    // every read after the restart succeeds: the control reads the new process, not the dead one's port
    expect(after.filter((x) => x.gpuStaleMs !== undefined)).toEqual([]);
    // the cluster's power holds the instance's old reading meanwhile and says so (the only instance: all of it),
    // and none once its reads succeed again: the cluster telemetry (1/s) follows the instance's latest (1/s), so a
    // stale one may come until a second after the instance's first fresh telemetry, sent within a second of `back`
    const stale = cluster.filter((c) => c.sentMs > killedAt && c.stalePowerW !== undefined);
    expect(stale.length).toBeGreaterThan(0);
    for (const c of stale) expect(c.stalePowerW).toBe(c.powerW);
    expect(stale.filter((c) => c.sentMs > back! + 3000)).toEqual([]);
    // the requests sent after the restart are served, by the instance
    const served = sent.filter((o) => o.sentAt > back!);
    expect(served.length).toBeGreaterThan(8);
    expect(served.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    // the GPUs are read: energy rises past what it was before the kill, and keeps rising
    expect(after.at(-1)!.energyJ).toBeGreaterThan(before.energyJ);
    expect(after.at(-1)!.energyJ).toBeGreaterThan(after[0]!.energyJ);
    // and the power read follows the requests: not the one figure an idle engine reads every second
    expect(new Set(after.map((x) => x.powerW)).size).toBeGreaterThan(1);
  }, 120_000);
});
