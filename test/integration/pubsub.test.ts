/**
 * Issue 20 against a real cluster (real nats-server with the project's nats.conf, cluster/pool managers, a
 * node agent, an instance manager, an emulated engine; actors on their own NATS roles):
 * - every actor answers the NATS Service API, read with the official client (@nats-io/services) connected
 *   as the read-only observer; endpoint stats count requests, errors and processing time;
 * - the observer may send $SRV requests and read, and nothing that changes state;
 * - the consumer SDK (imported as the package export dynamollm/client) reads telemetry, request records and
 *   events, live and replayed, with the observer's credentials;
 * - every live message decodes with an independent msgpack implementation and validates against the committed
 *   JSON Schema files.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream as jsClient, jetstreamManager } from '@nats-io/jetstream';
import { decode } from '@msgpack/msgpack';
import { Svcm, type ServiceClient, type ServiceIdentity, type ServiceInfo, type ServiceStats } from '@nats-io/services';
import pg from 'pg';
import { DynamoClient, type RequestRecord } from 'dynamollm/client';
import { ensureTable, spentByKeyAndModel, startLedger, storeRecord } from '../../examples/energy-ledger/ledger.ts';
import { oneTp2InstanceConfig, startControlPlane, type Harness } from './control-harness.ts';
import {
  DecisionEvent, InstanceCommand, jetstream, type EventKind, packRaw, serviceInfoResponse, servicePingResponse, serviceStatsResponse, subjects, Ack,
} from '../../protocols/index.ts';
import { CATALOG } from '../../protocols/catalog.ts';
import { committedValidators } from '../helpers/json-schema.ts';

let h: Harness;
let observer: NatsConnection;
let svc: ServiceClient;

async function all<T>(it: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await it) out.push(x);
  return out;
}

beforeAll(async () => {
  h = await startControlPlane(oneTp2InstanceConfig(600));
  observer = await connect({ servers: h.nats.url, ...h.nats.as('observer') });
  // the official client's nats-core is a different build than ours: the connection API it uses is the same
  svc = new Svcm(observer as unknown as ConstructorParameters<typeof Svcm>[0]).client({ strategy: 'stall', maxWait: 1500 });
}, 90_000);

afterAll(async () => {
  await observer?.close();
  await h?.stop();
}, 30_000);

describe('NATS Service API (official @nats-io/services client, observer credentials)', () => {
  it('PING lists every actor of the cluster as a dynamollm-<kind> service', async () => {
    const pings = await all<ServiceIdentity>(svc.ping());
    for (const p of pings) servicePingResponse.parse(p);
    const names = pings.map((p) => `${p.name}/${p.id}`).sort();
    expect(names).toEqual(expect.arrayContaining(['dynamollm-cluster/cm-0', 'dynamollm-pool/pm-0', 'dynamollm-node/n0']));
    expect(pings.filter((p) => p.name === 'dynamollm-instance')).toHaveLength(1);
    for (const p of pings) expect(p.version).toBe('0.1.0');
  });

  it('INFO names each endpoint with its subject and queue group', async () => {
    const infos = await all<ServiceInfo>(svc.info());
    for (const i of infos) serviceInfoResponse.parse(i);
    const cluster = infos.find((i) => i.name === 'dynamollm-cluster')!;
    expect(cluster.endpoints).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: 'cluster-intake', subject: subjects.clusterIntake(), queue_group: 'cluster-intake' }),
    ]));
    const inst = infos.find((i) => i.name === 'dynamollm-instance')!;
    expect(inst.endpoints.map((e) => e.subject).sort()).toEqual([subjects.instanceAdmit(inst.id), subjects.instanceControl(inst.id), subjects.instanceLeg(inst.id), subjects.tokenize(), subjects.detokenize()].sort());
    const pool = infos.find((i) => i.name === 'dynamollm-pool')!;
    expect(pool.endpoints.map((e) => e.subject)).toEqual(expect.arrayContaining([subjects.poolDispatch('pool-all'), subjects.poolControl('pool-all')]));
    // by name and by name + id
    const one = await all<ServiceInfo>(svc.info('dynamollm-node', 'n0'));
    expect(one.map((i) => i.id)).toEqual(['n0']);
  });

  it('STATS count requests, errors and processing time per endpoint', async () => {
    const [inst] = await all<ServiceIdentity>(svc.ping('dynamollm-instance'));
    const before = (await all<ServiceStats>(svc.stats('dynamollm-instance', inst!.id)))[0]!;
    serviceStatsResponse.parse(before);
    const o = await h.send(1, { maxTokens: 4 });
    expect(o.ok, o.error).toBe(true);
    // a payload that fails validation counts as an error of the ctl endpoint
    const bad = await h.bus.nc.request(subjects.instanceControl(inst!.id), packRaw({ v: 1, op: 'explode' }), { timeout: 5000 });
    expect(Ack.decode(bad.data).ok).toBe(false);
    const good = await h.bus.request(subjects.instanceControl(inst!.id), InstanceCommand, { v: 1, op: 'resume', reason: 'test' }, Ack, { timeoutMs: 5000 });
    expect(good.ok).toBe(true);
    const after = (await all<ServiceStats>(svc.stats('dynamollm-instance', inst!.id)))[0]!;
    serviceStatsResponse.parse(after);
    const ep = (s: ServiceStats, name: string) => s.endpoints!.find((e) => e.subject === name)!;
    const admitB = ep(before, subjects.instanceAdmit(inst!.id));
    const admitA = ep(after, subjects.instanceAdmit(inst!.id));
    expect(admitA.num_requests).toBe(admitB.num_requests + 1);
    expect(admitA.processing_time).toBeGreaterThan(admitB.processing_time);
    expect(admitA.average_processing_time).toBeGreaterThan(0);
    const ctlB = ep(before, subjects.instanceControl(inst!.id));
    const ctlA = ep(after, subjects.instanceControl(inst!.id));
    expect(ctlA.num_requests).toBe(ctlB.num_requests + 2);
    expect(ctlA.num_errors).toBe(ctlB.num_errors + 1);
    expect(ctlA.last_error).toMatch(/InstanceCommand/);
    expect(Date.parse(after.started)).toBeLessThanOrEqual(Date.now());
  });
});

describe('the observer role is read-only', () => {
  async function denied(subject: string, data: Uint8Array = new Uint8Array()): Promise<boolean> {
    const nc = await connect({ servers: h.nats.url, ...h.nats.as('observer') });
    let violation = false;
    const watch = (async () => {
      for await (const s of nc.status()) if (s.type === 'error' && /permission/i.test(String((s as { error?: Error }).error?.message))) violation = true;
    })();
    nc.publish(subject, data);
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    await nc.close();
    await watch.catch(() => {});
    return violation;
  }

  it('may not publish on any subject that changes state', async () => {
    const [inst] = await all<ServiceIdentity>(svc.ping('dynamollm-instance'));
    const command = InstanceCommand.encode({ v: 1, op: 'drain', reason: 'observer must not' });
    for (const s of [
      subjects.clusterIntake(), subjects.instanceControl(inst!.id), subjects.instanceAdmit(inst!.id), subjects.poolControl('pool-all'),
      subjects.poolDispatch('pool-all'), subjects.nodeControl('n0'), subjects.cancel('r1'), subjects.event('scale', 'x'), subjects.telCluster(),
      `$JS.API.STREAM.PURGE.${jetstream.eventsStream}`, `$JS.API.STREAM.DELETE.${jetstream.eventsStream}`, `$JS.API.STREAM.CREATE.X`,
      '$KV.dyn_v1_leases.cluster.planner', '$SRV.PING.dynamollm-instance.x.extra.endpoint',
    ]) {
      expect(await denied(s, command), s).toBe(true);
    }
    // the instance still serves (it did not drain)
    const o = await h.send(2, { maxTokens: 2 });
    expect(o.ok, o.error).toBe(true);
  });

  it('may send $SRV requests and read the stream, not purge it', async () => {
    expect(await denied('$SRV.STATS')).toBe(false);
    expect(await denied('$SRV.INFO.dynamollm-pool')).toBe(false);
    const jsm = await jetstreamManager(observer);
    await expect(jsm.streams.purge(jetstream.eventsStream)).rejects.toThrow();
    const info = await jsm.streams.info(jetstream.eventsStream);
    expect(info.config.name).toBe(jetstream.eventsStream);
  });
});

describe('dynamollm/client (consumer SDK, observer credentials)', () => {
  let client: DynamoClient;
  beforeAll(async () => {
    client = await DynamoClient.connect({ servers: h.nats.url, ...h.nats.creds('observer') });
  });
  afterAll(async () => {
    await client?.close();
  });

  async function first<T>(it: AsyncIterable<T>, ms = 5000): Promise<T> {
    const timer = new Promise<never>((_, rej) => setTimeout(() => rej(new Error('nothing received')), ms));
    const next = (async () => {
      for await (const x of it) return x;
      throw new Error('ended');
    })();
    return Promise.race([next, timer]);
  }

  it('telemetry per instance, pool and cluster, validated', async () => {
    const si = client.instanceTelemetry();
    const sp = client.poolTelemetry({ pool: 'pool-all' });
    const sc = client.clusterTelemetry();
    const [i, p, c] = await Promise.all([first(si), first(sp), first(sc)]);
    si.stop(); sp.stop(); sc.stop();
    expect(i.value.pool).toBe('pool-all');
    expect(i.value.powerW).toBeGreaterThan(0);
    expect(p.value).toMatchObject({ pool: 'pool-all', instances: 1, readyInstances: 1, gpus: 2 });
    expect(p.value.powerW).toBeGreaterThan(0);
    expect(c.value).toMatchObject({ leader: 'cm-0', pools: 1, instances: 1 });
    expect(c.value.powerW).toBeCloseTo(p.value.powerW, -2);
  });

  it('per-request records with energy, live and from the stream (durable, acked)', async () => {
    const live = client.requests();
    const got = first(live, 20_000);
    const o = await h.send(10, { maxTokens: 6 });
    expect(o.ok, o.error).toBe(true);
    const r = await got;
    live.stop();
    expect(r.value).toMatchObject({ id: o.id, outcome: 'ok', model: 'llama3.1-8b', energySource: 'modelled', completionTokens: 6 });
    expect(r.value.energyJ).toBeGreaterThan(0);
    const durable = await client.requestRecords({ durable: 'test-billing', ackWaitMs: 1000 });
    const seen: string[] = [];
    for await (const m of durable) {
      seen.push(m.value.id);
      m.ack();
      if (m.value.id === o.id) break;
    }
    await durable.stop();
    expect(seen).toContain(o.id);
  });

  it('decision events replayed from a sequence and a time, filtered by kind; unacked ones come back to a durable', async () => {
    const { lastSeq } = await client.streamState();
    expect(lastSeq).toBeGreaterThan(1);
    const all: { seq: number; time: Date; kind: string }[] = [];
    const h1 = await client.eventHistory({});
    for await (const m of h1) {
      all.push({ seq: m.seq, time: m.time, kind: m.value.kind });
      m.ack();
      if (m.seq >= lastSeq) break;
    }
    await h1.stop();
    expect(all[0]!.seq).toBe(1);
    const kind = all[0]!.kind as EventKind;

    const fromSeq = await client.eventHistory({ fromSeq: 2 });
    expect((await first(fromSeq)).seq).toBe(2);
    await fromSeq.stop();

    const since = all[all.length - 1]!.time;
    const bySince = await client.eventHistory({ since });
    const s = await first(bySince);
    await bySince.stop();
    expect(s.time.getTime()).toBeGreaterThanOrEqual(since.getTime());
    expect(s.seq).toBeGreaterThan(1);

    const ofKind = await client.eventHistory({ kinds: [kind] });
    const k1 = await first(ofKind);
    await ofKind.stop();
    expect(k1.value.kind).toBe(kind);
    expect(k1.seq).toBe(1);

    // durable: ack the first, leave the second unacked, stop; a restarted reader gets the second again
    const d1 = await client.eventHistory({ durable: 'test-audit', ackWaitMs: 1000 });
    const seqs: number[] = [];
    for await (const m of d1) {
      seqs.push(m.seq);
      if (seqs.length === 1) m.ack();
      else break;
    }
    await d1.stop();
    const d2 = await client.eventHistory({ durable: 'test-audit', ackWaitMs: 1000 });
    const again = await first(d2, 10_000);
    again.ack();
    await d2.stop();
    expect(again.seq).toBe(seqs[1]);
    expect(again.redelivered).toBe(true);
  });
});

describe('live messages read by a non-TypeScript stack: @msgpack/msgpack + the committed JSON Schemas (ajv)', () => {
  const wildcardRe = (w: string) => new RegExp('^' + w.replace(/[.$]/g, (c) => `\\${c}`).replace(/\*/g, '[^.]+').replace(/>$/, '.+') + '$');
  const table = CATALOG.filter((e) => e.pattern !== 'kv' && !e.subject.startsWith('$SRV')).map((e) => ({ re: wildcardRe(e.wildcard), message: e.message }));

  it('every message on dyn.v1.> while a request runs, and the stored events, validate', async () => {
    const validators = committedValidators();
    const admin = await connect({ servers: h.nats.url, ...h.nats.creds('admin') });
    const seen = new Map<string, number>();
    const failures: string[] = [];
    const check = (subject: string, data: Uint8Array) => {
      const entry = table.find((t) => t.re.test(subject));
      if (!entry) {
        failures.push(`${subject}: not in the catalog`);
        return;
      }
      // a subject that carries one of several messages ("LegReport | LegReportBatch"): the one whose schema it meets
      const value = decode(data);
      const names = entry.message.split(' | ');
      const errs = names.map((n) => (validators[n] ? validators[n](value) : `no committed schema ${n}`));
      const met = errs.findIndex((e) => !e);
      if (met < 0) failures.push(`${subject} ${entry.message}: ${errs.join('; ')}`);
      else seen.set(names[met]!, (seen.get(names[met]!) ?? 0) + 1);
    };
    const sub = admin.subscribe('dyn.v1.>', { callback: (_e, m) => check(m.subject, m.data) });
    const o = await h.send(20, { maxTokens: 8 });
    expect(o.ok, o.error).toBe(true);
    await new Promise((r) => setTimeout(r, 2500));
    sub.unsubscribe();
    // decision events as stored in the stream
    const c = await jsClient(admin).consumers.get(jetstream.eventsStream);
    const batch = await c.fetch({ max_messages: 50, expires: 2000 });
    for await (const m of batch) check(m.subject, m.data);
    // the Service API's JSON answers
    for (const s of await all<ServiceStats>(svc.stats())) {
      const err = validators.ServiceStatsResponse!(s);
      if (err) failures.push(`$SRV.STATS ${s.name}: ${err}`);
    }
    await admin.close();
    expect(failures).toEqual([]);
    for (const m of ['InstanceTelemetry', 'NodeTelemetry', 'PoolTelemetry', 'ClusterTelemetry', 'RequestRecord', 'Heartbeat', 'InstanceStatus', 'NodeStatus', 'PoolStatus', 'TokenChunk', 'InferenceRequest', 'DecisionEvent']) {
      expect(seen.get(m) ?? 0, m).toBeGreaterThan(0);
    }
  });
});

describe('dynamollm events / telemetry (observer credentials, JSON lines when not on a terminal)', () => {
  const cli = (args: string[], timeoutMs = 20_000) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args, '--nats', h.nats.url, '--user', 'observer', '--password', h.nats.creds('observer').pass], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('exit', (code) => {
        clearTimeout(t);
        resolve({ code, out, err });
      });
    });
  const lines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

  it('events --since SEQ --kind prints the stored events of those kinds and exits', async () => {
    const r = await cli(['events', '--since', '1', '--kind', 'lease,instance']);
    expect(r.code, r.err).toBe(0);
    const evs = lines(r.out);
    expect(evs.length).toBeGreaterThan(0);
    for (const e of evs) expect(['lease', 'instance']).toContain(e.kind);
    expect(evs.map((e) => e.seq)).toEqual([...evs.map((e) => e.seq as number)].sort((a, b) => a - b));
  });

  it('events --follow prints a new event as it is stored', async () => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'events', '--follow', '--kind', 'plan', '--nats', h.nats.url, '--user', 'observer', '--password', h.nats.creds('observer').pass], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // publish once the command's consumer exists (it reads only events stored from then on)
    const jsm = await jetstreamManager(h.bus.nc);
    const consumers = async () => (await jsm.consumers.list(jetstream.eventsStream).next()).map((c) => c.name);
    const before = new Set(await consumers());
    const t0 = Date.now();
    while (!(await consumers()).some((n) => !before.has(n)) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 200));
    h.bus.publish(subjects.event('plan', 'cli-test'), DecisionEvent, { v: 1, kind: 'plan', actor: 'cli-test', atMs: Date.now(), summary: 'a followed event', decision: {}, inputs: {} });
    const until = Date.now() + 10_000;
    while (!out.includes('a followed event') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    await exited;
    expect(lines(out).map((e) => e.summary)).toEqual(['a followed event']);
  });

  it('telemetry prints cluster, pool, instance and node telemetry', async () => {
    const r = await cli(['telemetry']);
    expect(r.code, r.err).toBe(0);
    const subs = new Set(lines(r.out).map((l) => String(l.subject).split('.').slice(0, 4).join('.')));
    expect([...subs].sort()).toEqual(['dyn.v1.tel.cluster', 'dyn.v1.tel.inst', 'dyn.v1.tel.node', 'dyn.v1.tel.pool']);
  });
});

describe('examples/energy-ledger: PostgreSQL, keyed by request id, no double counting', () => {
  const table = `energy_ledger_test_${process.pid}_${Date.now() % 100000}`;
  let db: pg.Pool;
  beforeAll(async () => {
    db = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', max: 2 });
    await db.query('SELECT 1');
  });
  afterAll(async () => {
    await db?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await db?.end();
  });

  it('counts every request once across a crash before the ack (redelivery) and a restart (resume)', async () => {
    const opts = { servers: h.nats.url, ...h.nats.creds('observer'), db, table, durable: 'ledger-test', ackWaitMs: 1000 };
    await ensureTable(db, table);
    // the truth to compare with: every record as published (live, independent of the stream)
    const client = await DynamoClient.connect({ servers: h.nats.url, ...h.nats.creds('observer') });
    const live = client.requests();
    const truth = new Map<string, RequestRecord>();
    const collecting = (async () => {
      for await (const r of live) truth.set(r.value.id, r.value);
    })();
    const send = async (i: number, key: string) => {
      const o = await h.send(i, { maxTokens: 4 + (i % 5), apiKeyId: key });
      expect(o.ok, o.error).toBe(true);
      return o.id;
    };
    const ids = [await send(100, 'key-aaaaaaaaaaaaaaaa'), await send(101, 'key-aaaaaaaaaaaaaaaa'), await send(102, 'key-bbbbbbbbbbbbbbbb')];

    // a ledger that crashes between its commit and its ack: it stores what it reads and never acks
    const crashing = await client.requestRecords({ durable: 'ledger-test', ackWaitMs: 1000 });
    const stored = new Set<string>();
    for await (const m of crashing) {
      await storeRecord(db, m.value, m.seq, table);
      stored.add(m.value.id);
      if (ids.every((id) => stored.has(id))) break;
    }
    await crashing.stop();

    // the real ledger on the same durable gets those records again and must not count them twice
    let ledger = await startLedger(opts);
    const until = async (pred: () => boolean | Promise<boolean>, what: string) => {
      const t = Date.now() + 20_000;
      while (!(await pred())) {
        if (Date.now() > t) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await until(() => ledger.stats.duplicates >= stored.size, 'the redelivered records');
    await ledger.stop();

    // requests served while the ledger is down are read after its restart
    ids.push(await send(103, 'key-bbbbbbbbbbbbbbbb'), await send(104, 'key-aaaaaaaaaaaaaaaa'));
    ledger = await startLedger(opts);
    const count = async () => Number((await db.query(`SELECT count(*) AS n FROM ${table} WHERE request_id = ANY($1)`, [ids])).rows[0].n);
    await until(async () => (await count()) === ids.length, 'the records sent while the ledger was down');
    await until(() => ids.every((id) => truth.has(id)), 'the live records');
    await ledger.stop();
    live.stop();
    await collecting;
    await client.close();

    const rows = await spentByKeyAndModel(db, table);
    const expected = new Map<string, { n: number; j: number }>();
    for (const id of ids) {
      const r = truth.get(id)!;
      const k = `${r.apiKeyId}/${r.model}`;
      const e = expected.get(k) ?? { n: 0, j: 0 };
      expected.set(k, { n: e.n + 1, j: e.j + r.energyJ });
    }
    const got = new Map(rows.filter((r) => r.apiKey.startsWith('key-aaaa') || r.apiKey.startsWith('key-bbbb')).map((r) => [`${r.apiKey}/${r.model}`, r]));
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, e] of expected) {
      expect(got.get(k)!.requests, k).toBe(e.n);
      expect(got.get(k)!.energyJoules, k).toBeCloseTo(e.j, 9);
      expect(e.j).toBeGreaterThan(0);
    }
  });
});
