/**
 * JetStream rights against a real nats-server running the per-actor config `dynamollm up` generates
 * (protocols/permissions.ts -> src/runtime/nats-server-config.ts): who may create a stream (the first creator defines
 * the subjects it captures), who may create a consumer (nats-server checks no push consumer's deliver subject against
 * its creator's rights), who may delete one, and what an actor does with a message JetStream delivered onto its
 * subject (nats-server checks no reply subject of a JetStream API request either: a direct get's answer, a pull).
 * Account alpha has its buckets and streams made by an admin (actors/common/jetstream-setup.ts); beta has none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { localClusterAuth, renderServerConfig, type LocalAuth } from '../../src/runtime/nats-server-config.ts';
import { connectionOptions } from '../../src/runtime/nats-settings.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { KvBucketMissing } from '../../src/runtime/kv-open.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { setUpBuckets, setUpJetStream } from '../../actors/common/jetstream-setup.ts';
import { DynamoClient } from '../../src/client/index.ts';
import {
  Ack, InstanceCommand, dispatchedKeys, inboxPrefix, inventoryKeys, jetstream, kvKeySubject, subjects, type Role,
} from '../../protocols/index.ts';

let nats: TestNats;
let a: LocalAuth;
let b: LocalAuth;
const open: NatsConnection[] = [];
const buses: Bus[] = [];
const actors = (clusterId: string) => ({
  clusterId, clusterManagers: ['cm-0'], poolManagers: ['pm-0'], gateways: ['gw-0'], nodes: [{ id: 'n0', gpus: 2 }, { id: 'n1', gpus: 1 }], pools: ['pool-a'],
});
const VICTIM = 'pool-a-n1-g0x1';
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
const settle = (ms = 500) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-secjs-'));
  a = localClusterAuth(actors('alpha'), join(dir, 'alpha'));
  b = localClusterAuth(actors('beta'), join(dir, 'beta'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, renderServerConfig({ header: ['test'], listen: '127.0.0.1:4222', serverName: 'secjs-test', storeDir: join(dir, 'js'), accounts: [a.account, b.account] }));
  nats = await startNatsServer({ conf });
  await setUpJetStream(await bus(a, 'admin/'));
}, 60_000);
afterAll(async () => {
  for (const x of buses) await x.close();
  for (const nc of open) await nc.close().catch(() => {});
  await nats?.stop();
});

const roleOf = (key: string) => key.split('/') as [Role, string];

/** A raw connection with an actor's key (`role/id`). */
async function as(auth: LocalAuth, key: string): Promise<NatsConnection> {
  const [role, id] = roleOf(key);
  const nc = await connect({ ...connectionOptions({ servers: [nats.url], nkey: auth.creds.get(key)!.nkeyFile }), inboxPrefix: role === 'admin' ? '_INBOX' : inboxPrefix(role as 'pool', id || 'test') });
  open.push(nc);
  return nc;
}

/** A Bus with an actor's key; it creates missing buckets only as the cluster manager or admin (as Actor sets it). */
async function bus(auth: LocalAuth, key: string): Promise<Bus> {
  const [role, id] = roleOf(key);
  const x = await Bus.connect({ settings: { servers: [nats.url], nkey: auth.creds.get(key)!.nkeyFile }, name: key, inboxPrefix: role === 'admin' ? '_INBOX' : inboxPrefix(role as 'pool', id || 'test'), log: silentLogger() });
  x.createsJetStream = role === 'cluster' || role === 'admin';
  buses.push(x);
  return x;
}

/** A JetStream API call's answer, or 'refused' (the server's permission violation: nats.js rejects, or nothing answers). */
async function api(nc: NatsConnection, subject: string, body: unknown): Promise<string> {
  return nc.request(subject, enc(body), { timeout: 2000 }).then((m) => m.string(), () => 'refused');
}

/** The victim instance: its real command endpoint, counting the commands it handled. */
async function victim(): Promise<{ handled: InstanceCommand[]; bus: Bus }> {
  const x = await bus(a, `instance/${VICTIM}`);
  const handled: InstanceCommand[] = [];
  x.serve(subjects.instanceControl(VICTIM), InstanceCommand, Ack, async (c) => {
    handled.push(c);
    return { v: 1, ok: true };
  }, { requestsOnly: true });
  await x.nc.flush();
  return { handled, bus: x };
}
const DRAIN = InstanceCommand.encode({ v: 1, op: 'drain', reason: 'forged' });

describe('streams: only their owner creates them', () => {
  it('a node agent and a pool manager cannot create a bucket whose stream captures the prompts', async () => {
    for (const [key, bucket] of [['node/n0', jetstream.inventoryBucket], ['pool/pm-0', jetstream.dispatchedBucket], ['pool/pm-0', jetstream.leasesBucket]] as const) {
      const nc = await as(b, key);
      const st = `KV_${bucket}`;
      const r = await api(nc, `$JS.API.STREAM.CREATE.${st}`, { name: st, subjects: [`$KV.${bucket}.>`, subjects.clusterIntake(), 'dyn.v1.stream.*', 'dyn.v1.inst.*.admit'], allow_direct: true, storage: 'memory' });
      expect(r, `${key} ${st}`).not.toContain('stream_create_response","config"');
    }
    const jsm = await jetstreamManager(await as(b, 'admin/'));
    for (const bucket of [jetstream.inventoryBucket, jetstream.dispatchedBucket, jetstream.leasesBucket]) {
      expect(await jsm.streams.info(`KV_${bucket}`).then(() => 'exists', () => 'none'), bucket).toBe('none');
    }
  });

  it('an actor that may not create a bucket waits for it: a retryable error, then the bucket once the cluster manager made it', async () => {
    const node = await bus(b, 'node/n1');
    const err = await node.kv(jetstream.inventoryBucket).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(KvBucketMissing);
    expect((err as KvBucketMissing).retryable).toBe(true);
    await setUpBuckets(await bus(b, 'cluster/cm-0'));
    const kv = await node.kv(jetstream.inventoryBucket);
    await kv.put(inventoryKeys.node('n1'), new Uint8Array([1]));
    const pool = await bus(b, 'pool/pm-0');
    const d = await pool.kv(jetstream.dispatchedBucket);
    await d.put(dispatchedKeys.entry('pool-a', 'r1'), new Uint8Array([2]));
    const keys: string[] = [];
    for await (const k of await d.keys(dispatchedKeys.pool('pool-a'))) keys.push(k);
    expect(keys).toEqual([dispatchedKeys.entry('pool-a', 'r1')]);
  }, 30_000);
});

describe('consumers: no actor delivers a stream onto a subject it may not publish on', () => {
  it("a node agent cannot create a push consumer that delivers its inventory key to another node's instance (t4)", async () => {
    const v = await victim();
    const node = await as(a, 'node/n0');
    await node.request(kvKeySubject(jetstream.inventoryBucket, inventoryKeys.node('n0')), DRAIN, { timeout: 2000 });
    const st = `KV_${jetstream.inventoryBucket}`;
    for (const create of [`$JS.API.CONSUMER.CREATE.${st}`, `$JS.API.CONSUMER.CREATE.${st}.c1.${kvKeySubject(jetstream.inventoryBucket, inventoryKeys.node('n0'))}`]) {
      const r = await api(node, create, { stream_name: st, config: { name: 'c1', deliver_subject: subjects.instanceControl(VICTIM), filter_subject: kvKeySubject(jetstream.inventoryBucket, inventoryKeys.node('n0')), ack_policy: 'none', deliver_policy: 'last' } });
      expect(r).not.toContain('consumer_create_response","stream_name"');
    }
    // nor read it back by a direct get answered onto the instance's subject
    node.publish(`$JS.API.DIRECT.GET.${st}.${kvKeySubject(jetstream.inventoryBucket, inventoryKeys.node('n0'))}`, new Uint8Array(), { reply: subjects.instanceControl(VICTIM) });
    await settle();
    expect(v.handled).toEqual([]);
    expect((await (await jetstreamManager(await as(a, 'admin/'))).consumers.list(st).next()).length).toBe(0);
  });

  it("what a reader may have JetStream deliver onto an instance's command subject is dropped there; a real command is handled", async () => {
    const v = await victim();
    const pool = await as(a, 'pool/pm-0');
    const key = dispatchedKeys.entry('pool-a', 'forged');
    await pool.request(kvKeySubject(jetstream.dispatchedBucket, key), DRAIN, { timeout: 2000 });
    const st = `KV_${jetstream.dispatchedBucket}`;
    // a direct get answered onto the instance's command subject (nats-server checks no reply subject)
    pool.publish(`$JS.API.DIRECT.GET.${st}.${kvKeySubject(jetstream.dispatchedBucket, key)}`, new Uint8Array(), { reply: subjects.instanceControl(VICTIM) });
    // a push consumer inside its own keys (the listing it may make) delivering there
    const made = await api(pool, `$JS.API.CONSUMER.CREATE.${st}.c2.${kvKeySubject(jetstream.dispatchedBucket, key)}`, { stream_name: st, config: { name: 'c2', deliver_subject: subjects.instanceControl(VICTIM), filter_subject: kvKeySubject(jetstream.dispatchedBucket, key), ack_policy: 'none', deliver_policy: 'last' } });
    expect(made).toContain('consumer_create_response');
    await settle();
    expect(v.handled).toEqual([]);
    // both arrived, and were refused as JetStream's
    expect(v.bus.counters.protocolErrors).toBeGreaterThanOrEqual(2);
    // a command without a reply subject is not the protocol's either
    pool.publish(subjects.instanceControl(VICTIM), DRAIN);
    await settle(200);
    expect(v.handled).toEqual([]);
    const pm = await bus(a, 'pool/pm-0');
    expect(await pm.request(subjects.instanceControl(VICTIM), InstanceCommand, { v: 1, op: 'drain', reason: 'the pool leader' }, Ack, { timeoutMs: 2000 })).toMatchObject({ ok: true });
    expect(v.handled.map((c) => c.reason)).toEqual(['the pool leader']);
  });

  it("the observer cannot delete another reader's durable (t2); its own SDK reads still work", async () => {
    const admin = await as(a, 'admin/');
    const st = jetstream.requestsStream;
    expect(await api(admin, `$JS.API.CONSUMER.CREATE.${st}.billing`, { stream_name: st, config: { durable_name: 'billing', name: 'billing', ack_policy: 'explicit' } })).toContain('consumer_create_response');
    const obs = await as(a, 'observer/');
    expect(await api(obs, `$JS.API.CONSUMER.DELETE.${st}.billing`, {})).toBe('refused');
    const jsm = await jetstreamManager(admin);
    expect((await jsm.consumers.info(st, 'billing')).name).toBe('billing');
    // the consumer SDK with the observer's key: a replay of the events stream through its own pull consumer
    const events = await jetstreamManager(obs);
    expect((await events.streams.info(jetstream.eventsStream)).config.name).toBe(jetstream.eventsStream);
    const client = DynamoClient.fromConnection(obs);
    const sub = await client.eventHistory({});
    expect(await sub.caughtUp()).toBe(true);
    // (its iteration, never begun, ends with the connection)
    void sub.stop();
  });
});
