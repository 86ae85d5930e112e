/**
 * The choices of a request (OpenAI's `n`): vLLM makes each choice a child request of its own (n = 1, seed + i
 * when a seed is given), and so does the gateway, each sent through the cluster on its own (classified,
 * dispatched, migrated when its engine dies); their token streams are then merged into one response.
 */
import type { InferenceRequest } from '../../protocols/messages.ts';
import { subjects } from '../../protocols/subjects.ts';

/** Choice i of a request of n: its own id, and seed + i when a seed is given (vLLM's child requests). */
export function childRequest(ir: InferenceRequest, i: number): InferenceRequest {
  const id = `${ir.id}_${i}`;
  const child: InferenceRequest = { ...ir, id, streamSubject: subjects.stream(id) };
  if (ir.params?.seed !== undefined) child.params = { ...ir.params, seed: ir.params.seed + i };
  return child;
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
 * One stream's items with its index, as mergeStreams gives them for several: a mapping iterator, not an async
 * generator (a generator's yield costs a few microtask hops per item, and an item is a batch of a real-time
 * stream's one token); return() reaches the stream, so a reader that stops early stops it.
 */
export function indexed<T>(s: AsyncIterable<T>): AsyncIterable<{ i: number; c: T }> {
  return {
    [Symbol.asyncIterator]() {
      const it = s[Symbol.asyncIterator]();
      return {
        next: () => it.next().then((r): IteratorResult<{ i: number; c: T }> => (r.done ? { done: true, value: undefined } : { done: false, value: { i: 0, c: r.value } })),
        return: async (): Promise<IteratorResult<{ i: number; c: T }>> => {
          await it.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
