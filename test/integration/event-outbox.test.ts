/**
 * Decision events reach the events stream once each, in order, when the stream was not there to take them: before
 * the cluster manager made it (the first planner's lease event), across a nats-server restart (a stream with no
 * server), and an outbox that filled meanwhile keeps its newest (actors/common/event-outbox.ts). A real nats-server
 * with the project's config; the publisher connects as an instance manager, with its own rights.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream as js, jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { waitFor } from '../helpers/wait.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ensureEventsStream, eventPublisher } from '../../actors/common/events.ts';
import { EventOutbox } from '../../actors/common/event-outbox.ts';
import { DecisionEvent, jetstream, subjects } from '../../protocols/index.ts';

let nats: TestNats;
let admin: Bus;
const buses: Bus[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, ...nats.as('admin'), name: 'outbox-admin', log: silentLogger() });
}, 30_000);

afterAll(async () => {
  for (const b of buses) await b.close().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
});

async function instanceBus(id: string): Promise<Bus> {
  const b = await Bus.connect({ servers: nats.url, ...nats.as('instance', id), name: id, log: silentLogger() });
  buses.push(b);
  return b;
}

/** the events stream's messages of `actor`, in stream order */
async function stored(actor: string): Promise<DecisionEvent[]> {
  const jsm = await jetstreamManager(admin.nc);
  const last = (await jsm.streams.info(jetstream.eventsStream)).state.last_seq;
  const out: DecisionEvent[] = [];
  if (last === 0) return out;
  const c = await js(admin.nc).consumers.get(jetstream.eventsStream);
  for (let seq = 0; seq < last;) {
    const batch = await c.fetch({ max_messages: 1000, expires: 1000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      seq = m.seq;
      const e = DecisionEvent.decode(m.data);
      if (e.actor === actor) out.push(e);
    }
    if (n === 0) throw new Error(`the events stream gave nothing past ${seq} of ${last}`);
  }
  return out;
}

const seqOf = (evs: DecisionEvent[]) => evs.map((e) => (e.decision as { n: number }).n);

describe('the decision events outbox', () => {
  it('holds the events decided before the stream exists and stores each once, in order, once it does', async () => {
    const id = 'inst-early';
    const bus = await instanceBus(id);
    const outbox = new EventOutbox(bus, id, silentLogger(), { retryMinMs: 50, retryMaxMs: 200 });
    const evt = eventPublisher(bus, id, silentLogger(), undefined, outbox);
    for (let n = 0; n < 5; n++) evt('clock', `decision ${n}`, { n }, {});
    await new Promise((r) => setTimeout(r, 600));
    expect(outbox.held).toBe(5);
    expect(outbox.counters.retries).toBeGreaterThan(0);
    await ensureEventsStream(admin);
    expect(await outbox.idle(10_000)).toBe(true);
    for (let n = 5; n < 8; n++) evt('clock', `decision ${n}`, { n }, {});
    expect(await outbox.idle(10_000)).toBe(true);
    expect(seqOf(await stored(id))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(outbox.counters).toMatchObject({ stored: 8, dropped: 0 });
  }, 30_000);

  it('stores the events decided while its nats-server was down once it is back, each once', async () => {
    await ensureEventsStream(admin);
    const id = 'inst-restart';
    const bus = await instanceBus(id);
    const outbox = new EventOutbox(bus, id, silentLogger(), { retryMinMs: 50, retryMaxMs: 200, ackTimeoutMs: 1000 });
    const evt = eventPublisher(bus, id, silentLogger(), undefined, outbox);
    evt('clock', 'before', { n: 0 }, {});
    expect(await outbox.idle(5000)).toBe(true);
    const restarting = nats.restart!(1500);
    await new Promise((r) => setTimeout(r, 300));
    for (let n = 1; n < 4; n++) evt('clock', `while down ${n}`, { n }, {});
    await restarting;
    await waitFor(() => (admin.connected && bus.connected ? true : undefined), 10_000, 'both clients back');
    for (let n = 4; n < 6; n++) evt('clock', `after ${n}`, { n }, {});
    expect(await outbox.idle(20_000)).toBe(true);
    expect(seqOf(await stored(id))).toEqual([0, 1, 2, 3, 4, 5]);
  }, 60_000);

  it("an actor's bus draining waits for the events held", async () => {
    await ensureEventsStream(admin);
    const id = 'inst-drain';
    const bus = await instanceBus(id);
    // events on a subject of the actor's that no stream takes yet: held, sent again every 50-100 ms
    const jsm = await jetstreamManager(admin.nc);
    const subject = subjects.event('clock', id);
    const outbox = new EventOutbox(bus, id, silentLogger(), { retryMinMs: 50, retryMaxMs: 100 });
    const enc = (n: number) => DecisionEvent.encode({ v: 1, kind: 'clock', actor: id, atMs: n, summary: '', decision: { n }, inputs: {} });
    await jsm.streams.delete(jetstream.eventsStream);
    for (let n = 0; n < 4; n++) outbox.push(subject, enc(n));
    await new Promise((r) => setTimeout(r, 300));
    expect(outbox.held).toBe(4);
    await ensureEventsStream(admin);
    await bus.drain();
    expect(outbox.held).toBe(0);
    expect(seqOf(await stored(id))).toEqual([0, 1, 2, 3]);
  }, 30_000);

  it('a drain with no stream to take the events held does not wait for one', async () => {
    const id = 'inst-nostream';
    const bus = await instanceBus(id);
    const outbox = new EventOutbox(bus, id, silentLogger(), { retryMinMs: 5000, retryMaxMs: 5000 });
    const enc = (n: number) => DecisionEvent.encode({ v: 1, kind: 'clock', actor: id, atMs: n, summary: '', decision: { n }, inputs: {} });
    await (await jetstreamManager(admin.nc)).streams.delete(jetstream.eventsStream);
    for (let n = 0; n < 3; n++) outbox.push(subjects.event('clock', id), enc(n));
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await bus.drain();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(outbox.held).toBe(3);
    await ensureEventsStream(admin);
  }, 30_000);

  it('past its bound drops the oldest events not on their way, counted', async () => {
    const id = 'inst-full';
    const bus = await instanceBus(id);
    // ten pushed in one turn: the first is on its way (its acknowledgement comes in a later turn), the outbox fills
    const outbox = new EventOutbox(bus, id, silentLogger(), { max: 3, retryMinMs: 50, retryMaxMs: 100 });
    const enc = (n: number) => DecisionEvent.encode({ v: 1, kind: 'clock', actor: id, atMs: n, summary: '', decision: { n }, inputs: {} });
    for (let n = 0; n < 10; n++) outbox.push(subjects.event('clock', id), enc(n));
    expect(outbox.held).toBe(3);
    expect(outbox.counters.dropped).toBe(7);
    expect(await outbox.idle(5000)).toBe(true);
    expect(seqOf(await stored(id))).toEqual([0, 8, 9]);
  }, 30_000);
});
