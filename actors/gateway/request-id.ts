/**
 * The gateway's request ids: 96 random bits each (base64url), unique across gateway replicas and restarts; and the id a
 * response names, the client's when it gave one.
 */
import { randomBytes } from 'node:crypto';

/** random bytes for request ids, drawn 256 ids at a time (one call to the CSPRNG per 256 requests, same 96 bits each). */
let idPool = Buffer.alloc(0);
let idAt = 0;
export function newRequestId(): string {
  if (idAt + 12 > idPool.length) {
    idPool = randomBytes(12 * 256);
    idAt = 0;
  }
  idAt += 12;
  return idPool.toString('base64url', idAt - 12, idAt);
}

/**
 * The id a response names after its `cmpl-` / `chatcmpl-` prefix, as vLLM's _base_request_id: the client's X-Request-Id
 * header (empty included), else the body's `request_id` (an empty one is none), else the gateway's request id `id`. The cluster routes, journals, migrates and
 * records by `id` alone (its engines get `id` as their x-request-id), so two clients that send the same id never meet
 * inside it.
 */
export function responseIdOf(header: string | string[] | undefined, bodyId: string | undefined, id: string): string {
  return (Array.isArray(header) ? header[0] : header) ?? (bodyId || id);
}

/** A value Node writes as a header (no control character, nothing past U+00FF). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The x-request-id response header: the response's id (responseIdOf), or the gateway's request id `id` where that is no
 * header value (a body request_id with a control character or a character past U+00FF).
 */
export function requestIdHeader(responseId: string, id: string): string {
  return HEADER_VALUE.test(responseId) ? responseId : id;
}
