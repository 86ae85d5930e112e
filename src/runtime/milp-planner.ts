/**
 * MilpPlanner: Eq. 1 solved by HiGHS in a worker thread (comlink), so a 100s-of-ms solve never blocks an
 * actor. Every solve has a deadline; a solve past it, or a worker that exits, rejects every pending call
 * with a typed error and the next call starts a fresh worker.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { Profile } from '../model/profile-types.ts';
import { MilpError, type Eq1Input, type Eq1Result } from '../policy/milp.ts';
import type { MilpWorkerApi } from './milp-worker.ts';
import { codeFile } from './code-path.ts';

export class MilpTimeoutError extends MilpError {
  override name = 'MilpTimeoutError';
  constructor(ms: number) {
    super(`MILP solve exceeded its ${ms} ms deadline`, true);
  }
}

export class MilpWorkerExitError extends MilpError {
  override name = 'MilpWorkerExitError';
  constructor(code: number | string) {
    super(`MILP worker exited (${code}) with solves pending`, true);
  }
}

export interface MilpPlannerOptions {
  /** default deadline of a solve, ms. Default 5000. */
  deadlineMs?: number;
  /**
   * The module the worker thread runs; it must expose a MilpWorkerApi through comlink, as milp-worker.ts does
   * (the default). Another module serves e.g. a worker that fails in a chosen way.
   */
  workerModule?: URL;
}

export class MilpPlanner {
  private worker: Worker | null = null;
  private api: Comlink.Remote<MilpWorkerApi> | null = null;
  private readonly keys = new WeakMap<Profile, string>();
  private sent = new Set<string>();
  private nextKey = 0;
  private readonly pending = new Set<(e: Error) => void>();
  private readonly deadlineMs: number;
  private readonly workerModule: URL;
  private closed = false;

  constructor(opts: MilpPlannerOptions = {}) {
    this.deadlineMs = opts.deadlineMs ?? 5000;
    this.workerModule = opts.workerModule ?? pathToFileURL(codeFile('src/runtime/milp-worker.ts'));
  }

  private start(): Comlink.Remote<MilpWorkerApi> {
    if (this.api) return this.api;
    // a compiled worker (dist/) starts as it is; a TypeScript one (from source, tests) through an eval'd
    // bootstrap that registers tsx in the worker thread first
    let w: Worker;
    if (this.workerModule.pathname.endsWith('.ts')) {
      const tsxPkg = createRequire(import.meta.url).resolve('tsx/package.json');
      const tsxApi = pathToFileURL(join(dirname(tsxPkg), 'dist/esm/api/index.mjs')).href;
      const entry = this.workerModule.href;
      const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { (m.register ?? m.default.register)(); return import(${JSON.stringify(entry)}); })` +
        `.catch((e) => { console.error(e); process.exit(70); });`;
      w = new Worker(boot, { eval: true });
    } else {
      w = new Worker(this.workerModule);
    }
    this.worker = w;
    this.api = Comlink.wrap<MilpWorkerApi>(nodeEndpoint(w));
    this.sent = new Set();
    const fail = (why: number | string) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.api = null;
      const err = new MilpWorkerExitError(why);
      for (const reject of [...this.pending]) reject(err);
    };
    w.on('exit', (code) => fail(code));
    w.on('error', (e) => fail(e.message));
    return this.api;
  }

  /** Solve Eq. 1; rejects with MilpTimeoutError past the deadline, MilpWorkerExitError if the worker dies. */
  async solve(input: Eq1Input, deadlineMs = this.deadlineMs): Promise<Eq1Result> {
    if (this.closed) throw new MilpError('MilpPlanner is closed', false);
    const api = this.start();
    let key = this.keys.get(input.profile);
    if (!key) this.keys.set(input.profile, (key = `p${this.nextKey++}`));
    const { profile, ...rest } = input;
    const k = key;
    return new Promise<Eq1Result>((resolve, reject) => {
      let done = false;
      const finish = (f: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pending.delete(onFail);
        f();
      };
      const onFail = (e: Error) => finish(() => reject(e));
      this.pending.add(onFail);
      const timer = setTimeout(() => {
        finish(() => reject(new MilpTimeoutError(deadlineMs)));
        // HiGHS cannot be interrupted mid-solve: drop the worker; others pending get MilpWorkerExitError
        void this.restart();
      }, deadlineMs);
      (async () => {
        if (!this.sent.has(k)) {
          await api.setProfile(k, profile);
          this.sent.add(k);
        }
        return api.solve(k, { ...rest, timeLimitS: Math.min(rest.timeLimitS ?? Infinity, deadlineMs / 1000) });
      })().then(
        (r) => finish(() => resolve(r)),
        (e: unknown) => finish(() => reject(e instanceof Error ? e : new MilpError(String(e), true))),
      );
    });
  }

  private async restart(): Promise<void> {
    const w = this.worker;
    if (w) await w.terminate();
  }

  /** Idempotent: ends the worker and rejects what is pending. */
  async close(): Promise<void> {
    this.closed = true;
    await this.restart();
  }
}
