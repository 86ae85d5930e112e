/**
 * One-replica KV buckets are read by direct get, never by a JetStream stream message get: nats-server before 2.9.15
 * (Debian's 2.9.10 among them) lists a stream before its store is open, and a message get by subject reaching it
 * then crashes the server (a nil store in jsMsgGetRequest) - a bucket being made by another process, or a server
 * recovering its streams after a restart. Real nats-server (one, and a 3-node cluster for the one-replica lease
 * buckets placed by tag); an admin client counts the message-get requests the readers send.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Bus } from '../../src/runtime/bus.ts';
import { openLeaseBucket } from '../../src/runtime/lease-slot.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { leaseBuckets } from '../../protocols/index.ts';
import { creds, startNatsCluster, startNatsServer, type TestNats } from '../helpers/nats.ts';

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

/** the stream message gets published on `url`'s account, counted by an admin subscriber. */
async function msgGets(url: string): Promise<{ n: () => number; nc: NatsConnection }> {
  const nc = await connect({ servers: url, ...creds('admin') });
  stops.push(() => nc.close());
  let n = 0;
  nc.subscribe('$JS.API.STREAM.MSG.GET.>', { callback: () => { n++; } });
  await nc.flush();
  return { n: () => n, nc };
}

describe('one-replica KV buckets are read by direct get', () => {
  it('a bucket of one server: opened, written and read with no stream message get', async () => {
    const s: TestNats = await startNatsServer();
    stops.push(() => s.stop());
    const gets = await msgGets(s.url);
    const bus = await Bus.connect({ servers: s.url, name: 'kv-direct', ...creds('admin'), log: silentLogger() });
    stops.push(() => bus.close());
    const kv = await bus.kv('dyn_test_direct', { history: 1 });
    await kv.put('k', new TextEncoder().encode('v1'));
    expect(new TextDecoder().decode((await kv.get('k'))!.value)).toBe('v1');
    // a second process opening the bucket that exists (the bound handle's probe read)
    const other = await Bus.connect({ servers: s.url, name: 'kv-direct-2', ...creds('admin'), log: silentLogger() });
    stops.push(() => other.close());
    expect(new TextDecoder().decode((await (await other.kv('dyn_test_direct', { history: 1 })).get('k'))!.value)).toBe('v1');
    await gets.nc.flush();
    expect(gets.n()).toBe(0);
  }, 30_000);

  it('the one-replica lease buckets of a 3-server cluster (placed by tag): no stream message get', async () => {
    const c = await startNatsCluster(3, { leaseTags: true });
    stops.push(() => c.stop());
    const gets = await msgGets(c.urls[0]!);
    const bus = await Bus.connect({ servers: c.urls.join(','), name: 'lease-direct', ...creds('admin'), log: silentLogger() });
    stops.push(() => bus.close());
    bus.jetstreamReplicas = 3;
    const buckets = leaseBuckets(3);
    for (const [i, b] of buckets.entries()) {
      let kv;
      // the cluster's meta leader may still be electing: a few tries
      for (let t = 0; !kv && t < 40; t++) kv = await openLeaseBucket(bus, b, i, 3).catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 250)));
      expect(kv, b).toBeDefined();
      await kv!.put('planner', new TextEncoder().encode(`x${i}`));
      expect(new TextDecoder().decode((await kv!.get('planner'))!.value)).toBe(`x${i}`);
    }
    await gets.nc.flush();
    expect(gets.n()).toBe(0);
  }, 90_000);
});
