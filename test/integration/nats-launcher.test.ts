import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsUnavailableError, probeNats, startOwnNats } from '../../src/runtime/nats-launcher.ts';

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
});
