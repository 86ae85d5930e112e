/**
 * A lease contender whose NATS connection is on a server without JetStream moves to another server and takes
 * the lease there (issue 13, new leader within 2 s). A clustered nats-server takes clients again as soon as it
 * restarts and answers "jetstream is not enabled" (no responders on its JetStream API) until it has caught up:
 * in `dynamollm chaos` on this VM, managers whose connection landed on such a server could neither renew nor
 * take their lease for 4-7 s while the other servers served JetStream. Here the first server of the contender's
 * list is a real nats-server without JetStream (deterministically what a restarted one is for those seconds), the
 * second a real one with it; the connection tries them in that order.
 *
 * Before the move the contender's start threw (the bucket could not be opened) and every attempt failed on the
 * same server: no leader ever. The move's reconnect must go to the other server at once: nats.js's own loop dials
 * the server it was connected to first.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATS_CONF, as, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { LeaseValue, jetstream, leaseKeys } from '../../protocols/index.ts';

let noJs: TestNats;
let withJs: TestNats;
const buses: Bus[] = [];

beforeAll(async () => {
  // the project's server config without its jetstream block: the same users and rights, no JetStream
  const dir = mkdtempSync(join(tmpdir(), 'dyn-nojs-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, readFileSync(NATS_CONF, 'utf8').replace(/^jetstream \{[^}]*\}/m, '').replace(/^\s*jetstream: enabled\n/m, ''));
  noJs = await startNatsServer({ conf, jetstream: false });
  withJs = await startNatsServer();
}, 30_000);

afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await noJs?.stop();
  await withJs?.stop();
});

describe('a lease contender on a server without JetStream', () => {
  it('moves to a server with JetStream and is elected there', async () => {
    const b = await Bus.connect({ servers: [noJs.url, withJs.url], noRandomize: true, name: 'lease-move', ...as('cluster', 'cm-move'), log: silentLogger() });
    buses.push(b);
    expect(b.nc.getServer()).toContain(String(noJs.port));
    // connected a while ago, as a manager is when the server it is on restarts (nats.js redials a server at once
    // only when its last dial is older than reconnectTimeWait)
    await new Promise((r) => setTimeout(r, 1000));
    const reconnects: string[] = [];
    b.on('status', (st: { type: string; server?: string }) => {
      if (st.type === 'reconnect') reconnects.push(st.server ?? '');
    });
    const lease = new LeaderLease({ bus: b, key: leaseKeys.clusterPlanner(), holder: 'cm-move', ttlMs: 1500, renewMs: 500, log: silentLogger() });
    const t0 = Date.now();
    const elected = new Promise<number>((r) => lease.once('elected', () => r(Date.now() - t0)));
    await lease.start();
    try {
      const tookMs = await Promise.race([elected, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('never elected')), 20_000))]);
      expect(lease.isLeader()).toBe(true);
      // one move, straight to the other server: nats.js's reconnect loop starts with the server it left, which the
      // move passes over (it came back to it, and moved again only after the mover's 2-s gap)
      expect(reconnects.map((s) => s.split(':').pop())).toEqual([String(withJs.port)]);
      // (how soon, against the 2-s target, is a latency figure: `dynamollm chaos` times new leaders over many kills,
      // bench-results/chaos-cli.md; the single reconnect above is what fails when the move is not at once)
      console.log(`elected ${tookMs} ms after the start, reconnected to ${reconnects.join(', ')}`);
      // the connection moved to the server with JetStream, and the lease is stored there under this holder
      expect(b.nc.getServer()).toContain(String(withJs.port));
      const admin = await Bus.connect({ servers: withJs.url, name: 'lease-move-check', ...as('admin'), log: silentLogger() });
      buses.push(admin);
      const e = await (await admin.kv(jetstream.leasesBucket, { history: 1 })).get(leaseKeys.clusterPlanner());
      expect(LeaseValue.decode(e!.value).holder).toBe('cm-move');
    } finally {
      await lease.stop();
    }
  }, 40_000);
});
