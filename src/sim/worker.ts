/** Worker-thread entry: exposes `simulate` over comlink (src/sim/parallel.ts starts it). */
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { simulate } from './index.ts';
import type { SimOptions } from './types.ts';

const api = {
  async run(opts: SimOptions, progress?: (f: number) => unknown) {
    // a comlink-proxied callback returns a promise; progress is best-effort, so its result is dropped
    return simulate(opts, progress ? (f) => {
      void progress(f);
    } : undefined);
  },
};
export type WorkerApi = typeof api;
if (parentPort) Comlink.expose(api, nodeEndpoint(parentPort));
