import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsUnavailableError, probeNats, startOwnNats, startOwnNatsCluster } from '../../src/runtime/nats-launcher.ts';
import { kvBucketOptions } from '../../src/runtime/bus.ts';
import { readFileSync } from 'node:fs';

// The private nats-server `up` starts: a real server on a free port, and the errors an operator sees when the
// binary is missing or refuses its config.
const log = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'dyn-launcher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('startOwnNats', () => {
  it('starts a server on a free port with its own store, and stops it', async () => {
    const h = await startOwnNats({ conf: 'jetstream {\n}\n', dir: join(dir, 'ok'), log });
    const port = Number(new URL(h.url.replace(/^nats:/, 'http:')).port);
    expect(port).toBeGreaterThan(0);
    expect(await probeNats('127.0.0.1', port)).toBe(true);
    await h.stop();
    expect(await probeNats('127.0.0.1', port, 300)).toBe(false);
  });

  it('a missing binary says how to install nats-server', async () => {
    const err = await startOwnNats({ conf: 'jetstream {\n}\n', dir: join(dir, 'missing'), log, bin: join(dir, 'no-such-nats-server') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsUnavailableError);
    expect((err as Error).message).toMatch(/nats-server not found .*apt-get install nats-server/);
  });

  it('a config the server refuses fails at once with the server\'s own words', async () => {
    const t0 = Date.now();
    const err = await startOwnNats({ conf: 'jetstream {\n}\nno_such_option_here: {{{\n', dir: join(dir, 'bad'), log }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsUnavailableError);
    expect((err as Error).message).toMatch(/nats-server exited with code \d+: .+/);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('a server killed unasked comes back on the same port with its JetStream state, again and again, until stop()', async () => {
    const h = await startOwnNats({ conf: 'jetstream {\n}\n', dir: join(dir, 'restart'), log, restart: { initialMs: 100, maxMs: 1000 } });
    const port = Number(new URL(h.url.replace(/^nats:/, 'http:')).port);
    const nc = await connect({ servers: h.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    try {
      const kv = await new Kvm(nc).create('chaos', { history: 1 });
      await kv.put('lease', 'cm-0');
      for (let round = 1; round <= 2; round++) {
        const pid = h.pid()!;
        process.kill(pid, 'SIGKILL');
        const until = Date.now() + 15_000;
        while ((h.restarts() < round || !(await probeNats('127.0.0.1', port, 300))) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        expect(h.restarts(), `restart ${round}`).toBe(round);
        expect(h.pid()).not.toBe(pid);
        // the client reconnects to the same URL and reads what the server had stored before it died (JetStream
        // answers once it has read its store back: tried until then)
        let got: string | undefined;
        let last: unknown;
        while (got === undefined && Date.now() < until + 10_000) {
          try {
            got = (await (await new Kvm(nc).open('chaos')).get('lease'))?.string();
          } catch (err) {
            last = err;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        expect(got, `round ${round}: ${String(last)}`).toBe('cm-0');
      }
    } finally {
      await nc.close();
    }
    await h.stop();
    await new Promise((r) => setTimeout(r, 600));
    expect(await probeNats('127.0.0.1', port, 300)).toBe(false);
    expect(h.restarts()).toBe(2);
  });

  it('a 3-node private cluster: routes carry a password, JetStream R3 keeps answering while a killed node comes back', async () => {
    const c = await startOwnNatsCluster({
      nodes: 3, name: 'dyn-test-cluster', dir: join(dir, 'cluster'), log, restart: { initialMs: 100, maxMs: 1000 },
      conf: ({ index, cluster }) => `server_name: n${index}\njetstream {\n}\ncluster {\n  name: ${cluster.name}\n  listen: ${cluster.listen}\n  routes: [${cluster.routes.join(', ')}]\n}\n`,
    });
    try {
      expect(c.urls).toHaveLength(3);
      const conf = readFileSync(join(dir, 'cluster', 'node-0', 'nats-server.conf'), 'utf8');
      expect(conf).toMatch(/authorization \{ user: route, password: "[\w-]{20,}" \}/);
      expect(conf).toMatch(/nats-route:\/\/route:[\w-]{20,}@127\.0\.0\.1:\d+/);
      const nc = await connect({ servers: c.urls, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
      try {
        // the meta leader is elected once the routes are up: create the bucket when JetStream answers
        let kv: Awaited<ReturnType<Kvm['create']>> | undefined;
        const until = Date.now() + 30_000;
        while (!kv && Date.now() < until) kv = await new Kvm(nc).create('r3', { history: 1, ...kvBucketOptions(3) }).catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 250)));
        expect(kv, 'JetStream R3 bucket').toBeDefined();
        await kv!.put('k', 'v1');
        const victim = c.nodes[1]!;
        const pid = victim.pid()!;
        process.kill(pid, 'SIGKILL');
        // two of three keep the quorum: reads and writes go on (a write may wait for a stream leader election)
        const t0 = Date.now();
        let wrote = false;
        while (!wrote && Date.now() - t0 < 15_000) wrote = await kv!.put('k', 'v2').then(() => true, () => false);
        expect(wrote, 'a write with one node of three dead').toBe(true);
        // read-your-writes: the project's buckets read through the stream leader (a direct get may be answered
        // by a follower that has not applied the write yet)
        expect((await kv!.get('k'))?.string()).toBe('v2');
        for (let i = 3; i < 43; i++) {
          await kv!.put('k', `v${i}`);
          expect((await kv!.get('k'))?.string(), `read after write ${i}`).toBe(`v${i}`);
        }
        const back = Date.now() + 15_000;
        while (victim.restarts() < 1 && Date.now() < back) await new Promise((r) => setTimeout(r, 100));
        expect(victim.restarts()).toBe(1);
        expect(victim.pid()).not.toBe(pid);
      } finally {
        await nc.close();
      }
    } finally {
      await c.stop();
    }
    for (const u of c.urls) expect(await probeNats('127.0.0.1', Number(new URL(u.replace(/^nats:/, 'http:')).port), 300)).toBe(false);
  });
});
