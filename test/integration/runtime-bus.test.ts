/**
 * The Bus on a real nats-server with the project's nats.conf: typed errors inside deadlines, bad payloads
 * on every subject answered/counted while serving continues, mailbox overflow, role permissions, leases.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startNatsServer, type TestNats, type Role } from '../helpers/nats.ts';
import {
  Bus, silentLogger, TimeoutError, NoRespondersError, RemoteError, ProtocolError, LeaderLease,
} from '../../src/runtime/index.ts';
import { Ack, Admission, InferenceRequest, type InferenceRequest as InferenceRequestMsg, RequestRecord, StatusRequest, ClusterStatus, packRaw, subjects, leaseKeys, type Codec } from '../../protocols/index.ts';
import { SAMPLES, CODECS } from '../fixtures/actors/samples.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';

let nats: TestNats;
const buses: Bus[] = [];
async function bus(role: Role, name: string = role): Promise<Bus> {
  const b = await Bus.connect({ servers: nats.url, name, ...nats.as(role), log: silentLogger(), reconnect: false });
  buses.push(b);
  return b;
}

beforeAll(async () => {
  nats = await startNatsServer();
  // the buckets, as the cluster manager makes them (a pool manager's lease may not create one)
  await setUpBuckets(await bus('admin'));
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

const req = (id: string) => ({ ...(SAMPLES.InferenceRequest as object), id, streamSubject: subjects.stream(id) }) as InferenceRequestMsg;
/** What a promise rejects with; a promise that resolves yields { resolved: value }, which fails the field checks. */
const rejection = (p: Promise<unknown>): Promise<Record<string, unknown>> =>
  p.then((value: unknown) => ({ resolved: value }), (e: unknown) => e as Record<string, unknown>);

describe('request-reply', () => {
  it('fails fast with NoRespondersError when nobody serves the subject', async () => {
    const b = await bus('admin');
    const t0 = Date.now();
    const deadlineMs = 10_000;
    const err = await rejection(b.request(subjects.instanceAdmit('nobody'), InferenceRequest, req('r1'), Admission, { timeoutMs: deadlineMs }));
    // the server's no-responders answer, well before the request's own deadline (a timeout there would be a TimeoutError)
    expect(err).toBeInstanceOf(NoRespondersError);
    expect(err.retryable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(deadlineMs / 2);
  });

  it('fails with TimeoutError inside its deadline when the responder is slow', async () => {
    const srv = await bus('instance');
    const cli = await bus('pool');
    const replyAfterMs = 1500;
    let replied = false;
    srv.serve(subjects.instanceAdmit('slow'), InferenceRequest, Admission, async (r) => {
      await new Promise((res) => setTimeout(res, replyAfterMs));
      replied = true;
      return { v: 1 as const, id: r.id, ok: true };
    });
    await srv.nc.flush();
    const t0 = Date.now();
    const err = await rejection(cli.request(subjects.instanceAdmit('slow'), InferenceRequest, req('r2'), Admission, { timeoutMs: 300 }));
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.code).toBe('timeout');
    // at its deadline, not at the reply: it had not been sent when the request failed
    expect(took).toBeGreaterThanOrEqual(290);
    expect(replied, `failed after ${took} ms, once the reply was sent (${replyAfterMs} ms)`).toBe(false);
  });

  it('turns a handler error into a RemoteError with the remote code, and a non-reply payload into ProtocolError', async () => {
    const srv = await bus('admin', 'srv-err');
    const cli = await bus('admin', 'cli-err');
    const s = srv.serve(subjects.poolControl('boom'), StatusRequest, Ack, async () => {
      throw new TimeoutError('dyn.v1.somewhere', 5);
    });
    // a raw responder answering with garbage
    const raw = srv.nc.subscribe(subjects.poolControl('garbage'), { callback: (_e, m) => void m.respond(new Uint8Array([0xc1, 1, 2])) });
    await srv.nc.flush();
    const e1 = await rejection(cli.request(subjects.poolControl('boom'), StatusRequest, { v: 1 }, Ack, { timeoutMs: 2000 }));
    expect(e1).toBeInstanceOf(RemoteError);
    expect(e1.remoteCode).toBe('timeout');
    expect(e1.retryable).toBe(true);
    const e2 = await rejection(cli.request(subjects.poolControl('garbage'), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 2000 }));
    expect(e2).toBeInstanceOf(ProtocolError);
    s.unsubscribe();
    raw.unsubscribe();
  });

  it('a full mailbox answers mailbox_full; every request gets exactly one answer (nothing lost silently)', async () => {
    const srv = await bus('instance', 'srv-mb');
    const cli = await bus('pool', 'cli-mb');
    let handled = 0;
    srv.serve(
      subjects.instanceAdmit('tight'),
      InferenceRequest,
      Admission,
      async (r) => {
        await new Promise((res) => setTimeout(res, 100));
        handled++;
        return { v: 1 as const, id: r.id, ok: true };
      },
      { capacity: 2, concurrency: 1 },
    );
    await srv.nc.flush();
    const N = 10;
    const results = await Promise.allSettled(
      Array.from({ length: N }, (_, i) => cli.request(subjects.instanceAdmit('tight'), InferenceRequest, req(`m${i}`), Admission, { timeoutMs: 5000 })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const full = results.filter((r) => r.status === 'rejected' && r.reason instanceof RemoteError && r.reason.remoteCode === 'mailbox_full');
    expect(ok.length).toBe(3); // one running + two waiting
    expect(full.length).toBe(N - 3);
    expect(handled).toBe(3);
    expect(srv.counters.mailboxOverflows).toBe(N - 3);
    for (const r of full) expect((r as PromiseRejectedResult).reason.retryable).toBe(true);
  });
});

describe('a handler that releases its place (ServeContext.release)', () => {
  it('lets the next requests run while its own answer is still to come, and that answer still goes out', async () => {
    const srv = await bus('instance', 'srv-rel');
    const cli = await bus('pool', 'cli-rel');
    // concurrency 1: the first request holds its answer until the last one arrives; it frees its place at once
    let lastArrived!: () => void;
    const arrived = new Promise<void>((r) => (lastArrived = r));
    srv.serve(subjects.instanceAdmit('rel'), InferenceRequest, Admission, async (r, ctx) => {
      if (r.id === 'rel-held') {
        ctx.release();
        await arrived;
      }
      if (r.id === 'rel-last') lastArrived();
      return { v: 1 as const, id: r.id, ok: true };
    }, { capacity: 0, concurrency: 1 });
    await srv.nc.flush();
    const held = cli.request(subjects.instanceAdmit('rel'), InferenceRequest, req('rel-held'), Admission, { timeoutMs: 3000 });
    await new Promise((r) => setTimeout(r, 100));
    // one after the other: with its place still taken (capacity 0 waiting, 1 running) each would be refused as mailbox_full
    const others: string[] = [];
    for (const id of ['rel-a', 'rel-b', 'rel-last']) others.push((await cli.request(subjects.instanceAdmit('rel'), InferenceRequest, req(id), Admission, { timeoutMs: 3000 })).id);
    expect(others).toEqual(['rel-a', 'rel-b', 'rel-last']);
    expect((await held).id).toBe('rel-held');
    expect(srv.counters.mailboxOverflows).toBe(0);
  });

  it('encodes no reply to a publication (no reply subject): only a request\'s reply is encoded and checked', async () => {
    const srv = await bus('instance', 'srv-pub');
    const cli = await bus('pool', 'cli-pub');
    const handled: string[] = [];
    // a reply the Admission codec rejects: a request's answer is an error; a publication's is never encoded
    srv.serve(subjects.instanceAdmit('pub'), InferenceRequest, Admission, async (r) => (handled.push(r.id), { v: 1, id: r.id, ok: 'not a boolean' } as unknown as Admission));
    await srv.nc.flush();
    for (const id of ['pub-a', 'pub-b', 'pub-c']) cli.publish(subjects.instanceAdmit('pub'), InferenceRequest, req(id));
    const err = await rejection(cli.request(subjects.instanceAdmit('pub'), InferenceRequest, req('pub-req'), Admission, { timeoutMs: 3000 }));
    expect(handled).toEqual(['pub-a', 'pub-b', 'pub-c', 'pub-req']);
    expect(err).toBeInstanceOf(RemoteError);
    expect(srv.counters.handlerErrors).toBe(1);
  });

  it('a server with a `publication` handler handles a publication in its callback (no mailbox slot), a request through the mailbox, in their order', async () => {
    const srv = await bus('instance', 'srv-inline');
    const cli = await bus('pool', 'cli-inline');
    const seen: string[] = [];
    const h = srv.serve(subjects.instanceAdmit('inline'), InferenceRequest, Admission, async (r) => (seen.push(`req ${r.id}`), { v: 1, id: r.id, ok: true }), {
      publication: (r) => {
        if (r.id === 'in-bad') throw new Error('a failing publication');
        seen.push(`pub ${r.id}`);
      },
    });
    await srv.nc.flush();
    for (const id of ['in-a', 'in-bad', 'in-b']) cli.publish(subjects.instanceAdmit('inline'), InferenceRequest, req(id));
    const a = await cli.request(subjects.instanceAdmit('inline'), InferenceRequest, req('in-req'), Admission, { timeoutMs: 3000 });
    cli.publish(subjects.instanceAdmit('inline'), InferenceRequest, req('in-c'));
    await cli.nc.flush();
    await srv.nc.flush();
    expect(a).toMatchObject({ id: 'in-req', ok: true });
    expect(seen).toEqual(['pub in-a', 'pub in-b', 'req in-req', 'pub in-c']);
    // the mailbox handled the request alone; the failing publication was counted, the next ones still handled
    expect(h.mailbox.handled).toBe(1);
    expect(srv.counters.handlerErrors).toBe(1);
  });
});

describe('bad payloads on every subject', () => {
  // request subjects with the codec their server decodes
  const served: [string, Codec<unknown>, string][] = [
    [subjects.clusterIntake(), InferenceRequest as Codec<unknown>, 'InferenceRequest'],
    [subjects.clusterStatus(), StatusRequest as Codec<unknown>, 'StatusRequest'],
    [subjects.poolDispatch('p1'), InferenceRequest as Codec<unknown>, 'InferenceRequest'],
    [subjects.poolControl('p1'), StatusRequest as Codec<unknown>, 'StatusRequest'],
    [subjects.poolMove('p1'), InferenceRequest as Codec<unknown>, 'InferenceRequest'],
    [subjects.instanceAdmit('i1'), InferenceRequest as Codec<unknown>, 'InferenceRequest'],
    [subjects.instanceControl('i1'), StatusRequest as Codec<unknown>, 'StatusRequest'],
    [subjects.nodeControl('n1'), StatusRequest as Codec<unknown>, 'StatusRequest'],
  ];
  const published: [string, string][] = [
    [subjects.stream('req-1'), 'TokenChunk'],
    [subjects.cancel('req-1'), 'Cancel'],
    [subjects.heartbeat('pool', 'p1'), 'Heartbeat'],
    [subjects.telInstance('i1'), 'InstanceTelemetry'],
    [subjects.telRequest('p1'), 'RequestRecord'],
    [subjects.telPool('p1'), 'InstanceTelemetry'],
    [subjects.telCluster(), 'ClusterStatus'],
    [subjects.event('scale', 'c1'), 'DecisionEvent'],
  ];
  const bad = (name: string): [string, Uint8Array][] => {
    const good = CODECS[name].encode(SAMPLES[name]);
    return [
      ['garbage', new Uint8Array([0xc1, 0xde, 0xad])],
      ['wrong version', packRaw({ ...(SAMPLES[name] as object), v: 99 })],
      ['truncated', good.subarray(0, good.length - 3)],
    ];
  };

  it('requests: each bad payload gets a typed protocol error reply, and the server keeps serving', async () => {
    const srv = await bus('admin', 'srv-bad');
    const cli = await bus('admin', 'cli-bad');
    for (const [subject, codec] of served) {
      srv.serve(subject, codec, Ack, async () => ({ v: 1 as const, ok: true }));
    }
    await srv.nc.flush();
    let n = 0;
    for (const [subject, codec, name] of served) {
      for (const [what, bytes] of bad(name)) {
        const m = await cli.nc.request(subject, bytes, { timeout: 2000 });
        const ack = Ack.decode(m.data);
        expect(ack.ok, `${subject} ${what}`).toBe(false);
        expect(ack.error?.code, `${subject} ${what}`).toBe('protocol');
        expect(ack.error?.retryable).toBe(false);
        n++;
      }
      // still serving
      const good = await cli.request(subject, codec, SAMPLES[name], Ack, { timeoutMs: 2000 });
      expect(good.ok).toBe(true);
    }
    expect(srv.counters.protocolErrors).toBe(n);
  });

  it('publications: bad payloads are counted and dropped, good ones still delivered', async () => {
    const sub = await bus('admin', 'sub-bad');
    const pub = await bus('admin', 'pub-bad');
    const got: string[] = [];
    for (const [subject, name] of published) sub.subscribe(subject, CODECS[name], (_m, s) => void got.push(s));
    await sub.nc.flush();
    for (const [subject, name] of published) {
      for (const [, bytes] of bad(name)) pub.nc.publish(subject, bytes);
      pub.publish(subject, CODECS[name], SAMPLES[name]);
    }
    await pub.nc.flush();
    const deadline = Date.now() + 3000;
    while (got.length < published.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(published.map(([s]) => s));
    expect(sub.counters.protocolErrors).toBe(published.length * 3);
  });

  it('a subscription that says it wants none drops publications before decoding them, and takes them again once it does', async () => {
    const sub = await bus('admin', 'sub-unwanted');
    const pub = await bus('admin', 'pub-unwanted');
    const subject = subjects.telRequest('pool-unwanted');
    const got: string[] = [];
    let want = false;
    sub.subscribe(subject, RequestRecord, (m) => void got.push(m.id), { unwanted: () => !want });
    await sub.nc.flush();
    const send = (id: string) => pub.publish(subject, RequestRecord, { ...(SAMPLES.RequestRecord as RequestRecord), id });
    send('dropped-1');
    pub.nc.publish(subject, packRaw({ v: 1, garbage: true })); // not decoded: not counted as a protocol error
    send('dropped-2');
    await pub.nc.flush();
    await sub.nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    want = true;
    send('taken');
    await pub.nc.flush();
    const deadline = Date.now() + 3000;
    while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['taken']);
    expect(sub.counters.protocolErrors).toBe(0);
  });

  it('unwanted is asked with the subject a publication came on: a wildcard subscriber drops one subject undecoded (an instance its own status)', async () => {
    const sub = await bus('admin', 'sub-unwanted-subject');
    const pub = await bus('admin', 'pub-unwanted-subject');
    const own = subjects.telRequest('pool-own'), other = subjects.telRequest('pool-other');
    const got: string[] = [];
    const asked: string[] = [];
    sub.subscribe(subjects.telRequestAll(), RequestRecord, (m) => void got.push(m.id), { unwanted: (s) => (asked.push(s), s === own) });
    await sub.nc.flush();
    pub.nc.publish(own, packRaw({ v: 1, garbage: true })); // not decoded: not counted as a protocol error
    pub.publish(own, RequestRecord, { ...(SAMPLES.RequestRecord as RequestRecord), id: 'own' });
    pub.publish(other, RequestRecord, { ...(SAMPLES.RequestRecord as RequestRecord), id: 'other' });
    await pub.nc.flush();
    const deadline = Date.now() + 3000;
    while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['other']);
    expect(asked).toEqual([own, own, other]);
    expect(sub.counters.protocolErrors).toBe(0);
  });
});

describe('role permissions from nats.conf', () => {
  async function refused(role: Role, subject: string): Promise<boolean> {
    const watcher = await bus('admin', `watch-${role}`);
    let delivered = false;
    const s = watcher.nc.subscribe(subject, { callback: () => void (delivered = true) });
    await watcher.nc.flush();
    const b = await bus(role, `perm-${role}-${subject}`);
    const violation = new Promise<{ subject: string }>((r) => b.once('permission_error', r));
    b.nc.publish(subject, Ack.encode({ v: 1, ok: true }));
    await b.nc.flush().catch(() => {});
    const v = await Promise.race([violation, new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
    await watcher.nc.flush();
    s.unsubscribe();
    if (v) expect(v.subject).toBe(subject);
    expect(delivered).toBe(!v);
    return v !== null;
  }

  it('observer cannot publish to an instance control subject', async () => {
    expect(await refused('observer', subjects.instanceControl('x'))).toBe(true);
  });
  it('gateway cannot publish to a pool control subject', async () => {
    expect(await refused('gateway', subjects.poolControl('x'))).toBe(true);
  });
  it('instance cannot command another instance; pool can (positive control)', async () => {
    expect(await refused('instance', subjects.instanceControl('y'))).toBe(true);
    expect(await refused('pool', subjects.instanceControl('y'))).toBe(false);
  });
  it('gateway may send intake; observer may not subscribe to control subjects', async () => {
    expect(await refused('gateway', subjects.clusterIntake())).toBe(false);
    const b = await bus('observer', 'obs-sub');
    const violation = new Promise<{ operation: string }>((r) => b.once('permission_error', r));
    b.nc.subscribe(subjects.poolControl('p1'), { callback: () => {} });
    await b.nc.flush();
    const v = await Promise.race([violation, new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
    expect(v?.operation).toBe('subscription');
  });
});

describe('leader lease (in-process contenders on real JetStream KV)', () => {
  it('exactly one leader; a released lease passes to the standby; a stopped-renewing leader steps down before the standby takes over', async () => {
    const a = await bus('pool', 'lease-a');
    const b = await bus('pool', 'lease-b');
    const key = leaseKeys.poolLeader('lt');
    const la = new LeaderLease({ bus: a, key, holder: 'A', ttlMs: 1000, renewMs: 200 });
    const lb = new LeaderLease({ bus: b, key, holder: 'B', ttlMs: 1000, renewMs: 200 });
    await Promise.all([la.start(), lb.start()]);
    let both = 0;
    const sampler = setInterval(() => {
      if (la.isLeader() && lb.isLeader()) both++;
    }, 5);
    try {
      expect(Number(la.isLeader()) + Number(lb.isLeader())).toBe(1);
      const [leader, standby] = la.isLeader() ? [la, lb] : [lb, la];
      expect((await standby.leader())?.holder).toBe(leader.holder);
      const firstTerm = leader.term()!;
      // orderly stop releases (holder ''), so the standby may take over before the old lease would have expired
      const elected = new Promise((r) => standby.once('elected', r));
      const lost = new Promise<{ reason: string }>((r) => leader.once('lost', r));
      await leader.stop();
      expect((await lost).reason).toBe('released');
      await elected;
      expect(standby.term()).toBeGreaterThan(firstTerm);
      // a leader cut off from the server (its connection closed) steps down by itself at expiry
      // (not for another reason: reason 'expired'). isLeader() answers from the clock against the expiry it wrote,
      // so it is false from the expiry on whenever the step-down timer fires; that timer's lateness is the
      // machine's load, not the lease's behaviour, so it is not asserted here.
      const cut = standby === la ? a : b;
      const stepDown = new Promise<{ reason: string }>((r) => standby.once('lost', r));
      await cut.close();
      expect((await stepDown).reason).toBe('expired');
      expect(standby.isLeader()).toBe(false);
    } finally {
      clearInterval(sampler);
      await la.stop();
      await lb.stop();
    }
    expect(both).toBe(0);
  });
});

describe('drain while NATS is unreachable', () => {
  it('a bus with subscriptions and a reconnecting connection drains within its deadline, then is closed', async () => {
    const own = await startNatsServer();
    const b = await Bus.connect({ servers: own.url, name: 'drain-orphan', ...own.as('instance'), log: silentLogger(), reconnect: true });
    b.subscribe(subjects.stream('drain-1'), CODECS.StreamChunk as Codec<unknown>, () => {});
    await b.nc.flush();
    await own.stop(); // the server is gone for good; the connection keeps reconnecting
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await b.drain(1500);
    const took = Date.now() - t0;
    // its 1.5 s deadline ends the drain (without it the drain waits on the reconnecting connection for good)
    console.log(`a drain with NATS unreachable: closed after ${took} ms (deadline 1500 ms)`);
    expect(took).toBeLessThan(5 * 1500);
    expect(b.nc.isClosed()).toBe(true);
  });
});
