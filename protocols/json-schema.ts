/**
 * JSON Schema (draft-07) of every message, generated from the zod schemas (the one source), for consumers in
 * other languages: decode the msgpack payload with any msgpack library, validate the map with these.
 * Committed under protocols/json-schema/ (src/cli/gen-protocol.ts writes them).
 */
import { zodToJsonSchema } from 'zod-to-json-schema';
import type { z } from 'zod';
import { messageSchemas } from './catalog.ts';

export const JSON_SCHEMA_ID_BASE = 'urn:dynamollm:schema:v1:';

export function jsonSchemas(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, schema] of Object.entries(messageSchemas()).sort(([a], [b]) => a.localeCompare(b))) {
    const { $schema: _drop, ...js } = zodToJsonSchema(schema as z.ZodType, { target: 'jsonSchema7', $refStrategy: 'none', removeAdditionalStrategy: 'strict' }) as Record<string, unknown>;
    out[name] = { $schema: 'http://json-schema.org/draft-07/schema#', $id: `${JSON_SCHEMA_ID_BASE}${name}.json`, title: name, ...js };
  }
  return out;
}
