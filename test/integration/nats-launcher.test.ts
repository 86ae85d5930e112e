import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
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
});
