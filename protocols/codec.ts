/**
 * msgpack codec with validation. `encode` checks the value against the schema too (a sender bug is caught
 * at the sender); `decode` turns any failure (garbage bytes, truncation, wrong version, wrong shape) into a
 * ProtocolError naming the subject and the fields at fault.
 */
import { Packr } from 'msgpackr';
import type { z } from 'zod';
import { ProtocolError, VersionMismatchError } from './errors.ts';
import { compileFastCheck } from './fast-check.ts';

export const PROTOCOL_VERSION = 1 as const;

// useRecords=false keeps payloads plain msgpack maps, readable by any msgpack implementation.
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' });

export interface Codec<T> {
  readonly name: string;
  /** the zod schema (one source: validation here, JSON Schema files for other languages). */
  readonly schema: z.ZodTypeAny;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array, subject?: string): T;
  /** Validate a value already in memory (e.g. built from JSON). */
  check(value: unknown, subject?: string): T;
}

/**
 * A fast validator: every codec gets one compiled from its schema (protocols/fast-check.ts), or a
 * hand-written one for a hot message. It must return true only
 * for values the zod schema accepts AND returns unchanged (no unknown keys to strip, no defaults to fill);
 * anything else returns false and takes the zod path, so acceptance, the parsed value and every error are
 * zod's. test/unit/protocols-fast.test.ts checks the two agree on generated inputs.
 */
export type FastCheck = (value: Record<string, unknown>) => boolean;

export function codec<S extends z.ZodTypeAny>(name: string, schema: S, fastCheck?: FastCheck): Codec<z.infer<S>> {
  const fast = fastCheck ?? compileFastCheck(schema);
  const check = (value: unknown, subject?: string): z.infer<S> => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ProtocolError(`${name}: payload is not a map`, { subject });
    }
    const v = (value as { v?: unknown }).v;
    if (v !== PROTOCOL_VERSION) throw new VersionMismatchError(v, PROTOCOL_VERSION, subject);
    if (fast(value as Record<string, unknown>)) return value as z.infer<S>;
    const r = schema.safeParse(value);
    if (!r.success) {
      const issues = r.error.issues.map((i: z.ZodIssue) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new ProtocolError(`${name}: invalid payload (${issues.slice(0, 3).join('; ')})`, { subject, issues });
    }
    return r.data as z.infer<S>;
  };
  return {
    name,
    schema,
    check,
    encode(value) {
      check(value);
      return packr.pack(value);
    },
    decode(bytes, subject) {
      let raw: unknown;
      try {
        raw = packr.unpack(bytes);
      } catch (cause) {
        throw new ProtocolError(`${name}: undecodable msgpack (${(cause as Error).message})`, { subject, cause });
      }
      return check(raw, subject);
    },
  };
}

/**
 * `c` for a hot sender that builds its values itself from values already checked (the gateway's leg reports): its
 * encode packs without the sender-side check (the same bytes); the receiver's decode validates them as ever.
 */
export function senderTrusted<T>(c: Codec<T>): Codec<T> {
  return { ...c, encode: (value) => packr.pack(value) };
}

/** Raw msgpack, for tests and tools that must craft bad payloads. */
export function packRaw(value: unknown): Uint8Array {
  return packr.pack(value);
}
export function unpackRaw(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
