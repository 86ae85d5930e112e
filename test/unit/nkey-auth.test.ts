/**
 * The nkey challenge signed with node:crypto (src/runtime/nkey-auth.ts) gives the nkey and the signature nats.js's
 * own nkeyAuthenticator gives (Ed25519 is deterministic), for fresh user seeds and nonces; a seed it does not read
 * is left to nats.js, which refuses a bad one and signs an account seed with the bytes its authenticator gives.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { nkeyAuthenticator, nkeys } from '@nats-io/transport-node';
import { nativeNkeyAuthenticator, userSeedBytes } from '../../src/runtime/nkey-auth.ts';

describe('nkey authenticator on node:crypto', () => {
  it("signs each nonce as nats.js does: the same nkey and the same signature, the server's check passes", () => {
    for (let i = 0; i < 8; i++) {
      const kp = nkeys.createUser();
      const seed = new TextDecoder().decode(kp.getSeed());
      const ours = nativeNkeyAuthenticator(seed);
      const theirs = nkeyAuthenticator(new TextEncoder().encode(seed));
      for (const nonce of [randomBytes(16).toString('base64url'), 'x', undefined]) {
        const a = ours(nonce) as { nkey: string; sig: string };
        expect(a).toEqual(theirs(nonce));
        expect(a.nkey).toBe(kp.getPublicKey());
        if (nonce) expect(nkeys.fromPublic(a.nkey).verify(new TextEncoder().encode(nonce), Uint8Array.from(Buffer.from(a.sig, 'base64')))).toBe(true);
      }
    }
  });

  it("leaves a seed it does not read to nats.js's authenticator (a bad checksum refused, an account seed signed)", () => {
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    // one character of the key changed (not the last, whose low bits are padding): the checksum catches it
    const bad = seed.slice(0, 10) + (seed[10] === 'A' ? 'B' : 'A') + seed.slice(11);
    expect(userSeedBytes(bad)).toBeUndefined();
    expect(() => nativeNkeyAuthenticator(bad)('nonce')).toThrow();
    const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
    expect(userSeedBytes(account)).toBeUndefined();
    expect(nativeNkeyAuthenticator(account)('n')).toEqual(nkeyAuthenticator(new TextEncoder().encode(account))('n'));
  });
});
