/**
 * The choices of a request (OpenAI's `n`): vLLM makes each choice a child request of its own (n = 1, seed + i
 * when a seed is given), and so does the gateway, each sent through the cluster on its own (classified,
 * dispatched, migrated when its engine dies); their token streams are then merged into one response.
 */
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { subjects } from '../../protocols/subjects.ts';

/**
 * Choice i of a request of n: its own id, seed + i when a seed is given, and the client's `request_id` as vLLM names
 * its child requests (`<i>_<request_id>`, vllm/v1/engine/parallel_sampling.py), so no two choices reach an engine
 * under one id.
 */
export function childRequest(ir: InferenceRequest, i: number): InferenceRequest {
  const id = `${ir.id}_${i}`;
  const child: InferenceRequest = { ...ir, id, streamSubject: subjects.stream(id) };
  const p = ir.params;
  if (p?.seed !== undefined || p?.request_id !== undefined) {
    child.params = { ...p, ...(p.seed !== undefined ? { seed: p.seed + i } : {}), ...(p.request_id !== undefined ? { request_id: `${i}_${p.request_id}` } : {}) };
  }
  return child;
}

/**
 * Every choice submitted (`submit` once each): their sources in order, or the first refusal's reason. One choice awaits
 * its own promise (no allSettled and its result objects per request).
 */
export async function submitAll<S>(irs: readonly InferenceRequest[], submit: (r: InferenceRequest) => Promise<S>): Promise<S[] | { refused: unknown }> {
  if (irs.length === 1) {
    try {
      return [await submit(irs[0]!)];
    } catch (err) {
      return { refused: err };
    }
  }
  const settled = await Promise.allSettled(irs.map(submit));
  const refused = settled.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  return refused ? { refused: refused.reason as unknown } : settled.map((x) => (x as PromiseFulfilledResult<S>).value);
}

/**
 * The chunks of several streams as they arrive, each with its stream's index. A stream that fails fails the
 * merge; leaving it early (return, throw) ends the streams still open.
 */
export async function* mergeStreams<T>(streams: readonly AsyncIterable<T>[]): AsyncGenerator<{ i: number; c: T }> {
  const its = streams.map((s) => s[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T> }>>();
  const pull = (i: number) => {
    const next = its[i]!.next().then((r) => ({ i, r }));
    next.catch(() => undefined); // raced below; a failure that loses the race must not go unhandled
    pending.set(i, next);
  };
  its.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
        continue;
      }
      pull(i);
      yield { i, c: r.value };
    }
  } finally {
    for (const i of pending.keys()) void Promise.resolve(its[i]!.return?.()).catch(() => undefined);
  }
}

/** A stream read item by item, as batches of one. */
export async function* oneByOne<T>(s: AsyncIterable<T>): AsyncGenerator<readonly T[]> {
  for await (const c of s) yield [c];
}

/**
 * An admitted request's token stream. `batches()`: the chunks that arrived together, one await per batch;
 * `batches(sink)`: some batches (a backend's choice: those read from an engine mid-stream) go to `sink`
 * synchronously as they are read instead of being yielded, in stream order with the yielded ones; an exception
 * the sink throws ends the stream and is what the iteration throws.
 */
export type TokenSource = AsyncIterable<TokenChunk> & { batches?(sink?: (batch: readonly TokenChunk[]) => void): AsyncIterable<readonly TokenChunk[]> };

/** A token source in batches (the chunks that arrived together) where the backend gives them, else one by one. */
export function inBatches(s: TokenSource, sink?: (batch: readonly TokenChunk[]) => void): AsyncIterable<readonly TokenChunk[]> {
  return s.batches ? s.batches(sink) : oneByOne(s);
}

/** What a sink throws once the client's stream is over, so the backend stops reading (never an error). */
export const READER_DONE = new (class ReaderDone extends Error {})('the client stream is over');
