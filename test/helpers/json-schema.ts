/** ajv (JSON Schema draft-07) over the committed protocols/json-schema/ files: what a non-TypeScript consumer uses. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import AjvModule from 'ajv';
import { REPO_ROOT } from './nats.ts';

type AjvCtor = typeof AjvModule.default;
const Ajv: AjvCtor = (AjvModule as unknown as { default?: AjvCtor }).default ?? (AjvModule as unknown as AjvCtor);

export type Validate = (value: unknown) => string | null;

/** name -> validator returning null when valid, else the errors. Reads the committed files, not the zod schemas. */
export function committedValidators(): Record<string, Validate> {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, formats: { 'date-time': (s: string) => !Number.isNaN(Date.parse(s)) } });
  const dir = join(REPO_ROOT, 'protocols', 'json-schema');
  const out: Record<string, Validate> = {};
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    const v = ajv.compile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as object);
    out[f.replace(/\.json$/, '')] = (value) => (v(value) ? null : ajv.errorsText(v.errors));
  }
  return out;
}
