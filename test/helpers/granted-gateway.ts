/**
 * A gateway on real sockets without a cluster: its HTTP layer (GatewayServer) and NatsBackend over an in-memory bus
 * whose cluster intake admits every leg and grants the k-th leg (by id) `engines[k]`, the last one for any later leg;
 * every publish is recorded (the Cancels, the legs' reports). The gateway-level data-path tests
 * (test/unit/gateway-slow-client.test.ts, test/unit/gateway-native-plane.test.ts) stream through it from their engines.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { systemClock, type ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import type { NatsBackendOptions } from '../../actors/gateway/backend-options.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import type { GatewayServerOptions } from '../../actors/gateway/server-options.ts';
import { VirtualBus } from './virtual-bus.ts';

export interface GrantedGatewayOptions {
  /** the test's closers: the gateway and its backend are closed with them. */
  closers: (() => unknown)[];
  backend?: Pick<NatsBackendOptions, 'migrationLimit' | 'engineIdle'>;
  gateway?: Pick<GatewayServerOptions, 'clientStallMs' | 'limits' | 'dataPlane'>;
  /** the tokenizer's answer: the prompt's tokens and the model's length (12 and 8192 unless given). */
  tokenize?: { count: number; maxModelLen: number };
}

export async function grantedGateway(engines: readonly string[], o: GrantedGatewayOptions) {
  const bus = new VirtualBus(systemClock as unknown as ManualClock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock: systemClock, ...o.backend });
  const legs: InferenceRequest[] = [];
  const published: { subject: string; msg: unknown }[] = [];
  const publish = bus.publish.bind(bus);
  bus.publish = (subject, codec, msg) => {
    published.push({ subject, msg });
    publish(subject, codec, msg);
  };
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const leg = m as InferenceRequest;
    if (!legs.some((l) => l.id === leg.id)) legs.push(leg);
    const k = legs.findIndex((l) => l.id === leg.id);
    reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: `i${k}`, type: 'SS' });
    const url = engines[Math.min(k, engines.length - 1)]!;
    bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: `i${k}`, pool: 'p', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
  });
  const tokenize = o.tokenize ?? { count: 12, maxModelLen: 8192 };
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, ...tokenize }));
  const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'], clock: systemClock, ...o.gateway });
  // the gateway's side of each client connection
  const clients: Socket[] = [];
  (gw as unknown as { server: Server }).server.on('connection', (s: Socket) => clients.push(s));
  const port = await gw.listen();
  o.closers.push(() => gw.close(100), () => backend.close());
  return { port, bus, legs, published, backend, clients, gw };
}
