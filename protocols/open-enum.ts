/**
 * An open enum: a field whose set of values grows within protocol v1 (docs/PROTOCOL.md "Evolution within v1"). A
 * reader takes a value it does not know (a newer writer's) as `fallback` and keeps the rest of the message, as it keeps
 * a message with a field it does not know; the JSON Schema lists the known values and admits any other string of at
 * most OPEN_ENUM_MAX_CHARS. Every other enum of the protocol is closed: a value outside it makes the message invalid.
 */
import { z } from 'zod';

/** The longest value of an open enum a reader takes (as its fallback): a longer one makes the message invalid. */
export const OPEN_ENUM_MAX_CHARS = 64;

/**
 * `values` as an open enum: a known value decodes as itself (the codec's compiled check passes it without zod), any
 * other string of at most OPEN_ENUM_MAX_CHARS as `fallback`.
 */
export function openEnum<const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) {
  return z
    .union([z.enum(values), z.string().max(OPEN_ENUM_MAX_CHARS).transform((): T[number] => fallback)])
    .describe(`open: ${values.join(', ')}; a reader takes any other value as '${fallback}' (docs/PROTOCOL.md "Evolution within v1")`);
}
