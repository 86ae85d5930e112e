/**
 * Worker processes of one actor behind one listening address (node:cluster): the primary forks `count` workers,
 * each a full actor with its own id (`<id>-w<i>`, so its NATS inbox, heartbeat and credits are its own), and
 * hands them the connections of the port they all listen on (round robin). It restarts a worker that died with
 * exponential backoff (initialMs doubling up to maxMs, reset by a run longer than maxMs) and, on SIGTERM/SIGINT,
 * drains them all (SIGTERM each, SIGKILL past stopGraceMs), then exits. The gateway runs this with
 * `gateway.workers` > 1 (docs/DATAPATH.md "Gateway workers").
 *
 * Metrics: a worker asked for /metrics asks the primary (workerMetricsText), which gathers every live worker's
 * registry over the cluster IPC channel (serveWorkerMetrics in each, within METRICS_GATHER_MS) and answers
 * with them aggregated as one replica (src/telemetry/metrics.ts aggregateWorkerMetrics).
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { workerId } from '../../protocols/permissions.ts';
import type { WorkerMetrics } from '../telemetry/metrics.ts';

export { workerId };

/** env of a worker: its index (0..count-1). */
export const WORKER_INDEX_ENV = 'DYNAMOLLM_WORKER_INDEX';

/** This process's worker index when it is a worker of runWorkers, else undefined. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const i = Number(process.env[WORKER_INDEX_ENV]);
  return Number.isInteger(i) && i >= 0 ? i : undefined;
}

export interface WorkersOptions {
  count: number;
  log: Logger;
  backoff?: { initialMs?: number; maxMs?: number };
  /** ms between a worker's SIGTERM and its SIGKILL on stop; default 20000 (the gateway passes its workers' shutdown bound: workerStopGraceMs). */
  stopGraceMs?: number;
}

/** Runs the primary until a signal drains the workers; resolves the exit code. */
export function runWorkers(opts: WorkersOptions): Promise<number> {
  const initialMs = opts.backoff?.initialMs ?? 500;
  const maxMs = opts.backoff?.maxMs ?? 10_000;
  const grace = opts.stopGraceMs ?? 20_000;
  const log = opts.log;
  const live = new Map<number, Worker>();
  const delay = new Map<number, number>();
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;

  const fork = (index: number) => {
    const startedMs = Date.now();
    // a supervised worker watches for its parent's death: its parent is this primary
    const w = cluster.fork({ [WORKER_INDEX_ENV]: String(index), ...(process.env.DYNAMOLLM_SUPERVISED === '1' ? { DYNAMOLLM_SUPERVISOR_PID: String(process.pid) } : {}) });
    live.set(index, w);
    log.info({ worker: index, pid: w.process.pid }, 'worker started');
    w.on('exit', (code, signal) => {
      live.delete(index);
      if (stopping) return;
      if (Date.now() - startedMs > maxMs) delay.set(index, initialMs);
      const d = delay.get(index) ?? initialMs;
      delay.set(index, Math.min(d * 2, maxMs));
      log.warn({ worker: index, code, signal, restartInMs: d }, 'worker exited: restarting');
      const t = setTimeout(() => {
        timers.delete(t);
        if (!stopping) fork(index);
      }, d);
      timers.add(t);
    });
  };
  for (let i = 0; i < opts.count; i++) fork(i);
  gatherMetricsForWorkers(() => [...live.values()], log);

  return new Promise<number>((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig, workers: live.size }, 'draining the workers');
      for (const t of timers) clearTimeout(t);
      const exits = [...live.values()].map((w) => new Promise<void>((r) => {
        if (w.isDead()) return r();
        w.once('exit', () => r());
        w.process.kill('SIGTERM');
      }));
      const kill = setTimeout(() => {
        for (const w of live.values()) w.process.kill('SIGKILL');
      }, grace);
      void Promise.all(exits).then(() => {
        clearTimeout(kill);
        resolve(0);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

/** How long the primary waits for the workers' registries, ms (a worker that has not answered by then is left out). */
export const METRICS_GATHER_MS = 2000;
/** How long a worker waits for the primary's aggregated answer, ms. */
export const METRICS_ASK_MS = METRICS_GATHER_MS + 1000;

/** IPC messages between the primary and its workers (one host, one replica: no NATS subject). */
type MetricsIpc =
  | { type: 'dynamollm:metrics?'; id: number }
  | { type: 'dynamollm:metrics'; id: number; text?: string; error?: string }
  | { type: 'dynamollm:registry?'; id: number }
  | { type: 'dynamollm:registry'; id: number; metrics?: WorkerMetrics; error?: string };

const isIpc = (m: unknown): m is MetricsIpc => typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('dynamollm:');

/** The primary: answers a worker's metrics request with every live worker's registry aggregated. */
function gatherMetricsForWorkers(workers: () => Worker[], log: Logger): void {
  let next = 0;
  const pending = new Map<number, { got: WorkerMetrics[]; left: number; done: () => void }>();
  cluster.on('message', (from: Worker, m: unknown) => {
    if (!isIpc(m)) return;
    if (m.type === 'dynamollm:registry') {
      const p = pending.get(m.id);
      if (!p) return; // too late: already answered without it
      if (m.metrics) p.got.push(m.metrics);
      if (--p.left === 0) p.done();
      return;
    }
    if (m.type !== 'dynamollm:metrics?') return;
    const asked = workers().filter((w) => w.isConnected());
    const id = next++;
    const answer = (msg: MetricsIpc) => {
      if (from.isConnected()) from.send(msg);
    };
    const p: { got: WorkerMetrics[]; left: number; done: () => void } = { got: [], left: asked.length, done: () => undefined };
    const timer = setTimeout(() => p.done(), METRICS_GATHER_MS);
    p.done = () => {
      clearTimeout(timer);
      pending.delete(id);
      if (asked.length > p.got.length) log.warn({ asked: asked.length, answered: p.got.length }, 'metrics: not every worker answered in time');
      // prom-client is loaded on the first gathering, not with every actor process (src/runtime/startup.ts)
      import('../telemetry/metrics.ts').then(({ aggregateWorkerMetrics }) => aggregateWorkerMetrics(p.got)).then(
        (text) => answer({ type: 'dynamollm:metrics', id: m.id, text }),
        (err: unknown) => answer({ type: 'dynamollm:metrics', id: m.id, error: (err as Error).message }),
      );
    };
    pending.set(id, p);
    for (const w of asked) w.send({ type: 'dynamollm:registry?', id } satisfies MetricsIpc);
    if (asked.length === 0) p.done();
  });
}

/** A worker: gives its registry to the primary when it gathers the replica's metrics. */
export function serveWorkerMetrics(registry: Registry): void {
  process.on('message', (m: unknown) => {
    if (!isIpc(m) || m.type !== 'dynamollm:registry?' || !process.send) return;
    registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: 'dynamollm:registry', id: m.id, metrics } satisfies MetricsIpc),
      (err: unknown) => process.send?.({ type: 'dynamollm:registry', id: m.id, error: (err as Error).message } satisfies MetricsIpc),
    );
  });
}

let asks = 0;
const waiting = new Map<number, { resolve: (s: string) => void; reject: (e: Error) => void }>();

/** A worker: the replica's metrics (all its workers aggregated) from the primary; rejects past METRICS_ASK_MS. */
export function workerMetricsText(timeoutMs = METRICS_ASK_MS): Promise<string> {
  if (!process.send) return Promise.reject(new Error('not a worker process'));
  if (waiting.size === 0) process.on('message', onAnswer);
  const id = asks++;
  return new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => settle(id, undefined, new Error(`the primary did not answer within ${timeoutMs} ms`)), timeoutMs);
    waiting.set(id, {
      resolve: (s) => (clearTimeout(t), resolve(s)),
      reject: (e) => (clearTimeout(t), reject(e)),
    });
    process.send!({ type: 'dynamollm:metrics?', id } satisfies MetricsIpc);
  });
}

function onAnswer(m: unknown): void {
  if (isIpc(m) && m.type === 'dynamollm:metrics') settle(m.id, m.text, m.error !== undefined ? new Error(m.error) : undefined);
}

function settle(id: number, text: string | undefined, err: Error | undefined): void {
  const w = waiting.get(id);
  if (!w) return;
  waiting.delete(id);
  if (waiting.size === 0) process.off('message', onAnswer);
  if (text !== undefined) w.resolve(text);
  else w.reject(err ?? new Error('no metrics'));
}
