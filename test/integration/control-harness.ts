/**
 * Shared harness of the control-plane integration and chaos tests (issue 5): a real nats-server, real actor
 * processes (`dynamollm actor`, actors/common/launch-args.ts) and emulated engines. The test acts as the gateway: it sends requests to the cluster
 * intake and follows their token streams; decision events are read back from the JetStream stream
 * (DYN_V1_EVENTS), which is where the issue wants them kept.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream as js, jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import {
  ClusterStatus, InferenceRequest, StatusRequest, DecisionEvent, jetstream, subjects,
  type TokenChunk as Chunk,
} from '../../protocols/index.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { descendants, killTree, suitePids } from '../helpers/procs.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { DynError } from '../../protocols/errors.ts';

export interface Outcome {
  id: string;
  ok: boolean;
  admitted?: string;
  chunks: Chunk[];
  /** client-side arrival time of each chunk, ms. */
  chunkAt: number[];
  error?: string;
  tokens: number;
  at: number;
  ttftMs?: number;
}

export interface SendOptions { maxTokens?: number; inputTokens?: number; giveUpAfterMs?: number; promptOfInputTokens?: boolean; apiKeyId?: string }

export interface Harness {
  nats: TestNats;
  bus: Bus;
  /** the gateway's own NATS backend the harness sends through (admission retries, chunk dedupe, cancel). */
  backend: NatsBackend;
  cfgPath: string;
  procs: Map<string, ChildProcess>;
  startActor(kind: string, id: string, extra?: string[]): ChildProcess;
  /** `promptOfInputTokens`: a prompt text the emulator's tokenizer counts as exactly inputTokens tokens (BOS, '▁', then 'hello' per token; default a 10-word prompt). */
  /** `apiKeyId`: as the gateway sets it for an authenticated request (accounting). */
  send(i: number, o?: SendOptions): Promise<Outcome>;
  status(): Promise<ClusterStatus | undefined>;
  waitReady(n: number, timeoutMs?: number, pred?: (s: ClusterStatus) => boolean): Promise<ClusterStatus>;
  /** every decision event kept in the JetStream stream so far. */
  streamEvents(): Promise<DecisionEvent[]>;
  pidsOf(pattern: string): number[];
  stop(): Promise<void>;
}

/** One request through `backend` (the gateway's NATS backend: intake retried with the same id, chunks deduplicated, request migration), followed to its end. */
export async function sendVia(backend: NatsBackend, model: string, i: number, so: SendOptions = {}): Promise<Outcome> {
  const id = `r${i}-${Math.random().toString(36).slice(2, 8)}`;
  const chunks: Chunk[] = [];
  const chunkAt: number[] = [];
  const now = Date.now();
  const req: InferenceRequest = {
    v: 1, id, model, kind: 'completion', prompt: so.promptOfInputTokens ? 'hello '.repeat(Math.max(1, (so.inputTokens ?? 100) - 2)) : 'hello '.repeat(10), inputTokens: so.inputTokens ?? 100,
    maxTokens: so.maxTokens ?? 40, ignoreEos: true, arrivalMs: now, giveUpAtMs: now + (so.giveUpAfterMs ?? 60_000), streamSubject: subjects.stream(id),
  };
  if (so.apiKeyId !== undefined) req.apiKeyId = so.apiKeyId;
  const out: Outcome = { id, ok: false, chunks, chunkAt, tokens: 0, at: now };
  const ac = new AbortController();
  let stream;
  try {
    // through the gateway's backend: intake retried with the same id inside 15 s, chunks deduplicated
    stream = await backend.submit(req, ac.signal);
  } catch (err) {
    const e = err as DynError;
    out.error = e.code === 'remote' || e.name === 'RemoteError' ? `refused: ${(e as { remoteCode?: string }).remoteCode} ${e.message} (retryable ${e.retryable})` : `intake: ${e.message} (retryable ${e.retryable})`;
    return out;
  }
  out.admitted = stream.admission.instance;
  try {
    for await (const c of stream) {
      chunks.push(c);
      chunkAt.push(Date.now());
    }
    const last = chunks[chunks.length - 1];
    out.ok = !!last?.done && !last.error;
    if (last?.error) out.error = `${last.error.code}: ${last.error.message} (retryable ${last.error.retryable})`;
    else if (!last?.done) out.error = 'HUNG';
  } catch (err) {
    // a stream silent for 30 s counts as HUNG (the deadline machinery must end it before)
    const e = err as DynError;
    out.error = e.code === 'timeout' ? 'HUNG' : `${e.code}: ${e.message} (retryable ${e.retryable})`;
  }
  out.tokens = chunks.reduce((n, c) => n + c.tokens, 0);
  if (chunks[0]?.ttftMs !== undefined) out.ttftMs = chunks[0].ttftMs;
  return out;
}

/** Send requests at `rps` until stopped; returns the outcomes once all settled. */
export function openLoop(h: Harness, rps: number, o: { maxTokens?: number; inputTokens?: number; promptOfInputTokens?: boolean } = {}, first = 0): { stop(): Promise<Outcome[]>; setRate(r: number): void; sent(): number } {
  const all: Promise<Outcome>[] = [];
  let i = first;
  let rate = rps;
  let timer: NodeJS.Timeout | undefined;
  let next = Date.now();
  const tick = () => {
    const now = Date.now();
    // Poisson-free fixed spacing keeps the offered load exact on a slow machine (catch up if late)
    while (next <= now) {
      all.push(h.send(i++, o));
      next += 1000 / rate;
    }
    timer = setTimeout(tick, Math.max(1, next - Date.now()));
  };
  tick();
  return {
    setRate(r) {
      rate = r;
      next = Date.now() + 1000 / r;
    },
    sent: () => all.length,
    async stop() {
      if (timer) clearTimeout(timer);
      return Promise.all(all);
    },
  };
}

/**
 * What is wrong with a request's stream as its client saw it, [] when nothing: it completed (a done chunk, no
 * error), its seq runs 0..n-1 without a gap or a repeat, and it carried exactly `maxTokens` tokens, once each
 * (the token counts, the text's words: the emulator's tokens are one word each, and usage all agree).
 */
export function streamProblems(o: Outcome, maxTokens: number): string[] {
  const out: string[] = [];
  const why = (s: string) => out.push(`${o.id} (admitted by ${o.admitted ?? 'nobody'}): ${s}`);
  if (!o.ok) why(o.error ?? 'not completed');
  const seqs = o.chunks.map((c) => c.seq);
  if (seqs.some((s, i) => s !== i)) why(`seq ${seqs.join(',')}`);
  if (o.tokens !== maxTokens) why(`${o.tokens} tokens of ${maxTokens}`);
  const words = o.chunks.map((c) => c.text).join('').trim().split(/\s+/).filter((w) => w !== '').length;
  if (o.ok && words !== maxTokens) why(`${words} words of ${maxTokens}`);
  const usage = o.chunks.at(-1)?.usage?.completionTokens;
  if (o.ok && usage !== maxTokens) why(`usage ${usage} of ${maxTokens}`);
  return out;
}

export function p99(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

/**
 * The clock tests' cluster: one server of 2 emulated H100s running one TP2 Llama-3.1-8B instance at 1x, one
 * pool of all nine types, cluster and pool epochs out of the way, the instance clock epoch `instanceS`.
 */
export function oneTp2InstanceConfig(instanceS: number): Record<string, unknown> {
  return {
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS },
    liveness: { statusIntervalMs: 250, deadAfterMs: 2000, leaseTtlMs: 2000 },
    engine: { kind: 'emulator', timeScale: 1, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  };
}

/**
 * The usual control plane of a suite: nats, the test's bus, one cluster and one pool manager and a node agent per
 * `nodes` (default n0), then wait for `ready` instances (default 1) up to `readyTimeoutMs` (default waitReady's). Stops
 * what it started if that fails.
 */
export async function startControlPlane(config: Record<string, unknown>, o: { ready?: number; readyTimeoutMs?: number; nodes?: string[] } = {}): Promise<Harness> {
  const h = await startHarness(config);
  try {
    h.startActor('cluster', 'cm-0');
    h.startActor('pool', 'pm-0');
    for (const n of o.nodes ?? ['n0']) h.startActor('node', n);
    await h.waitReady(o.ready ?? 1, o.readyTimeoutMs);
    return h;
  } catch (err) {
    await h.stop();
    throw err;
  }
}

/**
 * Start nats + the test's bus. `config` is the cluster config (nats section filled in here); `role` is the
 * NATS user the actors connect with (default: their own role users, see nats.conf).
 */
export async function startHarness(config: Record<string, unknown>, o: { actorsAsAdmin?: boolean } = {}): Promise<Harness> {
  const nats = await startNatsServer();
  const admin = nats.creds('admin');
  const dir = mkdtempSync(join(tmpdir(), 'dyn-ctl-'));
  const cfgPath = join(dir, 'cluster.json');
  // actors pick their role user from nats.roleUsers (actors/common/config.ts); admin only when asked
  const roles: Record<string, { user: string; pass: string }> = {};
  for (const r of ['cluster', 'pool', 'instance', 'node'] as const) roles[r] = nats.creds(r);
  writeFileSync(cfgPath, JSON.stringify({
    ...config,
    nats: o.actorsAsAdmin ? { url: nats.url, ...admin } : { url: nats.url, roles },
  }));
  const bus = await Bus.connect({ servers: nats.url, name: 'test-gateway', ...admin, log: silentLogger() });
  return harnessOver({ nats, bus, cfgPath, config });
}

/**
 * The harness over a NATS the caller started (one server, or a cluster: `nats.stop` stops what it stands for)
 * and the test's bus on it; actors read `cfgPath`. stop() ends the actors, their children, the bus and `nats`.
 * `backend`: the gateway backend `send` goes through (default one on `bus` without the gateway's own routing: every
 * request through the cluster intake); the caller closes one it gave.
 */
export function harnessOver(x: { nats: TestNats; bus: Bus; cfgPath: string; config: Record<string, unknown>; backend?: NatsBackend }): Harness {
  const { nats, bus, cfgPath, config } = x;
  const procs = new Map<string, ChildProcess>();
  /** the last cluster status request that got no status (no responders, a timeout, a reply that did not decode). */
  let statusError: Error | undefined;
  /** What waitReady waited for in vain: the cluster's answer, the instances that are not ready, the actors that exited. */
  const notReady = (n: number, last: ClusterStatus | undefined, at: { t0: number; first: number; last: number }, asked: number): string => {
    const exited = [...procs].filter(([, p]) => p.exitCode !== null || p.signalCode !== null).map(([id, p]) => `${id} (${p.signalCode ?? `code ${p.exitCode}`})`);
    const gone = (exited.length ? `; actors exited: ${exited.join(', ')}` : '') + (nats.describe ? `; ${nats.describe()}` : '');
    const err = statusError ? `${statusError instanceof DynError ? statusError.code : statusError.name}: ${statusError.message}` : 'none';
    if (!last) return `no cluster status answered (${asked} asked, each within 1 s; the last error ${err})${gone}`;
    const inst = last.pools.flatMap((p) => p.instances.map((i) => `${i.id} ${i.state}`));
    const ready = last.pools.flatMap((p) => p.instances).filter((i) => i.state === 'ready').length;
    const why = ready >= n ? `${ready} of ${n} instances ready, the condition asked for not met` : `${ready} of ${n} instances ready`;
    return `${why} (${inst.join(', ') || 'no instance'}) in the last status (${Date.now() - at.last} ms ago; the first came ${at.first - at.t0} ms after the wait began); the last status error ${err}${gone}`;
  };
  const backend = x.backend ?? new NatsBackend(bus, { admitTimeoutMs: 15_000, chunkTimeoutMs: 30_000 });
  const h: Harness = {
    nats, bus, backend, cfgPath, procs,
    startActor(kind, id, extra = []) {
      // DYN_TEST_LOG_DIR: each actor's log (its stdout, at DYN_TEST_LOG) kept there as <id>.log
      const logDir = process.env.DYN_TEST_LOG_DIR;
      const out = logDir ? (mkdirSync(logDir, { recursive: true }), openSync(join(logDir, `${id}.log`), 'a')) : 'ignore';
      const p = spawn(process.execPath, launchArgs(kind, ['--id', id, '--config', cfgPath, ...extra]), {
        stdio: ['ignore', out, 'inherit'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: process.env.DYN_TEST_LOG ?? 'error' },
      });
      if (typeof out === 'number') closeSync(out);
      procs.set(id, p);
      return p;
    },
    send: (i, so = {}) => sendVia(backend, typeof config.model === 'string' ? config.model : 'llama3.1-8b', i, so),
    async status() {
      try {
        return await bus.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 });
      } catch (err) {
        statusError = err as Error;
        return undefined;
      }
    },
    async waitReady(n, timeoutMs = 45_000, pred) {
      const t0 = Date.now();
      const until = t0 + timeoutMs;
      let last: ClusterStatus | undefined;
      let firstAt = 0, lastAt = 0;
      let asked = 0;
      statusError = undefined;
      while (Date.now() < until) {
        asked++;
        const st = await h.status();
        if (st) [last, lastAt, firstAt] = [st, Date.now(), firstAt || Date.now()];
        if (last) {
          const ready = last.pools.flatMap((p) => p.instances).filter((i) => i.state === 'ready');
          if (ready.length >= n && (!pred || pred(last))) return last;
        }
        await new Promise((r) => setTimeout(r, 300));
      }
      throw new Error(`cluster not ready in ${timeoutMs} ms: ${notReady(n, last, { t0, first: firstAt, last: lastAt }, asked)}`);
    },
    async streamEvents() {
      // read up to the stream's last message as its info gives it: a fetch returns what came within its expiry, and a
      // short one (a stream whose leader was just elected) is not the end; one that brings nothing is an error to retry
      const out: DecisionEvent[] = [];
      const last = (await (await jetstreamManager(bus.nc)).streams.info(jetstream.eventsStream)).state.last_seq;
      const c = await js(bus.nc).consumers.get(jetstream.eventsStream);
      for (let seq = 0; seq < last;) {
        const batch = await c.fetch({ max_messages: 1000, expires: 1000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          seq = m.seq;
          out.push(DecisionEvent.decode(m.data));
        }
        if (n === 0) throw new Error(`the events stream gave nothing past sequence ${seq} of ${last}`);
      }
      return out;
    },
    pidsOf(pattern) {
      // the config path is unique to the suite; any other pattern (an actor id) only among the suite's own processes
      if (pattern.includes(cfgPath)) {
        try {
          return execFileSync('pgrep', ['-f', '--', pattern]).toString().trim().split('\n').map(Number).filter((n) => n > 0 && n !== process.pid);
        } catch {
          return [];
        }
      }
      return suitePids([...procs.values()].map((p) => p.pid ?? -1), pattern);
    },
    async stop() {
      // the whole tree, found while the actors still stand: instance managers and engines are grandchildren
      const tree = [...descendants([...procs.values()].map((p) => p.pid ?? -1)).keys()];
      for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 1500));
      for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGKILL');
      killTree(tree);
      for (const pid of h.pidsOf(cfgPath)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      await bus.close();
      await nats.stop();
    },
  };
  return h;
}
