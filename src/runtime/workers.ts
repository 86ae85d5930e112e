/**
 * Worker processes of one actor behind one listening address (node:cluster): the primary forks `count` workers,
 * each a full actor with its own id (`<id>-w<i>`, so its NATS inbox, heartbeat and credits are its own), and
 * hands them the connections of the port they all listen on (round robin). It restarts a worker that died with
 * exponential backoff (initialMs doubling up to maxMs, reset by a run longer than maxMs) and, on SIGTERM/SIGINT,
 * drains them all (SIGTERM each, SIGKILL past stopGraceMs), then exits. The gateway runs this with
 * `gateway.workers` > 1 (docs/DATAPATH.md "Gateway workers").
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { workerId } from '../../protocols/permissions.ts';

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
  /** ms between a worker's SIGTERM and its SIGKILL on stop; default 20000 (the gateway drains for up to 15 s). */
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
