/**
 * The NATS nkey challenge signed with Node's own Ed25519 (OpenSSL). nats.js's nkeyAuthenticator runs tweetnacl in
 * JavaScript: on each connect it derives the key pair twice and signs, 76-82 ms of CPU for the first signature in a
 * fresh process (its code cold) against 4.6-5.6 ms here (BENCHMARKS.md "Actor start-up", the shared 2-core VM,
 * 2026-12-05 21:41 UTC, load ~10-11), a visible share of an actor's start on a loaded host (src/runtime/startup.ts).
 * Ed25519 signatures are deterministic: the nkey and the signature are the bytes nats.js's authenticator gives
 * (test/unit/nkey-auth.test.ts compares them). A seed this module does not read (not a user seed, a bad checksum) is
 * left to nats.js's own authenticator, which refuses a bad one and signs an account seed.
 */
import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { nkeyAuthenticator, type Authenticator } from '@nats-io/transport-node';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** nkeys prefix bytes: a seed's first 5 bits, a user key's. */
const PREFIX_SEED = 18 << 3;
const PREFIX_USER = 20 << 3;
/** DER of a PKCS#8 Ed25519 private key before its 32-byte seed (RFC 8410). */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/** CRC-16/XMODEM, as nkeys checks its keys. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32Encode(bytes: Uint8Array): string {
  let out = '', bits = 0, value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string): Uint8Array | undefined {
  const out: number[] = [];
  let bits = 0, value = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

/** The 32-byte Ed25519 seed of an nkey user seed (`SU...`), or undefined when it is not one (or its checksum is bad). */
export function userSeedBytes(seed: string): Uint8Array | undefined {
  const raw = base32Decode(seed);
  if (!raw || raw.length !== 36) return undefined;
  const body = raw.subarray(0, 34);
  if (crc16(body) !== (raw[34]! | (raw[35]! << 8))) return undefined;
  if ((raw[0]! & 0xf8) !== PREFIX_SEED || (((raw[0]! & 7) << 5) | ((raw[1]! & 0xf8) >> 3)) !== PREFIX_USER) return undefined;
  return raw.slice(2, 34);
}

/** The nkey (`U...`) of a user's Ed25519 public key. */
function userPublicKey(pub: Uint8Array): string {
  const body = new Uint8Array(33);
  body[0] = PREFIX_USER;
  body.set(pub, 1);
  const crc = crc16(body);
  const all = new Uint8Array(35);
  all.set(body);
  all[33] = crc & 0xff;
  all[34] = crc >> 8;
  return base32Encode(all);
}

/** nats.js's Authenticator for an nkey user seed (`SU...`), signing the server's nonce with node:crypto. */
export function nativeNkeyAuthenticator(seed: string): Authenticator {
  const raw = userSeedBytes(seed);
  if (!raw) return nkeyAuthenticator(new TextEncoder().encode(seed));
  let key: { priv: KeyObject; nkey: string } | undefined;
  return (nonce?: string) => {
    if (!key) {
      const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: 'der', type: 'pkcs8' });
      const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
      key = { priv, nkey: userPublicKey(spki.subarray(spki.length - 32)) };
    }
    // as nats.js: no nonce, no signature
    const sig = nonce ? sign(null, new TextEncoder().encode(nonce), key.priv).toString('base64') : '';
    return { nkey: key.nkey, sig };
  };
}
