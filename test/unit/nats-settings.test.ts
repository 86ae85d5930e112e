import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { nkeys } from '@nats-io/transport-node';
import { actorNatsSettings, connectionOptions, natsSettings, NatsSettingsError, settingsEnv, DEFAULT_NATS_URL } from '../../src/runtime/nats-settings.ts';

describe('natsSettings: one reading of flags, env (nats CLI names) and config', () => {
  it('defaults to the local URL and no credentials', () => {
    expect(natsSettings({ env: {} })).toEqual({ servers: [DEFAULT_NATS_URL] });
  });
  it('flags beat env beat config, and credentials are taken as one unit', () => {
    const env = { NATS_URL: 'nats://e:1', NATS_USER: 'envu', NATS_PASSWORD: 'envp' };
    const config = { url: ['nats://c:1', 'nats://c:2'], user: 'cu', pass: 'cp' };
    expect(natsSettings({ env, config })).toEqual({ servers: ['nats://e:1'], user: 'envu', pass: 'envp' });
    expect(natsSettings({ env: {}, config })).toEqual({ servers: ['nats://c:1', 'nats://c:2'], user: 'cu', pass: 'cp' });
    // a flag user never takes the env password
    expect(natsSettings({ flags: { nats: 'nats://f:1,nats://f:2', user: 'fu' }, env, config })).toEqual({ servers: ['nats://f:1', 'nats://f:2'], user: 'fu', pass: '' });
    // NATS_CREDS in env wins over the config's user
    expect(natsSettings({ env: { NATS_CREDS: '/x.creds' }, config })).toEqual({ servers: ['nats://c:1', 'nats://c:2'], creds: '/x.creds' });
    expect(natsSettings({ env: { NATS_NKEY: '/x.nk' } })).toEqual({ servers: [DEFAULT_NATS_URL], nkey: '/x.nk' });
  });
  it('reads TLS files from env and refuses a certificate without its key', () => {
    expect(natsSettings({ env: { NATS_CA: '/ca.pem' } }).tls).toEqual({ ca: '/ca.pem' });
    expect(() => natsSettings({ env: { NATS_CERT: '/c.pem' } })).toThrow(NatsSettingsError);
  });
  it('an actor uses its role user from the config when no flag or env names credentials', () => {
    const config = { url: 'nats://c:1', user: 'admin', pass: 'a', roles: { pool: { user: 'pool', pass: 'p' } } };
    expect(actorNatsSettings('pool', { env: {}, config })).toEqual({ servers: ['nats://c:1'], user: 'pool', pass: 'p' });
    expect(actorNatsSettings('cluster', { env: {}, config })).toEqual({ servers: ['nats://c:1'], user: 'admin', pass: 'a' });
    expect(actorNatsSettings('pool', { env: { NATS_NKEY: '/k' }, config })).toEqual({ servers: ['nats://c:1'], nkey: '/k' });
  });
  it('round-trips through a child environment', () => {
    const s = { servers: ['nats://a:1', 'nats://b:2'], nkey: '/k.nk', tls: { ca: '/ca' } };
    expect(natsSettings({ env: settingsEnv(s) })).toEqual(s);
  });
  it('builds an authenticator from an nkey seed file, and names a missing file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyn-nk-'));
    const kp = nkeys.createUser();
    writeFileSync(join(dir, 'a.nk'), new TextDecoder().decode(kp.getSeed()) + '\n');
    expect(connectionOptions({ servers: ['nats://x:1'], nkey: join(dir, 'a.nk') }).authenticator).toBeTypeOf('function');
    expect(() => connectionOptions({ servers: ['nats://x:1'], nkey: join(dir, 'missing.nk') })).toThrow(/missing\.nk/);
    writeFileSync(join(dir, 'bad.nk'), 'not a seed');
    expect(() => connectionOptions({ servers: ['nats://x:1'], nkey: join(dir, 'bad.nk') })).toThrow(NatsSettingsError);
    expect(connectionOptions({ servers: ['nats://x:1'] }).authenticator).toBeUndefined();
  });
});
