/**
 * Request fields the gateway accepted and ignored, as vLLM's OpenAI server ignores a field its request model does
 * not define (protocols/vllm-request-fields.ts). Ignored, never silently: each response names them in the header
 * `x-dynamollm-ignored-fields`, each is counted in `dynamollm_gateway_ignored_request_fields_total{field}` and a
 * warning names them (at most one per route every 10 s).
 */
import type { ServerResponse } from 'node:http';
import type { Counter } from 'prom-client';
import type { Logger } from '../../src/runtime/logger.ts';
import { RateLimitedLog } from '../../src/runtime/logger.ts';

/** the response header naming the fields the gateway ignored, comma-separated. */
export const IGNORED_FIELDS_HEADER = 'x-dynamollm-ignored-fields';
/** the longest field name a metric label or the header carries as it is (longer: cut, the label `other`). */
export const FIELD_LABEL_MAX = 64;
/** distinct field labels a gateway process keeps; past them a new name counts as `other`. */
export const FIELD_LABELS_MAX = 32;
/** names the header lists (a body of many unknown fields: the first ones, then `...`). */
const HEADER_NAMES_MAX = 16;

const PLAIN = /^[A-Za-z0-9_.\-[\]]+$/;

/** A field name as the header writes it: plain names as they are, anything else percent-encoded, cut to FIELD_LABEL_MAX. */
export function headerName(name: string): string {
  const s = PLAIN.test(name) ? name : encodeURIComponent(name);
  return s.length > FIELD_LABEL_MAX ? s.slice(0, FIELD_LABEL_MAX) : s;
}

/** The header's value for `fields`. */
export function ignoredHeader(fields: readonly string[]): string {
  const names = fields.slice(0, HEADER_NAMES_MAX).map(headerName);
  return fields.length > HEADER_NAMES_MAX ? `${names.join(', ')}, ...` : names.join(', ');
}

export class IgnoredFields {
  readonly #labels = new Set<string>();
  readonly #log: RateLimitedLog | undefined;

  constructor(private readonly counter?: Counter<'field'>, log?: Logger) {
    this.#log = log ? new RateLimitedLog(log) : undefined;
  }

  /** The metric label of a field: its name when plain, short and one of the first FIELD_LABELS_MAX seen; else `other`. */
  label(name: string): string {
    if (this.#labels.has(name)) return name;
    if (name.length > FIELD_LABEL_MAX || !PLAIN.test(name) || this.#labels.size >= FIELD_LABELS_MAX) return 'other';
    this.#labels.add(name);
    return name;
  }

  /** Names `fields` on `res` (the header), counts and logs them; nothing when none. */
  note(route: string, fields: readonly string[], res: ServerResponse): void {
    if (fields.length === 0) return;
    if (!res.headersSent) res.setHeader(IGNORED_FIELDS_HEADER, ignoredHeader(fields));
    if (this.counter) for (const f of fields) this.counter.inc({ field: this.label(f) });
    this.#log?.warn(`ignored:${route}`, { route, fields: fields.slice(0, HEADER_NAMES_MAX).map(headerName) }, 'The following fields were present in the request but ignored (vLLM ignores them too)');
  }
}
