/**
 * Issue 12's attacks, each against a real nats-server running the per-actor config `dynamollm up`
 * generates (protocols/permissions.ts -> src/runtime/nats-server-config.ts): two clusters (two accounts)
 * on one server, one nkey user per actor. Every attack here succeeded on the open/role-wide setup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { localClusterAuth, renderServerConfig, type LocalAuth } from '../../src/runtime/nats-server-config.ts';
import { connectionOptions } from '../../src/runtime/nats-settings.ts';
import { checkAuthorization } from '../../src/runtime/nats-launcher.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import {
  InferenceRequest, InstanceStatus, controlSubjects, inboxPrefix, inventoryKeys, jetstream, leaseKeys, subjects, ProtocolError,
  ClientDisconnect, natsSystemSubjects, type ClientDisconnect as ClientDisconnectT,
} from '../../protocols/index.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';

let nats: TestNats;
let a: LocalAuth;
let b: LocalAuth;
const open: NatsConnection[] = [];
const buses: Bus[] = [];
const actors = (clusterId: string) => ({
  clusterId, clusterManagers: ['cm-0'], poolManagers: ['pm-0'], gateways: ['gw-0'], nodes: [{ id: 'n0', gpus: 2 }], pools: ['pool-a'],
});

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-sec-'));
  a = localClusterAuth(actors('alpha'), join(dir, 'alpha'));
  b = localClusterAuth(actors('beta'), join(dir, 'beta'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, renderServerConfig({ header: ['test'], listen: '127.0.0.1:4222', serverName: 'sec-test', storeDir: join(dir, 'js'), accounts: [a.account, b.account] }));
  nats = await startNatsServer({ conf });
});
afterAll(async () => {
  for (const b of buses) await b.close();
  for (const nc of open) await nc.close().catch(() => {});
  await nats?.stop();
});

/** A raw connection with an actor's key (`role/id`), collecting the server's permission errors. */
async function as(auth: LocalAuth, key: string): Promise<{ nc: NatsConnection; denied: string[] }> {
  const c = auth.creds.get(key)!;
  const [kind, id] = key.split('/') as [string, string];
  const nc = await connect({
    ...connectionOptions({ servers: [nats.url], nkey: c.nkeyFile }),
    inboxPrefix: kind === 'admin' ? '_INBOX' : inboxPrefix(kind as 'pool', id || 'test'),
  });
  open.push(nc);
  const denied: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') denied.push((s.error as { subject?: string }).subject ?? s.error?.message ?? '');
  })();
  return { nc, denied };
}

const status = (id: string, startedMs = 1000): InstanceStatus => ({
  v: 1, id, pool: 'pool-a', node: 'n0', tp: 1, gpuIds: [0], state: 'ready', startedMs, seq: 1, sentMs: 1000, clockMhz: 1980, maxClockMhz: 1980,
  queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
});

const settle = () => new Promise((r) => setTimeout(r, 300));

/** Publishes as `who`; returns whether an admin of that account received it and whether the server refused. */
async function tryPublish(auth: LocalAuth, who: string, subject: string, data: Uint8Array = new Uint8Array([1])) {
  const admin = await as(auth, 'admin/');
  let got = 0;
  admin.nc.subscribe(subject, { callback: (err) => {
    if (!err) got++;
  } });
  await admin.nc.flush();
  const p = await as(auth, who);
  p.nc.publish(subject, data);
  await p.nc.flush();
  await settle();
  return { delivered: got > 0, denied: p.denied.some((d) => d.includes(subject)) };
}

async function trySubscribe(auth: LocalAuth, who: string, subject: string, sendTo = subject) {
  const p = await as(auth, who);
  let got = 0;
  p.nc.subscribe(subject, { callback: (err) => {
    if (!err) got++;
  } });
  await p.nc.flush();
  await settle();
  const admin = await as(auth, 'admin/');
  admin.nc.publish(sendTo, new Uint8Array([1]));
  await admin.nc.flush();
  await settle();
  return { received: got > 0, denied: p.denied.some((d) => d.includes(subject)) };
}

describe('secure by default', () => {
  it('an anonymous client is refused', async () => {
    expect((await checkAuthorization([nats.url])).verdict).toBe('enforced');
  });
});

describe('one cluster, one namespace', () => {
  it("two clusters on one server never see each other's subjects or KV", async () => {
    const bob = await as(b, 'cluster/cm-0');
    let seen = 0;
    bob.nc.subscribe(subjects.clusterIntake(), { callback: (err) => {
      if (!err) seen++;
    } });
    await bob.nc.flush();
    const alice = await as(a, 'gateway/gw-0');
    alice.nc.publish(subjects.clusterIntake(), new Uint8Array([1]));
    await alice.nc.flush();
    await settle();
    expect(seen).toBe(0);
    const kvA = await new Kvm((await as(a, 'cluster/cm-0')).nc).create(jetstream.inventoryBucket, { history: 1 });
    await kvA.put(inventoryKeys.pool('pool-a'), new Uint8Array([7]));
    const kvB = await new Kvm(bob.nc).create(jetstream.inventoryBucket, { history: 1 });
    expect(await kvB.get(inventoryKeys.pool('pool-a'))).toBeNull();
  });
});

describe('least privilege (per actor)', () => {
  it('the node agent cannot write pool assignments; it writes only its own inventory key', async () => {
    expect(await tryPublish(a, 'node/n0', `$KV.${jetstream.inventoryBucket}.${inventoryKeys.pool('pool-a')}`)).toEqual({ delivered: false, denied: true });
    expect(await tryPublish(a, 'node/n0', `$KV.${jetstream.inventoryBucket}.${inventoryKeys.node('n9')}`)).toEqual({ delivered: false, denied: true });
    expect((await tryPublish(a, 'node/n0', `$KV.${jetstream.inventoryBucket}.${inventoryKeys.node('n0')}`)).delivered).toBe(true);
  });

  it('the pool manager cannot write the cluster planner lease', async () => {
    expect(await tryPublish(a, 'pool/pm-0', `$KV.${jetstream.leasesBucket}.${leaseKeys.clusterPlanner()}`)).toEqual({ delivered: false, denied: true });
  });

  it("an instance reads only its own admit subject (not another instance's prompts)", async () => {
    const other = 'pool-a-n0-g1x1';
    expect(await trySubscribe(a, 'instance/pool-a-n0-g0x1', subjects.instanceAdmit(other))).toEqual({ received: false, denied: true });
    expect(await trySubscribe(a, 'instance/pool-a-n0-g0x1', 'dyn.v1.inst.*.admit', subjects.instanceAdmit(other))).toEqual({ received: false, denied: true });
    expect((await trySubscribe(a, 'instance/pool-a-n0-g0x1', subjects.instanceAdmit('pool-a-n0-g0x1'))).received).toBe(true);
  });

  it("nobody reads other clients' replies: _INBOX.> is refused, each actor has its own inbox prefix", async () => {
    for (const who of ['gateway/gw-0', 'cluster/cm-0', 'pool/pm-0', 'node/n0', 'instance/pool-a-n0-g0x1', 'observer/']) {
      expect((await trySubscribe(a, who, '_INBOX.>')).denied, who).toBe(true);
    }
    expect((await trySubscribe(a, 'pool/pm-0', `${inboxPrefix('gateway', 'gw-0')}.x`)).denied).toBe(true);
  });

  it('the gateway and the observer can command nothing (clock, stop), and the observer cannot submit requests', async () => {
    for (const who of ['gateway/gw-0', 'observer/']) {
      expect((await tryPublish(a, who, subjects.instanceControl('pool-a-n0-g0x1'))).delivered, who).toBe(false);
      expect((await tryPublish(a, who, subjects.nodeControl('n0'))).delivered, who).toBe(false);
      expect((await tryPublish(a, who, subjects.poolControl('pool-a'))).delivered, who).toBe(false);
    }
    expect((await tryPublish(a, 'observer/', subjects.clusterIntake())).delivered).toBe(false);
  });

  it('the events stream is written only by control actors, each under its own id', async () => {
    expect((await tryPublish(a, 'gateway/gw-0', subjects.event('scale', 'gw-0'))).delivered).toBe(false);
    expect((await tryPublish(a, 'instance/pool-a-n0-g0x1', subjects.event('scale', 'pool-a'))).delivered).toBe(false);
    expect((await tryPublish(a, 'instance/pool-a-n0-g0x1', subjects.event('clock', 'pool-a-n0-g0x1'))).delivered).toBe(true);
  });
});

describe('disconnect advisories (the server\'s system account, imported)', () => {
  it('each cluster reads its own clients\' disconnects, named by their nkey; no actor forges one; only dispatch views read them', async () => {
    const seen = async (auth: LocalAuth) => {
      const cm = await as(auth, 'cluster/cm-0');
      const got: ClientDisconnectT[] = [];
      cm.nc.subscribe(controlSubjects.connectionEnded(), { callback: (err, m) => {
        // (the admin's probes below publish non-advisories here: they do not decode)
        try {
          if (!err) got.push(ClientDisconnect.decode(m.data, m.subject));
        } catch { /* not an advisory */ }
      } });
      await cm.nc.flush();
      return got;
    };
    const [alpha, beta] = [await seen(a), await seen(b)];
    const inst = await as(b, 'instance/pool-a-n0-g0x1');
    const cid = inst.nc.info!.client_id;
    await inst.nc.close();
    await settle();
    const named = beta.filter((x) => x.client.id === cid);
    expect(named).toHaveLength(1);
    expect(named[0]!.client.user).toBe(b.creds.get('instance/pool-a-n0-g0x1')!.publicKey);
    expect(named[0]!.client.acc).toBe('beta');
    expect(alpha.filter((x) => x.client.acc !== 'alpha')).toEqual([]);
    // nobody but the server writes them, and only the cluster and pool managers and the gateways read them
    for (const who of ['instance/pool-a-n0-g0x1', 'cluster/cm-0', 'gateway/gw-0', 'node/n0']) expect(await tryPublish(a, who, controlSubjects.connectionEnded()), who).toEqual({ delivered: false, denied: true });
    for (const who of ['instance/pool-a-n0-g0x1', 'node/n0', 'observer/']) expect((await trySubscribe(a, who, controlSubjects.connectionEnded())).denied, who).toBe(true);
    // the system account's own subjects stay out of reach
    expect((await trySubscribe(a, 'cluster/cm-0', natsSystemSubjects.accountDisconnect('alpha'))).denied).toBe(true);
  });
});

describe('identity bound to credentials', () => {
  it("a forged InstanceStatus is refused: not publishable on another instance's subject, and a mismatched claim is dropped at intake", async () => {
    const victim = 'pool-a-n0-g1x1';
    const forged = InstanceStatus.encode(status(victim, 1));
    // on the victim's own subject: the server refuses the publish
    expect(await tryPublish(a, 'instance/pool-a-n0-g0x1', controlSubjects.instanceStatus('pool-a', victim), forged)).toEqual({ delivered: false, denied: true });
    // on the attacker's own subject, claiming the victim: the pool leader's intake drops it
    const pm = await Bus.connect({ settings: { servers: [nats.url], nkey: a.creds.get('pool/pm-0')!.nkeyFile }, name: 'pm', inboxPrefix: inboxPrefix('pool', 'pm-0'), log: silentLogger() });
    buses.push(pm);
    const accepted: string[] = [];
    pm.subscribe(controlSubjects.instanceStatusPool('pool-a'), InstanceStatus, (s) => void accepted.push(s.id), { expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id) });
    await pm.nc.flush();
    const atk = await as(a, 'instance/pool-a-n0-g0x1');
    atk.nc.publish(controlSubjects.instanceStatus('pool-a', 'pool-a-n0-g0x1'), forged);
    atk.nc.publish(controlSubjects.instanceStatus('pool-a', 'pool-a-n0-g0x1'), InstanceStatus.encode(status('pool-a-n0-g0x1')));
    await atk.nc.flush();
    await settle();
    expect(accepted).toEqual(['pool-a-n0-g0x1']);
    expect(pm.counters.identityRejections).toBe(1);
  });

  it('streamSubject must be the request\'s own token stream (never the events stream)', () => {
    const req = SAMPLES.InferenceRequest as InferenceRequest;
    expect(() => InferenceRequest.check({ ...req, streamSubject: subjects.event('scale', 'x') })).toThrow(ProtocolError);
    expect(() => InferenceRequest.check({ ...req, streamSubject: subjects.stream(req.id) })).not.toThrow();
  });
});
