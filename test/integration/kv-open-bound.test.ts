/**
 * A KV bucket that exists opens without what only JetStream's meta leader answers (src/runtime/kv-open.ts): the
 * account info that nats.js's create asks first, and a stream's creation or update; a NATS node's death takes that
 * leader away for seconds, while the bucket's own stream goes on answering its stream info (its leader answers it),
 * reads and writes. Here a real nats-server gives one user no right to those API calls (as if no meta leader answered
 * them): that user's Bus still opens the existing lease bucket, reads and writes it; a bucket that does not exist is
 * still created (by a user that may).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';

const CONF = `
jetstream {
}
accounts {
  A: {
    jetstream: enabled
    users: [
      { user: full, password: full-pass }
      {
        user: nomgmt, password: nomgmt-pass
        permissions: {
          publish: { allow: [">"], deny: ["$JS.API.INFO", "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>"] }
          subscribe: { allow: [">"] }
        }
      }
    ]
  }
}
`;

let nats: TestNats;
const buses: Bus[] = [];
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-kvopen-'));
  writeFileSync(join(dir, 'nats.conf'), CONF);
  nats = await startNatsServer({ conf: join(dir, 'nats.conf') });
}, 30_000);
afterAll(async () => {
  for (const b of buses) await b.close();
  await nats?.stop();
});

async function bus(user: string, pass: string): Promise<Bus> {
  const b = await Bus.connect({ servers: nats.url, name: `kv-open-${user}`, user, pass, log: silentLogger() });
  buses.push(b);
  return b;
}

describe('opening a KV bucket', () => {
  it('an existing bucket opens, reads and writes without the management API (what a missing meta leader denies)', async () => {
    const full = await bus('full', 'full-pass');
    const created = await full.kv('dyn_test_leases');
    await created.put('lease.a', new TextEncoder().encode('one'));

    const b = await bus('nomgmt', 'nomgmt-pass');
    const kv = await Promise.race([b.kv('dyn_test_leases'), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('bucket not opened within 3 s')), 3000))]);
    expect(new TextDecoder().decode((await kv.get('lease.a'))!.value)).toBe('one');
    const rev = await kv.update('lease.a', new TextEncoder().encode('two'), (await kv.get('lease.a'))!.revision);
    expect(rev).toBeGreaterThan(0);
    expect(new TextDecoder().decode((await created.get('lease.a'))!.value)).toBe('two');
  }, 20_000);

  it('a missing bucket is created', async () => {
    const full = await bus('full', 'full-pass');
    const kv = await full.kv('dyn_test_new');
    expect(await kv.get('x')).toBeNull();
    await kv.put('x', new TextEncoder().encode('1'));
    expect((await kv.get('x'))?.revision).toBe(1);
  }, 20_000);
});
