/**
 * A prompt counted while no instance is ready but one is coming back (issue 13): the gateway counts every prompt
 * with an engine's tokenizer before admission; with the only instance restarting (its engine loading for 6 s)
 * nobody can count it. The gateway's router sees the instance starting (policy routerCapacityComing) and the
 * tokenize is retried past its 2-s deadline until the engine answers, as a pool holds a request for it. Without
 * that wait it fails after 2 s (no responders, or the instance's engine down): a 503 for the client.
 * Real nats-server with the project's permissions, real actor processes (cluster manager, pool manager, node
 * agent, its instance manager and emulated engine); the gateway's NatsBackend and GatewayRouter in the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor as until } from '../helpers/wait.ts';
import { startHarness, type Harness } from './control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayRouter } from '../../actors/gateway/router.ts';
import { parseConfig } from '../../actors/common/config.ts';

const TOKENIZE_MS = 2000;
const HOLD_MS = 30_000;
const config = {
  model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
  servers: [{ id: 'n0', gpus: 2 }],
  pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
  epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
  liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
  engine: { kind: 'emulator', timeScale: 1, startupDelayMs: 6000, healthDeadlineMs: HOLD_MS, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
};
let h: Harness;
let gw: Bus;
let router: GatewayRouter;
let backend: NatsBackend;

beforeAll(async () => {
  h = await startHarness(config);
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-tok'), name: 'gw-tok', log: silentLogger() });
  router = new GatewayRouter(gw, parseConfig(config));
  router.start();
  backend = new NatsBackend(gw, { tokenizeTimeoutMs: TOKENIZE_MS, admitAttemptMs: 1000, router, tokenizeHoldMs: HOLD_MS });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
}, 60_000);

afterAll(async () => {
  router?.stop();
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

describe('a prompt counted while the only instance restarts', () => {
  it('waits past the tokenize deadline for the restarted engine and is counted', async () => {
    await h.waitReady(1, 90_000);
    await until(() => (router.capacityComing(HOLD_MS) ? undefined : true), 10_000, 'a ready instance in the router view');
    const ready = await backend.tokenize({ v: 1, model: 'llama3.1-8b', prompt: 'counted while ready' });
    expect(ready.ok).toBe(true);

    const pid = await until(() => h.pidsOf('actor instance')[0], 5000, 'the instance manager');
    process.kill(pid, 'SIGKILL');
    // the node agent starts it again under the same id: its engine loads for 6 s
    await until(() => (router.capacityComing(HOLD_MS) ? true : undefined), 10_000, 'the instance not ready in the router view');
    const t0 = Date.now();
    const r = await backend.tokenize({ v: 1, model: 'llama3.1-8b', prompt: 'counted while the engine loads' });
    const tookMs = Date.now() - t0;
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
    expect(r.count).toBeGreaterThan(3);
    expect(tookMs).toBeGreaterThan(TOKENIZE_MS);
    expect(router.capacityComing(HOLD_MS)).toBe(false);
  }, 120_000);
});
