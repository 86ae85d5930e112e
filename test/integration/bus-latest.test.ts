/**
 * Bus.subscribeLatest (src/runtime/bus-latest.ts) on a real nats-server: the latest payload of each subject, kept
 * undecoded with its arrival time, decoded and checked at take() as subscribe checks at arrival: a payload that does
 * not decode counts in protocolErrors, one claiming another identity than its subject in identityRejections; past
 * maxSubjects a new subject is refused (mailboxOverflows).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { InstanceStatus, controlSubjects, type InstanceStatus as Status } from '../../protocols/index.ts';

let nats: TestNats;
let pub: Bus;
let sub: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  pub = await Bus.connect({ servers: nats.url, name: 'pub', ...nats.creds('admin'), log: silentLogger() });
  sub = await Bus.connect({ servers: nats.url, name: 'sub', ...nats.creds('admin'), log: silentLogger() });
}, 30_000);

afterAll(async () => {
  await pub?.close();
  await sub?.close();
  await nats?.stop();
});

const status = (id: string, seq: number): Status => ({
  v: 1, id, pool: 'p', node: 'n0', tp: 1, gpuIds: [0], state: 'ready', startedMs: 1, seq, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
  queued: seq, running: 0, queuedIds: [], runningIds: [], loadByType: {},
});

describe('Bus.subscribeLatest', () => {
  it('keeps the latest payload of each subject undecoded, in arrival order, and checks each at take()', async () => {
    let now = 1000;
    const h = sub.subscribeLatest(controlSubjects.instanceStatusPool('p'), InstanceStatus, { now: () => now++, maxSubjects: 3, expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id) });
    await sub.nc.flush();
    const decode = vi.spyOn(InstanceStatus, 'decode');
    for (let seq = 1; seq <= 5; seq++) pub.publish(controlSubjects.instanceStatus('p', 'a'), InstanceStatus, status('a', seq));
    pub.publish(controlSubjects.instanceStatus('p', 'b'), InstanceStatus, status('b', 1));
    pub.publish(controlSubjects.instanceStatus('p', 'a'), InstanceStatus, status('a', 6)); // a's latest now arrives after b's
    pub.publish(controlSubjects.instanceStatus('p', 'c'), InstanceStatus, status('x', 1)); // claims another instance
    pub.publish(controlSubjects.instanceStatus('p', 'd'), InstanceStatus, status('d', 1)); // a fourth subject: refused
    await pub.nc.flush();
    await sub.nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(decode).not.toHaveBeenCalled();
    expect(h.pending).toBe(3);
    const before = { ...sub.counters };
    const got = h.take();
    expect(decode).toHaveBeenCalledTimes(3);
    decode.mockRestore();
    expect(got.map((g) => [g.msg.id, g.msg.seq, g.subject])).toEqual([['b', 1, controlSubjects.instanceStatus('p', 'b')], ['a', 6, controlSubjects.instanceStatus('p', 'a')]]);
    expect(got[0]!.atMs).toBeLessThan(got[1]!.atMs);
    expect(sub.counters.identityRejections - before.identityRejections).toBe(1);
    expect(sub.counters.mailboxOverflows).toBeGreaterThanOrEqual(1);
    expect(h.pending).toBe(0);
    expect(h.take()).toEqual([]);
    // a payload that does not decode is counted at take()
    pub.nc.publish(controlSubjects.instanceStatus('p', 'a'), new Uint8Array([0xc1, 0x00]));
    await pub.nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    const errs = sub.counters.protocolErrors;
    expect(h.take()).toEqual([]);
    expect(sub.counters.protocolErrors).toBe(errs + 1);
    h.unsubscribe();
  });
});
