/**
 * A request that reaches its give-up time (the gateway's requestTimeoutS after its arrival) ends there with a
 * non-retryable timeout, and never moves to another leg (docs/DATAPATH.md "Request migration"; actors/gateway/legs.ts
 * pastDeadline, canMigrate, legFailure; reopen.ts):
 * - a direct leg whose engine streams past the deadline: one leg, one engine call (closed at the deadline), the
 *   client's stream ends with `timeout`, `retryable: false`; the leg's end report says 'timed_out';
 *   nothing migrated. A stream not sent (non-streaming) gets a 504;
 * - the predicates: canMigrate false at the give-up time, reopenLeg asks nothing past it, a retryable end past it is
 *   the timeout (legFailure, relayedOut), a resume past it is refused with the timeout (cannotContinue).
 * The engine runs on a real socket, the bus in memory (test/helpers/virtual-bus.ts) on the system clock.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock, type ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { DynError } from '../../protocols/errors.ts';
import { TokenChunk, subjects, type InferenceRequest, type LegReport } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';
import { MigrationText, canMigrate, cannotContinue, legFailure, type StreamState } from '../../actors/gateway/legs.ts';
import { reopenLeg } from '../../actors/gateway/reopen.ts';
import { relayedOut } from '../../actors/gateway/relay-order.ts';
import { httpErrorOfWire } from '../../actors/gateway/openai.ts';
import { EngineStreamError, EngineTimeoutError } from '../../src/engine/errors.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const DEADLINE_MS = 2000;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** An engine that streams one token every 50 ms and never finishes; it records each call's start and its connection's close. */
async function slowEngine(): Promise<{ url: string; calls: { atMs: number; closedAtMs?: number }[] }> {
  const calls: { atMs: number; closedAtMs?: number }[] = [];
  const t0 = performance.now();
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const call: { atMs: number; closedAtMs?: number } = { atMs: performance.now() - t0 };
      calls.push(call);
      res.on('close', () => (call.closedAtMs = performance.now() - t0));
      const ev = (o: object) => `data: ${JSON.stringify({ id: 'cmpl-engine', object: 'text_completion', created: 1, model: 'm', ...o })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const tick = () => {
        if (res.destroyed) return;
        res.write(ev({ choices: [{ index: 0, text: ` t${i++}`, logprobs: null, finish_reason: null, stop_reason: null }] }));
        setTimeout(tick, 50);
      };
      tick();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.closeAllConnections(), () => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

/** A gateway (direct data path) over an in-memory cluster whose every admission is granted that engine. */
async function gateway(url: string) {
  const bus = new VirtualBus(systemClock as unknown as ManualClock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 2000, admitAttemptMs: 1000, chunkTimeoutMs: 30_000, clock: systemClock });
  const legs: InferenceRequest[] = [];
  const ends: LegReport[] = [];
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const leg = m as InferenceRequest;
    const instance = `i${legs.length}`;
    legs.push(leg);
    bus.responders.set(subjects.instanceLeg(instance), (r, answer) => {
      if ((r as LegReport).phase === 'end') ends.push(r as LegReport);
      answer({ v: 1, ok: true });
    });
    reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance, type: 'SS' });
    bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance, pool: 'p', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
  });
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 3, maxModelLen: 100_000 }));
  const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'], clock: systemClock, requestTimeoutMs: DEADLINE_MS });
  const port = await gw.listen();
  closers.push(() => void gw.close());
  return { port, backend, legs, ends };
}

const body = (stream: boolean) => JSON.stringify({ model: 'm', prompt: 'p', max_tokens: 10_000, stream });

describe('a stream at its deadline', () => {
  it('ends with a non-retryable timeout after one leg: no migration, the engine call closed, the leg timed out', async () => {
    const engine = await slowEngine();
    const g = await gateway(engine.url);
    const t0 = performance.now();
    const r = await fetch(`http://127.0.0.1:${g.port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(true) });
    expect(r.status).toBe(200);
    const text = await r.text();
    const endedMs = performance.now() - t0;
    const events = text.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const last = JSON.parse(events.at(-2)!.replace(/^data: /, '')) as { error: { code: number; retryable: boolean; message: string } };
    expect(last.error).toMatchObject({ code: 504, type: 'Gateway Timeout', retryable: false });
    expect(last.error.message).toMatch(/time limit/);
    // tokens streamed until the deadline, then the end: no second leg, no second engine call
    expect(events.filter((e) => e.includes('"text":" t')).length).toBeGreaterThan(10);
    expect(g.legs).toHaveLength(1);
    expect(engine.calls).toHaveLength(1);
    expect(g.backend.counters.migrated).toBe(0);
    expect(endedMs).toBeGreaterThanOrEqual(DEADLINE_MS - 100);
    expect(endedMs).toBeLessThan(DEADLINE_MS + 1500);
    // the engine's request is cancelled (its connection closed) and the instance told the leg timed out
    for (let i = 0; i < 100 && (engine.calls[0]!.closedAtMs === undefined || g.ends.length === 0); i++) await new Promise((res) => setTimeout(res, 10));
    expect(engine.calls[0]!.closedAtMs).toBeDefined();
    expect(g.ends).toHaveLength(1);
    expect(g.ends[0]).toMatchObject({ id: g.legs[0]!.id, phase: 'end', outcome: 'timed_out' });
    expect(g.ends[0]!.completionTokens).toBeGreaterThan(10);
  });

  it('a non-streaming request past its deadline is a 504, not retryable', async () => {
    const engine = await slowEngine();
    const g = await gateway(engine.url);
    const r = await fetch(`http://127.0.0.1:${g.port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(false) });
    expect(r.status).toBe(504);
    expect(r.headers.get('retry-after')).toBeNull();
    expect(r.headers.get('x-dynamollm-error-code')).toBe('timeout');
    expect(((await r.json()) as { error: { code: number } }).error.code).toBe(504);
    expect(g.legs).toHaveLength(1);
    expect(engine.calls).toHaveLength(1);
    expect(g.backend.counters.migrated).toBe(0);
  });
});

describe('the deadline predicates', () => {
  const req: InferenceRequest = {
    v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'Hi', inputTokens: 2, maxTokens: 100, arrivalMs: 0, giveUpAtMs: 10_000, streamSubject: subjects.stream('r1'),
  };
  const st = (): StreamState => ({ out: 3, sent: 3, text: ' a b c', textBytes: 6, keepText: true, energyJ: 0, legs: 0 });

  it('canMigrate: until the give-up time, not at it nor after', () => {
    expect(canMigrate(req, st(), 3, 9_999)).toBe(true);
    expect(canMigrate(req, st(), 3, 10_000)).toBe(false);
    expect(canMigrate(req, st(), 3, 60_000)).toBe(false);
  });

  it('reopenLeg asks for no leg past the give-up time: it throws the non-retryable timeout', async () => {
    let asked = 0;
    const clock = { ...systemClock, now: () => 10_000 };
    const err = await reopenLeg(async () => ++asked, clock, 1000, req, { ...req, id: 'r1-m1' }, new AbortController().signal).catch((e: unknown) => e);
    expect(asked).toBe(0);
    expect(err).toBeInstanceOf(DynError);
    expect(err).toMatchObject({ code: 'timeout', retryable: false });
  });

  it('a retryable leg end at or past the give-up time is the timeout; before it, an engine failure', () => {
    const broke = new EngineStreamError('engine stream broke');
    expect(legFailure(broke, undefined, req, 9_000)).toMatchObject({ w: { code: 'engine_crashed', retryable: true }, outcome: 'failed' });
    expect(legFailure(broke, undefined, req, 10_000)).toMatchObject({ w: { code: 'timeout', retryable: false }, outcome: 'timed_out' });
    expect(legFailure(new EngineTimeoutError('deadline'), undefined, req, 9_990)).toMatchObject({ w: { code: 'timeout', retryable: false }, outcome: 'timed_out' });
    const byInstance = { code: 'unavailable' as const, message: 'the instance ended the request', retryable: true };
    expect(legFailure(broke, byInstance, req, 10_500).w).toMatchObject({ code: 'timeout', retryable: false });
    const cancelled = { code: 'cancelled' as const, message: 'cancelled', retryable: false };
    expect(legFailure(broke, cancelled, req, 10_500)).toMatchObject({ w: cancelled, outcome: 'failed' });
  });

  it("a relayed leg's retryable error past the give-up time reaches the client as the timeout", () => {
    const kept = new MigrationText({ maxBytes: 1 << 20, maxTotalBytes: 1 << 24 });
    const c: TokenChunk = { v: 1, id: 'r1', seq: 4, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'engine_crashed', message: 'x', retryable: true } };
    expect(relayedOut(c, req, st(), kept, 9_000).error).toMatchObject({ code: 'engine_crashed', retryable: true });
    expect(relayedOut(c, req, st(), kept, 10_000).error).toMatchObject({ code: 'timeout', retryable: false });
  });

  it('a resume past the give-up time is refused with the timeout; the HTTP answer of that timeout is a 504', () => {
    expect(cannotContinue(req, 10_000)).toMatchObject({ code: 'timeout', retryable: false });
    expect(cannotContinue(req, 9_000)).toMatchObject({ code: 'unavailable', retryable: false });
    const h = httpErrorOfWire('timeout', 'the request did not finish within its time limit', undefined, false, false);
    expect([h.status, h.retryable, h.code]).toEqual([504, false, 'timeout']);
    expect(httpErrorOfWire('timeout', 'x').status).toBe(503);
  });
});
