/**
 * The Bus's request-reply over one reply subscription (src/runtime/request-mux.ts) on a real nats-server with the
 * project's nats.conf: concurrent requests each get their own reply, a late reply is dropped, nothing stays pending,
 * a publish the server refuses fails its request at once, and a close fails what is in flight.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startNatsServer, type TestNats, type Role } from '../helpers/nats.ts';
import { Bus, silentLogger, TimeoutError, NoRespondersError, ConnectionClosedError } from '../../src/runtime/index.ts';
import { RequestMux } from '../../src/runtime/request-mux.ts';
import { Admission, InferenceRequest, subjects, type InferenceRequest as InferenceRequestMsg } from '../../protocols/index.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';

let nats: TestNats;
const buses: Bus[] = [];
async function bus(role: Role, name: string = role): Promise<Bus> {
  const b = await Bus.connect({ servers: nats.url, name, ...nats.as(role), log: silentLogger(), reconnect: false });
  buses.push(b);
  return b;
}
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

const req = (id: string) => ({ ...(SAMPLES.InferenceRequest as object), id, streamSubject: subjects.stream(id) }) as InferenceRequestMsg;
const rejection = (p: Promise<unknown>): Promise<unknown> => p.then((value: unknown) => ({ resolved: value }), (e: unknown) => e);
const enc = new TextEncoder();
const dec = new TextDecoder();

describe('RequestMux', () => {
  it('routes each of 500 concurrent requests its own reply, and keeps nothing pending after', async () => {
    const srv = await bus('admin', 'mux-srv');
    const cli = await bus('admin', 'mux-cli');
    // answered out of order: the replies to even requests wait a turn
    srv.nc.subscribe('mux.echo', { callback: (_e, m) => {
      const n = Number(dec.decode(m.data));
      const answer = () => m.respond(enc.encode(`re ${n}`));
      if (n % 2 === 0) setImmediate(answer);
      else answer();
    } });
    await srv.nc.flush();
    const mux = new RequestMux(cli.nc);
    const got = await Promise.all(Array.from({ length: 500 }, (_, i) => mux.request('mux.echo', enc.encode(String(i)), 5000).then((m) => dec.decode(m.data))));
    expect(got).toEqual(Array.from({ length: 500 }, (_, i) => `re ${i}`));
    expect(mux.size).toBe(0);
    mux.close();
  });

  it('times out inside its deadline, drops the late reply, and answers the next request with its own', async () => {
    const srv = await bus('admin', 'mux-slow');
    const cli = await bus('admin', 'mux-slow-cli');
    let first = true;
    srv.nc.subscribe('mux.slow', { callback: (_e, m) => {
      const late = first;
      first = false;
      setTimeout(() => m.respond(enc.encode(late ? 'late' : 'on time')), late ? 400 : 0);
    } });
    await srv.nc.flush();
    const mux = new RequestMux(cli.nc);
    const t0 = Date.now();
    const err = await rejection(mux.request('mux.slow', enc.encode('1'), 150));
    expect(err).toBeInstanceOf(TimeoutError);
    expect(Date.now() - t0).toBeLessThan(400);
    expect(mux.size).toBe(0);
    const next = mux.request('mux.slow', enc.encode('2'), 2000);
    await new Promise((r) => setTimeout(r, 450)); // the first request's late reply has come meanwhile
    expect(dec.decode((await next).data)).toBe('on time');
    mux.close();
  });

  it('fails with NoRespondersError when nobody serves the subject', async () => {
    const cli = await bus('admin', 'mux-none');
    const mux = new RequestMux(cli.nc);
    const t0 = Date.now();
    expect(await rejection(mux.request('mux.nobody', enc.encode('x'), 5000))).toBeInstanceOf(NoRespondersError);
    expect(Date.now() - t0).toBeLessThan(2500);
    mux.close();
  });

  it('a close fails the requests in flight at once', async () => {
    const srv = await bus('admin', 'mux-mute');
    const cli = await bus('admin', 'mux-mute-cli');
    srv.nc.subscribe('mux.mute', { callback: () => {} });
    await srv.nc.flush();
    const mux = new RequestMux(cli.nc);
    const p = rejection(mux.request('mux.mute', enc.encode('x'), 10_000));
    await cli.nc.flush();
    mux.close();
    expect(await p).toBeInstanceOf(ConnectionClosedError);
    expect(mux.size).toBe(0);
  });

  it("through the Bus: a publish the server refuses fails its request well before the deadline; a bus's close fails what is in flight", async () => {
    const gw = await bus('gateway', 'mux-perm');
    const t0 = Date.now();
    // a gateway may not publish to a pool's control subject (nats.conf)
    const err = await rejection(gw.request(subjects.poolControl('x'), InferenceRequest, req('p1'), Admission, { timeoutMs: 10_000 }));
    expect(err).toBeInstanceOf(ConnectionClosedError);
    expect(Date.now() - t0).toBeLessThan(5000);

    const srv = await bus('admin', 'mux-hold');
    srv.nc.subscribe(subjects.instanceAdmit('held'), { callback: () => {} });
    await srv.nc.flush();
    const cli = await bus('pool', 'mux-close');
    const p = rejection(cli.request(subjects.instanceAdmit('held'), InferenceRequest, req('p2'), Admission, { timeoutMs: 10_000 }));
    await cli.nc.flush();
    const t1 = Date.now();
    await cli.close();
    expect(await p).toBeInstanceOf(ConnectionClosedError);
    expect(Date.now() - t1).toBeLessThan(5000);
  });
});
