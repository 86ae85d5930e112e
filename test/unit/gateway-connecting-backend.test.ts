/**
 * The gateway's backend from the bind of its port to its first NATS connection (actors/gateway/connecting-backend.ts),
 * on a manual clock: calls wait for attach() and then go to the connected backend; at most `capacity` wait (the next
 * is a retryable `overloaded` at once); each waits at most `holdMs` (then a retryable `unavailable`); an abort ends a
 * wait with its reason; fail() refuses every waiting and later call; nothing waits once attached.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';
import { ConnectingBackend, type ConnectedBackend } from '../../actors/gateway/connecting-backend.ts';
import type { InferenceRequest, TokenizeReply } from '../../protocols/messages.ts';
import type { TokenSource } from '../../actors/gateway/choices.ts';

const req = { v: 1, id: 'r-1' } as InferenceRequest;
const stream = { stream: true } as unknown as TokenSource;
const counted: TokenizeReply = { v: 1, ok: true, count: 3, maxModelLen: 4096 } as TokenizeReply;

function connected(): ConnectedBackend & { submitted: string[] } {
  const submitted: string[] = [];
  return {
    submitted,
    submit: (r) => (submitted.push(r.id), Promise.resolve(stream)),
    resume: () => Promise.resolve(stream),
    ready: () => true,
    tokenize: () => Promise.resolve(counted),
    detokenize: () => Promise.reject(new Error('not used')),
  };
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

/** the DynError a promise rejected with (or 'resolved'), once the microtasks ran. */
function outcome<T>(p: Promise<T>): { get: () => DynError | Error | 'resolved' | 'pending' } {
  let got: DynError | Error | 'resolved' | 'pending' = 'pending';
  p.then(() => (got = 'resolved'), (e: unknown) => (got = e as Error));
  return { get: () => got };
}

describe('ConnectingBackend', () => {
  it('holds calls until attach, then serves them and every later call at once', async () => {
    const clock = new ManualClock();
    const gate = new ConnectingBackend({ clock, holdMs: 60_000, capacity: 4 });
    const b = connected();
    const sub = gate.submit(req, new AbortController().signal);
    const tok = gate.tokenize({ v: 1, model: 'm', prompt: 'hi' } as never);
    await settle();
    expect(gate.waiting).toBe(2);
    expect(gate.ready()).toBe(false);
    clock.advance(30_000);
    gate.attach(b);
    await expect(sub).resolves.toBe(stream);
    await expect(tok).resolves.toBe(counted);
    expect(b.submitted).toEqual(['r-1']);
    expect(gate.held).toBe(2);
    expect(gate.ready()).toBe(true);
    await expect(gate.submit(req, new AbortController().signal)).resolves.toBe(stream);
    expect(gate.held).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it('refuses past capacity at once (retryable overloaded), past holdMs with a retryable unavailable, and on abort with its reason', async () => {
    const clock = new ManualClock();
    const gate = new ConnectingBackend({ clock, holdMs: 5000, capacity: 2 });
    const first = outcome(gate.submit(req, new AbortController().signal));
    const ac = new AbortController();
    const aborted = outcome(gate.submit(req, ac.signal));
    const third = outcome(gate.submit(req, new AbortController().signal));
    await settle();
    expect(third.get()).toMatchObject({ code: 'overloaded', retryable: true, retryAfterS: 1 });
    expect(gate.waiting).toBe(2);
    const reason = new DynError('unavailable', 'the request did not start within the gateway\'s hold limit', { retryable: true });
    ac.abort(reason);
    await settle();
    expect(aborted.get()).toBe(reason);
    clock.advance(4999);
    await settle();
    expect(first.get()).toBe('pending');
    clock.advance(1);
    await settle();
    expect(first.get()).toMatchObject({ code: 'unavailable', retryable: true, retryAfterS: 1 });
    expect(gate.waiting).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('fail() refuses the waiting calls and every later one; attach after it changes nothing', async () => {
    const clock = new ManualClock();
    const gate = new ConnectingBackend({ clock, holdMs: 60_000, capacity: 8 });
    const waiting = outcome(gate.submit(req, new AbortController().signal));
    await settle();
    const err = new DynError('unavailable', 'gateway shutting down', { retryable: true, retryAfterS: 1 });
    expect(gate.fail(err)).toBe(1);
    await settle();
    expect(waiting.get()).toBe(err);
    await expect(gate.tokenize({ v: 1, model: 'm', prompt: 'hi' } as never)).rejects.toBe(err);
    gate.attach(connected());
    await expect(gate.submit(req, new AbortController().signal)).rejects.toBe(err);
    expect(clock.pending).toBe(0);
  });
});
