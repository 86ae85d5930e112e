/**
 * Runs several policies at once, one worker thread per policy (at most os.cpus().length at a time),
 * talking comlink. A worker that exits or errors rejects its pending call: nothing waits forever.
 */
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { pathToFileURL } from 'node:url';
import { simulate } from './index.ts';
import { codeFile, FROM_SOURCE } from '../runtime/code-path.ts';
import type { SimOptions, SimResult } from './types.ts';
import type { WorkerApi } from './worker.ts';

export class SimWorkerError extends Error {
  override name = 'SimWorkerError';
  readonly retryable = false;
}

async function inWorker(opts: SimOptions, progress: (f: number) => void): Promise<SimResult> {
  // compiled: the worker's own .js; from source: a plain-JS boot that registers tsx, then loads worker.ts
  const entry = codeFile('src/sim/worker.ts');
  const w = FROM_SOURCE
    ? new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: { entry: pathToFileURL(entry).href } })
    : new Worker(entry);
  const api = Comlink.wrap<WorkerApi>(nodeEndpoint(w));
  const died = new Promise<never>((_, reject) => {
    w.once('error', (e) => reject(new SimWorkerError(`simulator worker for ${opts.policy} failed: ${e.message}`)));
    w.once('exit', (code) => reject(new SimWorkerError(`simulator worker for ${opts.policy} exited (code ${code}) before answering`)));
  });
  try {
    return await Promise.race([api.run(opts, Comlink.proxy(progress)), died]);
  } finally {
    api[Comlink.releaseProxy]();
    await w.terminate();
  }
}

/** Simulate each option set; in workers when there are several (parallel: false runs them in this thread). */
export async function simulateMany(list: SimOptions[], onProgress?: (i: number, f: number) => void, parallel = list.length > 1): Promise<SimResult[]> {
  if (!parallel) {
    const out: SimResult[] = [];
    for (let i = 0; i < list.length; i++) out.push(await simulate(list[i], (f) => onProgress?.(i, f)));
    return out;
  }
  const limit = Math.max(1, os.cpus().length);
  const out = new Array<SimResult>(list.length);
  let next = 0;
  const lane = async () => {
    while (next < list.length) {
      const i = next++;
      out[i] = await inWorker(list[i], (f) => onProgress?.(i, f));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, list.length) }, lane));
  return out;
}
