/**
 * Server power, live: a real nats-server, real actor processes and emulated Llama2-70B engines on two 8-GPU servers,
 * and the operator's power driver a fake one (test/fixtures/power/driver.mjs) that powers an emulated host by
 * starting or killing its node agent. With no load the plan needs one server: the cluster manager powers the other
 * off through the driver once it is drained and idle (its node agent dies). A sustained LS rise makes the plan want
 * both: the cluster manager powers it on, the driver starts its node agent, and once it reports the plan grants it
 * and its instance serves. Decisions are read back from the JetStream stream.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { ClusterTelemetry, subjects } from '../../protocols/index.ts';
import { openLoop, startHarness, type Harness } from './control-harness.ts';

const DRIVER = resolve('test/fixtures/power/driver.mjs');
let h: Harness;
let state: string;

const alive = (server: string): boolean => {
  const f = join(state, `${server}.pid`);
  if (!existsSync(f)) return false;
  try {
    process.kill(Number(readFileSync(f, 'utf8')), 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, ok: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

beforeAll(async () => {
  state = mkdtempSync(join(tmpdir(), 'dyn-power-'));
  h = await startHarness({
    model: 'llama2-70b', gpu: 'h100', profile: 'profiles/llama2-70b.h100.json',
    servers: [{ id: 'n0', gpus: 8 }, { id: 'n1', gpus: 8 }],
    epochs: { clusterS: 60, poolS: 600, instanceS: 1 },
    scaling: { instanceStartupS: 0, minEpochGapS: 2, recentWindowS: 6 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 8, maxInEngine: 32, maxQueued: 128 },
    power: { driver: [process.execPath, DRIVER, '--state', state, '{action}', '{server}'], timeoutS: 10, bootS: 2, bootDeadlineS: 60, reserveServers: 0, idleBeforeOffS: 2 },
  });
  // the emulated hosts: their node agents run under the driver's control, started as a power-on would
  for (const n of ['n0', 'n1']) {
    writeFileSync(join(state, `${n}.json`), JSON.stringify({ argv: [process.execPath, ...launchArgs('node', ['--id', n, '--config', h.cfgPath])], env: { DYNAMOLLM_LOG_LEVEL: 'error' } }));
    execFileSync(process.execPath, [DRIVER, '--state', state, 'on', n]);
  }
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  await h.waitReady(1);
}, 90_000);

afterAll(async () => {
  await h?.stop(); // the node agents carry the suite's config path: stopped with the rest
}, 30_000);

describe('control plane: server power through the power driver', () => {
  it('powers a drained idle server off, and on again (ahead of its grant) when the plan needs it', async () => {
    // no load: the longest pool keeps one server; the other is drained and idle, and powered off
    const before = await h.status();
    const held = before!.pools.flatMap((p) => p.instances.map((i) => i.node));
    expect(held.length).toBe(1);
    const spare = held[0] === 'n0' ? 'n1' : 'n0';
    await until(`${spare} powered off`, () => !alive(spare), 30_000);
    expect(alive(held[0]!)).toBe(true);
    const calls = () => readFileSync(join(state, 'calls.log'), 'utf8').trim().split('\n');
    expect(calls()).toEqual(['on n0', 'on n1', `off ${spare}`]);
    let evs = await h.streamEvents();
    const power = () => evs.filter((e) => e.kind === 'power' && e.actor === 'cm-0').map((e) => e.summary);
    await until('the off event', async () => (evs = await h.streamEvents(), power().includes(`${spare} off`)), 10_000);
    expect(power()[0]).toMatch(new RegExp(`^power off ${spare}: no grant and no instance for \\d+ s`));

    // a sustained LS rise (one TP8 server carries ~0.23 req/s within SLO): the plan wants both servers
    const load = openLoop(h, 1, { maxTokens: 30, inputTokens: 2000 });
    await until(`${spare} powered on`, () => alive(spare), 40_000);
    await until(`an instance ready on ${spare}`, async () => ((await h.status())?.pools ?? []).some((p) => p.instances.some((i) => i.node === spare && i.state === 'ready')), 60_000);
    const onSpare = new Set(((await h.status())?.pools ?? []).flatMap((p) => p.instances.filter((i) => i.node === spare).map((i) => i.id)));
    const firstAfter = load.sent();
    await new Promise((r) => setTimeout(r, 5000));
    const outs = await load.stop();
    expect(outs.filter((o) => !o.ok).map((o) => o.error)).toEqual([]);
    expect(outs.slice(firstAfter).filter((o) => o.admitted && onSpare.has(o.admitted)).length).toBeGreaterThan(0);
    expect(calls()).toEqual(['on n0', 'on n1', `off ${spare}`, `on ${spare}`]);

    evs = await h.streamEvents();
    const p = power();
    expect(p).toContainEqual(expect.stringMatching(new RegExp(`^power on ${spare}: `)));
    expect(p).toContainEqual(expect.stringMatching(new RegExp(`^${spare} up \\d+ s after its power-on`)));
    // the servers it waited for granted as soon as it was up
    const granted = evs.find((e) => e.kind === 'scale' && e.actor === 'cm-0' && e.decision.why === `servers powered on (${spare} up)`);
    expect(granted, 'no grant when the server came up').toBeDefined();
    // the cluster's telemetry counts the servers by power state and the power commands
    const tel = await new Promise<ClusterTelemetry>((ok, fail) => {
      const sub = h.bus.subscribe(subjects.telCluster(), ClusterTelemetry, (t) => {
        sub.unsubscribe();
        ok(t);
      }, { capacity: 4 });
      setTimeout(() => fail(new Error('no cluster telemetry')), 5000);
    });
    expect(tel.servers).toEqual({ on: 2, booting: 0, stopping: 0, off: 0, failed: 0, powerChanges: 2 });
  }, 180_000);
});
