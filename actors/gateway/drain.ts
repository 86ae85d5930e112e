/**
 * The end of a gateway's drain (GatewayServer.close, docs/DATAPATH.md "Gateway drain"): the requests still under way
 * when gateway.drainStreamsMs ends are cancelled, and each still gets its answer, a retryable error (a 503 with
 * Retry-After before its response began; after, an error event and the stream's end), before the connections close.
 */
import type { ServerResponse } from 'node:http';
import type { Clock } from '../../src/runtime/clock.ts';
import type { LeanAbort } from '../../src/runtime/abort.ts';
import { DynError } from '../../protocols/errors.ts';
import { toHttp, type HttpError } from './openai.ts';

/** How long the answers of the requests a drain cut have to leave before the connections close, ms. */
export const DRAIN_ANSWER_MS = 1000;

/** The requests under way (each its abort and its response), and their cut at the drain's end. */
export class InFlight {
  readonly #open = new Map<LeanAbort, ServerResponse>();
  /** the abort reason of the requests the drain cut. */
  #shutdown: DynError | undefined;

  add(ac: LeanAbort, res: ServerResponse): void {
    this.#open.set(ac, res);
  }

  delete(ac: LeanAbort): void {
    this.#open.delete(ac);
  }

  /** The answer a request aborted for `reason` still gets: the drain's retryable error; undefined for any other abort (the client left, its hold limit passed). */
  readonly answerOf = (reason: unknown): HttpError | undefined => (reason !== undefined && reason === this.#shutdown ? toHttp(reason) : undefined);

  /**
   * Cancels every request under way with the drain's reason (each handler then writes answerOf's error), and resolves
   * once their responses are sent whole or their connections closed, or `ms` after the cancel: a client that reads
   * nothing holds no shutdown.
   */
  cut(clock: Clock, ms = DRAIN_ANSWER_MS): Promise<void> {
    const shutdown = (this.#shutdown = new DynError('unavailable', 'gateway shutting down', { retryable: true, retryAfterS: 1 }));
    const open = [...this.#open];
    for (const [ac] of open) ac.abort(shutdown);
    const left = open.map(([, res]) => res).filter((res) => !res.writableFinished && !res.destroyed);
    if (left.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let n = left.length;
      const t = clock.setTimeout(resolve, ms);
      for (const res of left) {
        const one = () => {
          res.off('finish', one);
          res.off('close', one);
          if (--n > 0) return;
          clock.clearTimeout(t);
          resolve();
        };
        res.on('finish', one);
        res.on('close', one);
      }
    });
  }
}
