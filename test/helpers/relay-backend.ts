/**
 * A gateway backend on the relay data path (`direct: false`) over a virtual clock and the in-memory Bus stand-in
 * (./virtual-bus.ts): the intake admits every leg on instance `i<k>` (k its order), an engine's tokenizer counts a
 * prompt a word a token, and every Cancel is kept. Shared by the relay tests (gateway-relay-gap, gateway-relay-stop-across).
 */
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { Cancel, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { VirtualBus } from './virtual-bus.ts';

export const RELAY_START = 1_700_000_000_000;

export function relayBackend() {
  const clock = new ManualClock(RELAY_START);
  const bus = new VirtualBus(clock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: false, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock });
  /** every leg the intake admitted, in order */
  const legs: InferenceRequest[] = [];
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const r = m as InferenceRequest;
    legs.push(r);
    reply({ v: 1, id: r.id, ok: true, pool: 'pool-all', instance: `i${legs.length - 1}`, type: 'SS' });
  });
  // an engine's tokenizer counts the continuation's prompt: a word a token
  bus.responders.set(subjects.tokenize(), (m, reply) => reply({ v: 1, ok: true, count: ((m as { prompt?: string }).prompt ?? '').split(' ').filter(Boolean).length }));
  const cancels: string[] = [];
  bus.subscribe(subjects.cancelAll(), Cancel, (c) => cancels.push(c.id));
  return { clock, bus, backend, legs, cancels };
}

/** Advances the clock by `ms` in steps of `stepMs`, letting I/O callbacks run after each. */
export async function runFor(clock: ManualClock, ms: number, stepMs = 5): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    clock.advance(Math.min(stepMs, left));
    await new Promise<void>((r) => setImmediate(r));
  }
}
