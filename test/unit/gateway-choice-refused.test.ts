/**
 * A request of n choices one of which the cluster refuses: the gateway answers the refusal, and the choices it had
 * admitted, never read, are cancelled at their instance (one Cancel each) and let go: no NATS subscription of their
 * leg (the NATS relay, one per leg) and no listener of their leg in the shared stream subscription (direct) stays.
 * The NatsBackend and the gateway's HTTP layer run over an in-memory Bus.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock, type ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { Cancel, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import { StreamListeners } from '../../actors/gateway/stream-listeners.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of closers.splice(0)) await c();
});

describe('n choices, one refused', () => {
  for (const direct of [false, true]) {
    it(`${direct ? 'direct' : 'NATS relay'}: the admitted choices are cancelled once each and their legs' listeners let go`, async () => {
      // the legs' listeners held now (direct: entries of the one shared subscription), by leg id
      const listening = new Set<string>();
      const listen = Reflect.get(StreamListeners.prototype, 'listen') as StreamListeners['listen'];
      vi.spyOn(StreamListeners.prototype, 'listen').mockImplementation(function (this: StreamListeners, subject, id, onChunk) {
        const h = listen.call(this, subject, id, onChunk);
        listening.add(id);
        return { unsubscribe: () => (listening.delete(id), h.unsubscribe()) };
      });
      const bus = new VirtualBus(systemClock as unknown as ManualClock);
      const backend = new NatsBackend(bus as unknown as Bus, { direct, admitTimeoutMs: 2000, admitAttemptMs: 1000, chunkTimeoutMs: 30_000, clock: systemClock });
      const admitted: string[] = [];
      bus.responders.set(subjects.clusterIntake(), (m, reply) => {
        const leg = m as InferenceRequest;
        if (leg.id.endsWith('_1')) return reply({ v: 1, id: leg.id, ok: false, error: { code: 'rejected', message: 'no', retryable: false } });
        admitted.push(leg.id);
        reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: 'i0', type: 'SS' });
      });
      bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 3, maxModelLen: 100_000 }));
      const cancels: Cancel[] = [];
      bus.subscribe(subjects.cancelAll(), Cancel, (c) => cancels.push(c));
      const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'], clock: systemClock });
      closers.push(() => gw.close(0));
      const port = await gw.listen();
      const requests = 5;
      for (let i = 0; i < requests; i++) {
        const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', prompt: 'x'.repeat(1000), max_tokens: 5, n: 3, stream: i % 2 === 0 }),
        });
        expect(r.status).toBe(429);
        await r.text();
      }
      // choices 0 and 2 of each request admitted, choice 1 refused
      expect(admitted).toHaveLength(2 * requests);
      for (let i = 0; i < 50 && cancels.length < admitted.length; i++) await new Promise((r) => setTimeout(r, 10));
      expect(cancels.map((c) => c.id).sort()).toEqual([...admitted].sort());
      expect(new Set(cancels.map((c) => c.reason))).toEqual(new Set(['another choice of the request failed']));
      expect([...listening]).toEqual([]);
      // the relay's one subscription per leg is gone; direct legs share the one stream subscription
      expect(bus.subscribed.filter((p) => p.startsWith('dyn.v1.stream.'))).toEqual(direct ? [subjects.streamAll()] : []);
    });
  }
});
