/**
 * The gateway's admission and stream deadlines (actors/gateway/nats-backend.ts, legs.ts, elections.ts,
 * chunk-queue.ts) on a virtual clock: the NatsBackend with a ManualClock over an in-memory stand-in for its Bus,
 * whose request deadlines run on the same clock. Each case runs in virtual time to the millisecond the rule
 * says, with no sleep:
 * - the intake budget (admitTimeoutMs), retried with the same request id, and no longer;
 * - a pool's hold notice (TokenChunk.hold) extends it to admitTimeoutMs past the hold's end, never past the
 *   request's give-up time, and holds that follow one another never past holdLimitMs;
 * - a leader election under way (ElectionWatch on the managers' heartbeats) extends it until the successor leads;
 * - a request sent while NATS is down is held until the connection is back, inside the same budget;
 * - a stream silent for chunkTimeoutMs that cannot continue on a new leg ends with a retryable error (its last chunk,
 *   once a token was sent), a chunk before it resets the wait;
 * - a request whose legs end before they start is sent again as a new leg only until holdLimitMs;
 * - a prompt's tokenize is retried past its deadline while the router (GatewayRouter on the instances' statuses)
 *   expects an instance, up to tokenizeHoldMs;
 * - a leg the gateway routed itself whose instance dies before its first token is sent again on a peer once the
 *   router's view says the instance is gone (deadAfterMs), not after chunkTimeoutMs;
 * - a stream whose engine and then its instance die mid-stream (direct data path, an HTTP engine that breaks)
 *   while no peer is ready waits for its next leg until one is (past holdLimitMs, inside its give-up time): the
 *   client's stream completes, not ended by a timeout error chunk;
 * - a stream whose next leg is admitted but never starts (no grant, no token: its instance died holding it and
 *   nobody ended it) sends it again after chunkTimeoutMs (the silent leg cancelled) instead of ending the stream.
 * The real processes of these paths (a pool leader SIGKILLed, a NATS restart, an engine loading) are
 * test/integration/{election-hold,pool-hold-admission,gateway-nats,tokenize-hold}.test.ts.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import { Cancel, Heartbeat, TokenChunk, subjects, type Admission, type InferenceRequest } from '../../protocols/index.ts';
import { InstanceStatus, RoutingTable, controlSubjects } from '../../protocols/control.ts';
import { NatsBackend, type NatsBackendOptions } from '../../actors/gateway/nats-backend.ts';
import { ElectionWatch } from '../../actors/gateway/elections.ts';
import { GatewayRouter } from '../../actors/gateway/router.ts';
import { parseConfig } from '../../actors/common/config.ts';

const START = 1_700_000_000_000;
const MODEL = 'llama3.1-8b';

function setup(opts: NatsBackendOptions = {}) {
  const clock = new ManualClock(START);
  const bus = new VirtualBus(clock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: false, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, ...opts, clock });
  return { clock, bus, backend };
}

let seq = 0;
function request(clock: ManualClock, giveUpInMs = 600_000): InferenceRequest {
  const id = `r${++seq}`;
  const now = clock.now();
  return { v: 1, id, model: MODEL, kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 4, arrivalMs: now, giveUpAtMs: now + giveUpInMs, streamSubject: subjects.stream(id) };
}

const admitted = (id: string): Admission => ({ v: 1, id, ok: true, pool: 'pool-all', instance: 'i0', type: 'SS' });

/**
 * An engine of the direct data path on a real socket: each completion streams `words(prompt)` one-word events
 * ('<name><i> '); then, `dies`, its connection is destroyed mid-stream (SIGKILL), else the last event has
 * finish_reason 'length' and usage, then [DONE]. `bodies`: the completions it was asked for.
 */
async function engine(name: string, dies: boolean, words: (maxTokens: number) => number) {
  const bodies: { prompt: string; max_tokens: number }[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { prompt: string; max_tokens: number };
      bodies.push(body);
      const n = words(body.max_tokens);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < n; i++) {
        const last = !dies && i === n - 1;
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: `${name}${i} `, finish_reason: last ? 'length' : null }], ...(last ? { usage: { prompt_tokens: 9, completion_tokens: n, total_tokens: 9 + n } } : {}) })}\n\n`);
      }
      if (dies) setTimeout(() => res.socket?.destroy(), 20);
      else res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, close: () => server.close() };
}

/** Waits in real time (an engine's socket) until `ok()`, 5 s at most. */
async function until(ok: () => boolean): Promise<void> {
  for (let t = 0; !ok() && t < 5000; t += 5) await new Promise((r) => setTimeout(r, 5));
}

/** The outcome of a promise, and the virtual time it settled at. */
function track<T>(clock: ManualClock, p: Promise<T>) {
  const out: { value?: T; error?: Error; atMs?: number } = {};
  p.then((v) => Object.assign(out, { value: v, atMs: clock.now() - START }), (e: unknown) => Object.assign(out, { error: e as Error, atMs: clock.now() - START }));
  return out;
}

/** Virtual time forward by `ms` in `stepMs` steps, letting every promise continuation run after each. */
async function run(clock: ManualClock, ms: number, stepMs = 5): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    clock.advance(Math.min(stepMs, left));
    await new Promise<void>((r) => setImmediate(r));
  }
}

describe('gateway admission on a virtual clock', () => {
  it('an intake that never answers is retried with the same id until admitTimeoutMs, then fails with a retryable timeout', async () => {
    const { clock, bus, backend } = setup();
    bus.responders.set(subjects.clusterIntake(), () => {}); // never answers
    const req = request(clock);
    const out = track(clock, backend.submit(req, new AbortController().signal));
    await run(clock, 9_400);
    expect(out.error).toBeUndefined();
    await run(clock, 1_000);
    expect(out.error).toMatchObject({ code: 'timeout', retryable: true });
    // the last attempt's deadline is the budget's end: the request fails at 10 s, not an attempt later
    expect(out.atMs).toBeGreaterThan(9_400);
    expect(out.atMs).toBeLessThanOrEqual(10_000);
    const attempts = bus.sent.filter((s) => s.subject === subjects.clusterIntake());
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    expect(new Set(attempts.map((a) => a.id))).toEqual(new Set([req.id]));
    expect(backend.counters.retries).toBe(attempts.length - 1);
  });

  it("a pool's hold notice extends the wait to admitTimeoutMs past the hold's end; the admission then completes", async () => {
    const { clock, bus, backend } = setup();
    let answerFromMs = Infinity;
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      if (clock.now() - START >= answerFromMs) reply(admitted((m as InferenceRequest).id));
    });
    const req = request(clock);
    const out = track(clock, backend.submit(req, new AbortController().signal));
    await run(clock, 1_000);
    // the pool holds the request for an instance that is starting, and answers within 20 s
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, hold: { forMs: 20_000 } });
    await run(clock, 20_000);
    expect(out.error).toBeUndefined(); // 21 s: past the 10-s budget, inside the hold
    answerFromMs = 24_000;
    await run(clock, 6_000);
    expect(out.value?.admission).toMatchObject({ ok: true, instance: 'i0' });
    // the first attempt sent after 24 s is answered: attempts last 3 s at most, 0.5 s apart at most
    expect(out.atMs).toBeGreaterThanOrEqual(24_000);
    expect(out.atMs).toBeLessThanOrEqual(27_500);
    expect(backend.counters.poolHolds).toBe(1);
    // the relayed stream completes
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: 'hi', tokens: 4, done: true, finishReason: 'length' });
    const chunks: TokenChunk[] = [];
    for await (const c of out.value!) chunks.push(c);
    expect(chunks.map((c) => [c.text, c.done])).toEqual([['hi', true]]);
  });

  it('a hold is waited for until admitTimeoutMs past its end and no longer, and never past the give-up time', async () => {
    const { clock, bus, backend } = setup();
    bus.responders.set(subjects.clusterIntake(), () => {});
    const req = request(clock);
    const out = track(clock, backend.submit(req, new AbortController().signal));
    await run(clock, 1_000);
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, hold: { forMs: 20_000 } });
    // held until 1 + 20 + 10 = 31 s
    await run(clock, 29_400);
    expect(out.error).toBeUndefined();
    await run(clock, 1_000);
    expect(out.error).toMatchObject({ code: 'timeout' });
    expect(out.atMs).toBeGreaterThan(30_400);
    expect(out.atMs).toBeLessThanOrEqual(31_000);

    const short = request(clock, 15_000); // gives up 15 s after it arrived
    const early = track(clock, backend.submit(short, new AbortController().signal));
    await run(clock, 1_000);
    bus.publish(short.streamSubject, TokenChunk, { v: 1, id: short.id, seq: 0, text: '', tokens: 0, hold: { forMs: 20_000 } });
    await run(clock, 15_000);
    expect(early.error).toMatchObject({ code: 'timeout' });
    expect(early.atMs! - (short.arrivalMs - START)).toBeLessThanOrEqual(15_000);
    expect(early.atMs! - (short.arrivalMs - START)).toBeGreaterThan(14_000);
  });

  it('holds that follow one another are waited for up to holdLimitMs after the intake began, then the request fails as retryable', async () => {
    const { clock, bus, backend } = setup({ holdLimitMs: 60_000 });
    bus.responders.set(subjects.clusterIntake(), () => {}); // never answers: no instance becomes ready
    const req = request(clock);
    const out = track(clock, backend.submit(req, new AbortController().signal));
    // a pool holds it for 20 s, and holds it again every 15 s (a new leader, a new instance starting): each hold
    // alone would have it waited for until 30 s after the hold's notice
    const hold = () => bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, hold: { forMs: 20_000 } });
    hold();
    const again = clock.setInterval(hold, 15_000);
    await run(clock, 59_400, 50);
    expect(out.error).toBeUndefined();
    await run(clock, 700);
    clock.clearInterval(again);
    expect(out.error).toMatchObject({ code: 'timeout', retryable: true });
    expect(out.atMs).toBeGreaterThan(59_400);
    expect(out.atMs).toBeLessThanOrEqual(60_000);
    expect(backend.counters.poolHolds).toBe(1);
  });

  it('a leader election under way extends the wait until its successor leads; without the watch it fails at the budget', async () => {
    const DEAD_AFTER_MS = 1500;
    for (const watched of [true, false]) {
      const clock = new ManualClock(START);
      const bus = new VirtualBus(clock);
      const watch = new ElectionWatch(bus as unknown as Bus, DEAD_AFTER_MS, 60_000, clock);
      watch.start();
      const backend = new NatsBackend(bus as unknown as Bus, { direct: false, admitTimeoutMs: 2000, admitAttemptMs: 1000, clock, ...(watched ? { elections: watch } : {}) });
      // the pool's leader beats every 250 ms (the pools it leads in its meta) until it dies at 1 s; its standby leads from 8 s
      let leader: string | undefined = 'pm-0';
      const beat = (id: string) => bus.publish(subjects.heartbeat('pool', id), Heartbeat, {
        v: 1, kind: 'pool', id, seq: 0, startedMs: START, sentMs: clock.now(), state: 'running', load: { queued: 0, running: 0 }, ...(id === leader ? { meta: { leads: 'pool-all' } } : {}),
      });
      clock.setInterval(() => {
        const t = clock.now() - START;
        if (t <= 1000) beat('pm-0');
        if (t >= 8000) beat('pm-1');
      }, 250);
      // the cluster's dispatch finds no pool leader: the intake answers once there is one again
      bus.responders.set(subjects.clusterIntake(), (m, reply) => {
        if (clock.now() - START >= 8000) reply(admitted((m as InferenceRequest).id));
      });
      await run(clock, 1000);
      leader = 'pm-1';
      const out = track(clock, backend.submit(request(clock), new AbortController().signal));
      await run(clock, 10_000);
      if (watched) {
        expect(out.value?.admission).toMatchObject({ ok: true });
        // the first attempt sent after 8 s is answered: attempts last 1 s at most, 0.5 s apart at most
        expect(out.atMs).toBeGreaterThanOrEqual(8000);
        expect(out.atMs).toBeLessThanOrEqual(9500);
        expect(backend.counters.electionHolds).toBe(1);
        // the election ended when the successor's first heartbeat came
        expect(watch.lastMs(clock.now())).toBe(START + 8000);
      } else {
        expect(out.error).toMatchObject({ code: 'timeout' });
        expect(out.atMs).toBeGreaterThan(2500);
        expect(out.atMs).toBeLessThanOrEqual(3000);
        expect(backend.counters.electionHolds).toBe(0);
      }
      watch.stop();
    }
  });

  it('a request sent while NATS is down is held until it is back, inside the budget; past the budget it fails as unavailable', async () => {
    const { clock, bus, backend } = setup();
    bus.responders.set(subjects.clusterIntake(), (m, reply) => reply(admitted((m as InferenceRequest).id)));
    bus.connected = false;
    const out = track(clock, backend.submit(request(clock), new AbortController().signal));
    await run(clock, 4000);
    expect(out.value).toBeUndefined();
    expect(bus.sent).toHaveLength(0); // nothing sent while down
    bus.connected = true;
    await run(clock, 100);
    expect(out.value?.admission).toMatchObject({ ok: true });
    expect(out.atMs).toBeGreaterThanOrEqual(4000);
    expect(out.atMs).toBeLessThanOrEqual(4030); // the connection is polled every 25 ms
    expect(backend.counters.heldForReconnect).toBe(1);

    bus.connected = false;
    const sentAt = clock.now() - START;
    const lost = track(clock, backend.submit(request(clock), new AbortController().signal));
    await run(clock, 9_990);
    expect(lost.error).toBeUndefined();
    await run(clock, 20);
    expect(lost.error).toMatchObject({ code: 'unavailable', retryable: true });
    expect(lost.atMs! - sentAt).toBe(10_000);
    expect(backend.counters.heldForReconnect).toBe(2);
  });

  it('a stream silent for chunkTimeoutMs ends with a retryable error where it cannot continue; a chunk before it starts the wait again', async () => {
    // migrationLimit 0: the silent leg is lost and cannot continue on a new leg (test/unit/gateway-relay-silent.test.ts: it does)
    const { clock, bus, backend } = setup({ chunkTimeoutMs: 30_000, migrationLimit: 0 });
    bus.responders.set(subjects.clusterIntake(), (m, reply) => reply(admitted((m as InferenceRequest).id)));
    const req = request(clock);
    const stream = await (async () => {
      const s = track(clock, backend.submit(req, new AbortController().signal));
      await run(clock, 5);
      return s.value!;
    })();
    const chunks: TokenChunk[] = [];
    const read = track(clock, (async () => {
      for await (const c of stream) chunks.push(c);
    })());
    const base = clock.now() - START;
    await run(clock, 29_000);
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: 'a', tokens: 1 });
    await run(clock, 29_900);
    expect(read.error).toBeUndefined();
    expect(chunks.map((c) => c.text)).toEqual(['a']);
    await run(clock, 200);
    // a token was sent: the end is the stream's last chunk (as on the direct path), not a failed read
    expect(read.error).toBeUndefined();
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'error', error: { code: 'unavailable', retryable: true } });
    // 30 s after the last chunk (at 29 s), not 30 s after the first wait began
    expect(read.atMs! - base).toBeGreaterThanOrEqual(59_000);
    expect(read.atMs! - base).toBeLessThanOrEqual(59_010);
  });

  it('a request whose legs end before they start (their instances die holding them) is sent again only until holdLimitMs', async () => {
    const { clock, bus, backend } = setup({ holdLimitMs: 50_000 });
    const legs: string[] = [];
    // every leg is admitted, and 20 s later ended by its pool leader: the instance holding it died before starting it
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      if (!legs.includes(leg.id)) {
        legs.push(leg.id);
        clock.setTimeout(() => bus.publish(leg.streamSubject, TokenChunk, {
          v: 1, id: leg.id, seq: 0, text: '', tokens: 0, done: true, finishReason: 'error',
          error: { code: 'unavailable', message: 'instance i0 died holding the request', retryable: true, retryAfterS: 1 },
        }), 20_000);
      }
      reply(admitted(leg.id));
    });
    const req = request(clock);
    const submitted = track(clock, backend.submit(req, new AbortController().signal));
    await run(clock, 5);
    const chunks: TokenChunk[] = [];
    const read = track(clock, (async () => {
      for await (const c of submitted.value!) chunks.push(c);
    })());
    await run(clock, 60_500, 20);
    // sent again at 20 s and 40 s (inside the 50-s limit), not at 60 s: the third leg's end is the client's answer
    expect(legs).toHaveLength(3);
    expect(read.atMs).toBeDefined();
    expect(read.atMs!).toBeGreaterThanOrEqual(60_000);
    expect(read.atMs!).toBeLessThanOrEqual(60_100);
    expect(chunks.at(-1)).toMatchObject({ done: true, error: { code: 'unavailable', retryable: true } });
    expect(backend.counters.migrated).toBe(2);
  });

  it('a tokenize is retried past its deadline while an instance is starting, up to tokenizeHoldMs; with one ready, not past the deadline', async () => {
    const TOKENIZE_MS = 2000;
    const HOLD_MS = 30_000;
    const config = parseConfig({
      model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 2 }], pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 }, engine: { initialTp: 2 },
    });
    /** `readyAtMs`: when the instance's engine is loaded (its status says ready, its tokenizer answers). */
    const attempt = async (readyAtMs: number, engineUpAtMs = readyAtMs) => {
      const clock = new ManualClock(START);
      const bus = new VirtualBus(clock);
      const router = new GatewayRouter(bus as unknown as Bus, config, undefined, undefined, clock);
      router.start();
      const backend = new NatsBackend(bus as unknown as Bus, { tokenizeTimeoutMs: TOKENIZE_MS, tokenizeHoldMs: HOLD_MS, admitAttemptMs: 1000, router, clock });
      let seqNo = 0;
      clock.setInterval(() => bus.publish(controlSubjects.instanceStatus('pool-all', 'i0'), InstanceStatus, {
        v: 1, id: 'i0', pool: 'pool-all', tp: 2, gpuIds: [0, 1], state: clock.now() - START >= readyAtMs ? 'ready' : 'starting', startedMs: START, seq: seqNo++, sentMs: clock.now(),
        clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
      }), 250);
      // the instance answers for its tokenizer: the engine is down (retryable) until it has loaded
      bus.responders.set(subjects.tokenize(), (_m, reply) => reply(clock.now() - START >= engineUpAtMs
        ? { v: 1, ok: true, count: 3 }
        : { v: 1, ok: false, error: { code: 'unavailable', message: 'engine loading', retryable: true } }));
      await run(clock, 250); // the first status
      const out = track(clock, backend.tokenize({ v: 1, model: MODEL, prompt: 'hello' }));
      await run(clock, 40_000, 10);
      return { reply: out.value, afterMs: out.atMs! - 250 };
    };
    // the engine loads for 12 s: counted once it is up, past the 2-s deadline
    const held = await attempt(12_000);
    expect(held.reply).toMatchObject({ ok: true, count: 3 });
    expect(held.afterMs).toBeGreaterThanOrEqual(12_000 - 250);
    expect(held.afterMs).toBeLessThanOrEqual(12_500);
    // an instance that never gets ready is waited for up to tokenizeHoldMs, no longer: the engine's last answer
    const never = await attempt(Infinity);
    expect(never.reply).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(never.afterMs).toBeGreaterThan(HOLD_MS - 600);
    expect(never.afterMs).toBeLessThanOrEqual(HOLD_MS);
    // an instance that says it is ready while its engine does not answer: no capacity is coming, the deadline stands
    const ready = await attempt(0, Infinity);
    expect(ready.reply).toMatchObject({ ok: false });
    expect(ready.afterMs).toBeGreaterThan(TOKENIZE_MS - 600);
    expect(ready.afterMs).toBeLessThanOrEqual(TOKENIZE_MS);
  });

  it("a routed leg whose instance dies before its first token is sent again on a peer once the router's view says so, not after chunkTimeoutMs", async () => {
    const DEAD_AFTER_MS = 1500;
    const config = parseConfig({
      model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 2 }], pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: DEAD_AFTER_MS, leaseTtlMs: 1500 }, engine: { initialTp: 1 },
    });
    const clock = new ManualClock(START);
    const bus = new VirtualBus(clock);
    const router = new GatewayRouter(bus as unknown as Bus, config, undefined, undefined, clock);
    router.start();
    const backend = new NatsBackend(bus as unknown as Bus, { direct: false, chunkTimeoutMs: 30_000, holderCheckMs: 250, router, clock });
    // the cluster's routing table, and two ready instances of its pool reporting every 250 ms while they live
    bus.publish(controlSubjects.routing(), RoutingTable, {
      v: 1, routes: Object.fromEntries(['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'].map((t) => [t, 'pool-all'])),
      pools: [{ pool: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'], retired: false }], epoch: 1, issuedBy: 'cm-0', sentMs: clock.now(),
    });
    const alive = new Set(['i0', 'i1']);
    let seqNo = 0;
    clock.setInterval(() => {
      for (const id of alive) {
        bus.publish(controlSubjects.instanceStatus('pool-all', id), InstanceStatus, {
          v: 1, id, pool: 'pool-all', tp: 1, gpuIds: [id === 'i0' ? 0 : 1], state: 'ready', startedMs: START, seq: seqNo++, sentMs: clock.now(),
          clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
        });
      }
    }, 250);
    for (const id of alive) {
      bus.responders.set(subjects.instanceAdmit(id), (m, reply) => reply({ ...admitted((m as InferenceRequest).id), instance: id, startedMs: START }));
    }
    await run(clock, 500);
    const req = request(clock);
    const out = track(clock, backend.submit(req, new AbortController().signal));
    await run(clock, 5);
    const first = bus.sent.find((x) => x.id === req.id && x.subject.endsWith('.admit'))!;
    const holder = first.subject === subjects.instanceAdmit('i0') ? 'i0' : 'i1';
    const peer = holder === 'i0' ? 'i1' : 'i0';
    expect(out.value?.admission).toMatchObject({ ok: true, instance: holder });
    expect(backend.counters.routed).toBe(1);
    // the holder's process dies before the first token: no pool leader knows of the routed leg, nobody else ends it
    const chunks: TokenChunk[] = [];
    const read = track(clock, (async () => {
      for await (const c of out.value!) chunks.push(c);
    })());
    alive.delete(holder);
    bus.responders.delete(subjects.instanceAdmit(holder));
    const diedAt = clock.now() - START;
    await run(clock, 3000);
    // silent past deadAfterMs: the leg is sent again (a new leg id) to the peer, within one holder check of the verdict
    const again = bus.sent.find((x) => x.subject === subjects.instanceAdmit(peer));
    expect(again).toBeDefined();
    expect(again!.id).not.toBe(req.id);
    expect(again!.atMs - START - diedAt).toBeGreaterThan(DEAD_AFTER_MS - 250);
    expect(again!.atMs - START - diedAt).toBeLessThanOrEqual(DEAD_AFTER_MS + 2 * 250);
    expect(backend.counters.holderDied).toBe(1);
    expect(backend.counters.migrated).toBe(1);
    // the peer streams it: the client sees one stream
    bus.publish(subjects.stream(again!.id!), TokenChunk, { v: 1, id: again!.id!, seq: 0, text: 'ok', tokens: 4, done: true, finishReason: 'length' });
    await run(clock, 5);
    expect(read.error).toBeUndefined();
    expect(chunks.map((c) => [c.text, c.done, c.error])).toEqual([['ok', true, undefined]]);
  });

  it('a stream whose engine and then its instance die mid-stream, while no peer is ready for 45 s, completes on the first peer ready', async () => {
    // chaos-cli (engine and instance manager kills every 2.5 s): no instance of the pool ready for longer than the
    // gateway's hold limit; a continuation that waited only 30 s ended the client's stream with a 'timeout' error chunk
    const READY_MS = 45_000;
    const { clock, bus, backend } = setup({ direct: true, holdLimitMs: 30_000 });
    const dead = await engine('a', true, () => 3);
    const peer = await engine('b', false, (max) => max);
    const grant = (id: string, instance: string, url: string) => bus.publish(subjects.stream(id), TokenChunk, {
      v: 1, id, seq: 0, text: '', tokens: 0, instance, pool: 'pool-all', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 },
    });
    const req = { ...request(clock), maxTokens: 8 };
    const legs: { id: string; atMs: number }[] = [];
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      legs.push({ id: leg.id, atMs: clock.now() - START });
      if (leg.id === req.id) {
        grant(leg.id, 'i0', dead.url);
        return reply(admitted(leg.id));
      }
      // the continuation: the pool holds it (its instances restarting) until one is ready, then admits it there
      if (clock.now() - START < READY_MS) return bus.publish(leg.streamSubject, TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, pool: 'pool-all', hold: { forMs: 20_000 } });
      grant(leg.id, 'i1', peer.url);
      reply({ ...admitted(leg.id), instance: 'i1' });
    });
    // an engine's tokenizer counts the continuation's prompt; instance i0 died with its engine: its leg reports find no responder
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 12 }));
    try {
      const submitted = track(clock, backend.submit(req, new AbortController().signal));
      await run(clock, 5);
      const chunks: TokenChunk[] = [];
      const read = track(clock, (async () => {
        for await (const c of submitted.value!) chunks.push(c);
      })());
      // the first leg streams 3 tokens from its engine, which then dies
      await until(() => backend.counters.migrated === 1 && legs.length > 1);
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 a2 ');
      await run(clock, READY_MS + 5_000, 50);
      await until(() => read.atMs !== undefined);
      expect(read.error).toBeUndefined();
      // no error chunk (the old 30-s wait for the next leg ended the stream with a 'timeout' one at 30 s)
      expect(chunks.filter((c) => c.error).map((c) => c.error?.code)).toEqual([]);
      // one stream: every token once, seq contiguous, ended by the peer's last token
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 a2 b0 b1 b2 b3 b4 ');
      expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 8 } });
      // the peer was asked for the prompt plus the text sent, and the tokens left; it was admitted once one was ready
      expect(peer.bodies).toEqual([expect.objectContaining({ prompt: 'hello' + 'a0 a1 a2 ', max_tokens: 5 })]);
      expect(read.atMs!).toBeGreaterThanOrEqual(READY_MS);
      expect(legs.at(-1)!.atMs).toBeLessThanOrEqual(READY_MS + 3_000);
    } finally {
      dead.close();
      peer.close();
    }
  });

  it('a stream whose next leg is admitted but never starts (its instance died holding it) sends it again after chunkTimeoutMs', async () => {
    const { clock, bus, backend } = setup({ direct: true, chunkTimeoutMs: 30_000 });
    const dead = await engine('a', true, () => 3);
    const peer = await engine('b', false, (max) => max);
    const grant = (id: string, instance: string, url: string) => bus.publish(subjects.stream(id), TokenChunk, {
      v: 1, id, seq: 0, text: '', tokens: 0, instance, pool: 'pool-all', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 },
    });
    const req = { ...request(clock), maxTokens: 8 };
    const legs: { id: string; atMs: number }[] = [];
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      if (!legs.some((l) => l.id === leg.id)) legs.push({ id: leg.id, atMs: clock.now() - START });
      const k = legs.findIndex((l) => l.id === leg.id);
      // leg 0 on the engine that dies; leg 1 admitted by an instance that dies before granting it (nobody ends it); leg 2 on the peer
      if (k === 0) grant(leg.id, 'i0', dead.url);
      if (k === 2) grant(leg.id, 'i2', peer.url);
      reply({ ...admitted(leg.id), instance: `i${k}` });
    });
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 12 }));
    const cancels: string[] = [];
    bus.subscribe(subjects.cancelAll(), Cancel, (c) => cancels.push(c.id));
    try {
      const submitted = track(clock, backend.submit(req, new AbortController().signal));
      await run(clock, 5);
      const chunks: TokenChunk[] = [];
      const read = track(clock, (async () => {
        for await (const c of submitted.value!) chunks.push(c);
      })());
      await until(() => legs.length === 2);
      await run(clock, 31_000, 50);
      await until(() => read.atMs !== undefined);
      expect(read.error).toBeUndefined();
      expect(chunks.filter((c) => c.error).map((c) => c.error?.code)).toEqual([]);
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 a2 b0 b1 b2 b3 b4 ');
      expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 8 } });
      // the silent leg was cancelled at its instance, and its successor sent once it had been silent chunkTimeoutMs
      expect(cancels).toContain(legs[1]!.id);
      expect(legs[2]!.atMs - legs[1]!.atMs).toBeGreaterThanOrEqual(30_000);
      expect(legs[2]!.atMs - legs[1]!.atMs).toBeLessThanOrEqual(30_100);
    } finally {
      dead.close();
      peer.close();
    }
  });
});
