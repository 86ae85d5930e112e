/**
 * Issue 20 against a real cluster (real nats-server with the project's nats.conf, cluster/pool managers, a
 * node agent, an instance manager, an emulated engine; actors on their own NATS roles):
 * - every actor answers the NATS Service API, read with the official client (@nats-io/services) connected
 *   as the read-only observer; endpoint stats count requests, errors and processing time;
 * - the observer may send $SRV requests and read, and nothing that changes state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Svcm, type ServiceClient, type ServiceIdentity, type ServiceInfo, type ServiceStats } from '@nats-io/services';
import { oneTp2InstanceConfig, startControlPlane, type Harness } from './control-harness.ts';
import {
  InstanceCommand, jetstream, packRaw, serviceInfoResponse, servicePingResponse, serviceStatsResponse, subjects, Ack,
} from '../../protocols/index.ts';

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
  observer = await connect({ servers: h.nats.url, ...h.nats.creds('observer') });
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
    expect(inst.endpoints.map((e) => e.subject).sort()).toEqual([subjects.instanceAdmit(inst.id), subjects.instanceControl(inst.id)].sort());
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
    const nc = await connect({ servers: h.nats.url, ...h.nats.creds('observer') });
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
