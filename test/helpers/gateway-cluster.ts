/**
 * The data-path suites' cluster (request migration, drain migration, a hung engine, admission credits, the direct
 * plane's failover): the control harness (test/integration/control-harness.ts: a real nats-server with the project's
 * config and permissions, cluster, pool and node managers, instance managers with emulated engines) and, once its
 * instances are ready, a gateway in the test: the real NatsBackend and GatewayRouter on a gateway-role connection,
 * wired as the gateway actor wires them, and ready once its router sees what the suite needs. Also the requests and
 * checks of these suites and of the intake-hold ones (a pool's hold, its election): a request's build, a timed send,
 * the checks that a client's stream is whole.
 */
import { expect } from 'vitest';
import { startControlPlane, type Harness } from '../integration/control-harness.ts';
import { as } from './nats.ts';
import { childrenOf, commandLine } from './procs.ts';
import { sleep } from './wait.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend, type NatsBackendOptions } from '../../actors/gateway/nats-backend.ts';
import { GatewayRouter } from '../../actors/gateway/router.ts';
import { loadConfig, profilePathOf, type ClusterConfig } from '../../actors/common/config.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { subjects, type InferenceRequest, type TokenChunk } from '../../protocols/index.ts';

export const MODEL = 'llama3.1-8b';
/** the suites' prompt, and its length in the emulator's tokens (InferenceRequest.inputTokens) */
export const PROMPT = 'Tell me about energy efficient inference in large clusters.';
export const PROMPT_TOKENS = 13;

/**
 * `instances` TP1 Llama-3.1-8B instances, one on each emulated H100 of server n0, in one pool of all nine types;
 * cluster and pool epochs out of the way, an instance epoch every 5 s, liveness within 1.5 s. The engines run at a
 * quarter of real time: ~30 ms per token, so a 300-token answer takes ~9 s and a kill or a stall lands mid-stream.
 * `over`: sections that replace the defaults; its `engine` fields are merged into the engine's.
 */
export function emulatedClusterConfig(instances: number, over: { engine?: Record<string, unknown> } & Record<string, unknown> = {}): Record<string, unknown> {
  const { engine, ...rest } = over;
  return {
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: instances }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    engine: { kind: 'emulator', timeScale: 0.25, healthDeadlineMs: 30_000, initialTp: 1, maxInEngine: 16, maxQueued: 64, ...engine },
    ...rest,
  };
}

export interface GatewayCluster {
  h: Harness;
  /** the gateway's own connection (gateway role) */
  gw: Bus;
  router: GatewayRouter;
  backend: NatsBackend;
  /** the cluster's config as the actors read it */
  config: ClusterConfig;
  /** the gateway, then the harness (actors, their children, the buses, nats-server). */
  stop(): Promise<void>;
}

export interface GatewayClusterOptions {
  /** the cluster config (emulatedClusterConfig) */
  config: Record<string, unknown>;
  /** instances ready before the gateway starts, within `readyTimeoutMs` */
  ready: number;
  readyTimeoutMs: number;
  /** the gateway's connection name and inbox id; with `credits`, also the id it borrows admission credits under */
  gatewayId: string;
  credits?: boolean;
  /** the NatsBackend's options (the router is the cluster's) */
  backend: (config: ClusterConfig) => Omit<NatsBackendOptions, 'router'>;
  /** what the gateway's router must see before the suite runs, within `timeoutMs` (default: the cluster's routing table, 10 s) */
  routed?: { until(router: GatewayRouter): boolean; timeoutMs: number; what(router: GatewayRouter): string };
}

/** The cluster, its instances ready, and the gateway routing on it. Stops what it started if that fails. */
export async function startGatewayCluster(o: GatewayClusterOptions): Promise<GatewayCluster> {
  const h = await startControlPlane(o.config, { ready: o.ready, readyTimeoutMs: o.readyTimeoutMs });
  let gw: Bus | undefined;
  let router: GatewayRouter | undefined;
  let backend: NatsBackend | undefined;
  const stop = async () => {
    router?.stop();
    backend?.close();
    await gw?.close();
    await h.stop();
  };
  try {
    gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', o.gatewayId), name: o.gatewayId, log: silentLogger() });
    const config = loadConfig(h.cfgPath);
    router = new GatewayRouter(gw, config, loadProfile(profilePathOf(config)), o.credits ? o.gatewayId : undefined);
    router.start();
    backend = new NatsBackend(gw, { ...o.backend(config), router });
    const r = router;
    const routed = o.routed ?? { until: () => r.routable(), timeoutMs: 10_000, what: () => "the cluster's routing table at the gateway" };
    for (const until = Date.now() + routed.timeoutMs; !routed.until(r);) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${routed.what(r)}`);
      await sleep(100);
    }
    return { h, gw, router, backend, config, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A completion of exactly `maxTokens` tokens (ignoreEos) of PROMPT, or `o.prompt` of `o.inputTokens`; the client gives up after 120 s. */
export function completionRequest(id: string, maxTokens: number, o: { prompt?: string; inputTokens?: number; giveUpAfterMs?: number } = {}): InferenceRequest {
  const now = Date.now();
  return {
    v: 1, id, model: MODEL, kind: 'completion', prompt: o.prompt ?? PROMPT, inputTokens: o.inputTokens ?? PROMPT_TOKENS, maxTokens, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + (o.giveUpAfterMs ?? 120_000), streamSubject: subjects.stream(id),
  };
}

/**
 * Streams `req` through `backend` and aborts it once `afterTokens` tokens arrived: its client goes away (the stream
 * ends with the abort, as the HTTP layer sees it). Returns the instance that served it.
 */
export async function abortAfter(backend: NatsBackend, req: InferenceRequest, afterTokens: number): Promise<string | undefined> {
  const ac = new AbortController();
  let n = 0;
  let instance: string | undefined;
  try {
    for await (const c of await backend.submit(req, ac.signal)) {
      n += c.tokens;
      instance ??= c.instance;
      if (n >= afterTokens) ac.abort();
    }
  } catch {
    // the stream ends with the abort
  }
  return instance;
}

/**
 * The processes serving on `instance` now (0 where there is none): its instance manager and its engine (the manager's
 * child that runs the emulator; a manager may have other short-lived children).
 */
export function servingPids(h: Harness, instance: string): { im: number; engine: number } {
  const im = h.pidsOf(`--id ${instance} `)[0] ?? 0;
  const engine = im ? (childrenOf(im).find((pid) => commandLine(pid).includes('engine-emulator')) ?? 0) : 0;
  return { im, engine };
}

/**
 * The client's stream is one whole answer: seq contiguous from 0, it ended done without an error, and it carried exactly
 * `maxTokens` tokens once each (the token counts, the text's words: the emulator's tokens are one word each, and the
 * usage all agree). `diag` goes with every failure. Returns the stream's text.
 */
export function expectOneStream(chunks: TokenChunk[], maxTokens: number, diag?: string): string {
  expect(chunks.map((c) => c.seq), diag).toEqual(chunks.map((_, i) => i));
  const last = chunks[chunks.length - 1]!;
  expect(last.error, diag === undefined ? JSON.stringify(last.error) : `${JSON.stringify(last.error)}; ${diag}`).toBeUndefined();
  expect(last.done, diag).toBe(true);
  const text = chunks.map((c) => c.text).join('');
  expect(chunks.reduce((a, c) => a + c.tokens, 0), diag).toBe(maxTokens);
  expect(text.trim().split(/\s+/).length, diag).toBe(maxTokens);
  expect(last.usage!.completionTokens, diag).toBe(maxTokens);
  return text;
}

/** What `submitTimed` saw: how long the admission took, the chunks, or the error that ended the request. */
export interface TimedOutcome { admitMs: number; chunks: TokenChunk[]; error?: string }

/** A 20-token request (a 10-word prompt) through `backend`, followed to its end; a failure is returned, not thrown. */
export async function submitTimed(backend: NatsBackend, tag: string): Promise<TimedOutcome> {
  const id = `${tag}-${Math.random().toString(36).slice(2, 8)}`;
  const now = Date.now();
  const req: InferenceRequest = {
    v: 1, id, model: MODEL, kind: 'completion', prompt: 'hello '.repeat(10), inputTokens: 12, maxTokens: 20, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream(id),
  };
  const chunks: TokenChunk[] = [];
  try {
    const stream = await backend.submit(req, new AbortController().signal);
    const admitMs = Date.now() - now;
    for await (const c of stream) chunks.push(c);
    return { admitMs, chunks };
  } catch (err) {
    return { admitMs: Date.now() - now, chunks, error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

/** `submitTimed`'s request completed: no error, a done chunk, its 20 tokens, seq contiguous from 0. */
export function expectCompleted(r: TimedOutcome): void {
  expect(r.error).toBeUndefined();
  const last = r.chunks[r.chunks.length - 1]!;
  expect(last.error).toBeUndefined();
  expect(last.done).toBe(true);
  expect(r.chunks.reduce((n, c) => n + c.tokens, 0)).toBe(20);
  expect(r.chunks.map((c) => c.seq)).toEqual(r.chunks.map((_, k) => k));
}
