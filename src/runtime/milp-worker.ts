/**
 * Worker thread that owns a HiGHS instance and solves Eq. 1 off the actor's event loop (a solve takes
 * 100s of ms). Spoken to through comlink by MilpPlanner (milp-planner.ts); never imported elsewhere (the API's type
 * excepted).
 */
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import highsDefault from 'highs';
import type { Profile } from '../model/profile-types.ts';
import { solveEq1, type Eq1Input, type Eq1Result, type HighsLike } from '../policy/milp.ts';

if (!parentPort) throw new Error('milp-worker.ts must run in a worker thread');
// `highs` ships ESM at runtime but CommonJS-flavoured types: accept either shape of the default export
type Loader = () => Promise<unknown>;
const loadHighs: Loader = typeof highsDefault === 'function' ? (highsDefault as unknown as Loader) : (highsDefault as unknown as { default: Loader }).default;
const highs = (await loadHighs()) as HighsLike;
const profiles = new Map<string, Profile>();

export const workerApi = {
  setProfile(key: string, profile: Profile): void {
    profiles.set(key, profile);
  },
  solve(key: string, input: Omit<Eq1Input, 'profile'>): Eq1Result {
    const profile = profiles.get(key);
    if (!profile) throw new Error(`profile ${key} was not sent to the MILP worker`);
    return solveEq1(highs, { ...input, profile });
  },
};
export type MilpWorkerApi = typeof workerApi;

Comlink.expose(workerApi, nodeEndpoint(parentPort));
