/**
 * The datapath bench's closed-loop load generator (test/bench/datapath.bench.ts): CONCURRENCY clients spread over
 * `threads` worker threads (test/bench/closed-loop-worker.ts), each client sending one request after another with
 * the lean HTTP/1.1 client (src/engine/http1.ts; the cheapest of the three in test/bench/closed-loop-client.ts, docs/DATAPATH.md),
 * so that the bench's own process is not the closed loop's bound. The worker threads are threads of the bench's
 * process: its /proc totals count them.
 */
import { Worker } from 'node:worker_threads';
import type { ClientKind } from './closed-loop-client.ts';

/** One closed loop of a worker thread: `clients` clients posting `body` to `${base}/v1/completions` for `seconds`. */
export interface LoopJob { kind: ClientKind; base: string; body: string; clients: number; seconds: number }
/** A worker thread's requests served and refused (HTTP 429/503), and the error that broke one, if any. */
export interface LoopReply { done: number; refused: number; error?: string }

/** `clients` spread over at most `threads` threads as evenly as can be, the larger shares first; no thread without a client. */
export function splitClients(clients: number, threads: number): number[] {
  const k = Math.max(1, Math.min(Math.floor(threads), clients));
  if (clients <= 0) return [];
  return Array.from({ length: k }, (_, i) => Math.floor(clients / k) + (i < clients % k ? 1 : 0));
}

/** Worker threads kept for the bench's closed loops (their code compiled once, warmed by the warm-up loops). */
export class LoopThreads {
  private readonly workers: Worker[];

  constructor(readonly threads: number, readonly kind: ClientKind = 'http1') {
    // a worker's entry is TypeScript: tsx's loader registered in the worker first (a .ts entry file is resolved
    // before the hooks that execArgv's --import registers apply to it)
    const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => { t.register(); return import(${JSON.stringify(new URL('./closed-loop-worker.ts', import.meta.url).href)}); })`;
    this.workers = Array.from({ length: threads }, () => new Worker(boot, { eval: true }));
  }

  /** `clients` closed-loop clients over the threads for `seconds`; the requests served and refused, summed. */
  async run(base: string, body: string, clients: number, seconds: number): Promise<LoopReply> {
    const shares = splitClients(clients, this.workers.length);
    const replies = await Promise.all(shares.map((n, i) => new Promise<LoopReply>((resolve, reject) => {
      const w = this.workers[i]!;
      const onError = (e: Error) => reject(e);
      w.once('error', onError);
      w.once('message', (r: LoopReply) => {
        w.off('error', onError);
        resolve(r);
      });
      w.postMessage({ kind: this.kind, base, body, clients: n, seconds } satisfies LoopJob);
    })));
    const broke = replies.find((r) => r.error);
    if (broke) throw new Error(`closed-loop client: ${broke.error}`);
    return { done: replies.reduce((a, r) => a + r.done, 0), refused: replies.reduce((a, r) => a + r.refused, 0) };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
