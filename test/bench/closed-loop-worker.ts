/**
 * A worker thread of the datapath bench's closed-loop load generator (test/bench/closed-loop.ts): for each job it
 * is sent, runs `clients` closed-loop clients (test/bench/closed-loop-client.ts) for `seconds` and answers with the
 * requests served and refused, or with the error that broke one.
 */
import { parentPort } from 'node:worker_threads';
import { requester } from './closed-loop-client.ts';
import type { LoopJob, LoopReply } from './closed-loop.ts';

parentPort!.on('message', (job: LoopJob) => {
  void (async (): Promise<LoopReply> => {
    const send = requester(job.kind, job.base, job.body);
    const until = performance.now() + job.seconds * 1000;
    let done = 0, refused = 0;
    try {
      await Promise.all(Array.from({ length: job.clients }, async () => {
        while (performance.now() < until) {
          if (await send()) done++;
          else refused++;
        }
      }));
      return { done, refused };
    } catch (e) {
      return { done, refused, error: (e as Error).message };
    } finally {
      send.close();
    }
  })().then((r) => parentPort!.postMessage(r));
});
