/**
 * A request body read with a size limit (the gateway's HTTP layer, server.ts): past it a 413, not retryable; and its
 * JSON value (parseJsonBody).
 */
import type { IncomingMessage } from 'node:http';
import { HttpError, invalidRequest } from './openai.ts';
import { keepIdsJson } from '../../src/engine/prompt-json.ts';

/**
 * vLLM's validate_json_request: the media type of a JSON route's body must be exactly `application/json` (any case,
 * parameters allowed), else vLLM's 400 of a request that fails validation (thrown).
 */
export function requireJsonContentType(contentType: string | undefined): void {
  const media = (contentType ?? '').toLowerCase().split(';', 1)[0]!.trim();
  if (media !== 'application/json') throw invalidRequest("Unsupported Media Type: Only 'application/json' is allowed");
}

/** A refused (413) body is read and discarded up to this multiple of the limit, then the socket is closed. */
const DISCARD_FACTOR = 16;

/** The whole body, or a 413 HttpError once it passes `limit` bytes (declared or sent). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (msg: string) => new HttpError(413, msg, 'invalid_request_error', 'request_too_large');
  // A refused body is still read and thrown away (up to DISCARD_FACTOR x the limit) before the 413 goes out:
  // answering while the client is still sending makes its socket fail with EPIPE instead of showing the 413.
  const discardThen = (err: HttpError): Promise<never> =>
    new Promise((_, reject) => {
      let seen = 0;
      const cap = DISCARD_FACTOR * limit;
      const finish = () => reject(err);
      req.removeAllListeners('data');
      req.on('data', (c: Buffer) => {
        seen += c.length;
        if (seen > cap) {
          req.removeAllListeners('data');
          req.pause();
          finish();
        }
      });
      req.once('end', finish);
      req.once('error', finish);
      req.resume();
    });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return discardThen(tooLarge(`request body of ${declared} bytes exceeds the limit of ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        discardThen(tooLarge(`request body exceeds the limit of ${limit} bytes`)).catch(reject);
        return;
      }
      parts.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(Buffer.concat(parts));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
  });
}

const PROMPT_IDS = '"prompt":[';
/**
 * Token-id prompts shorter than this are not kept: JSON.stringify writes a few ids in less time than keepIdsJson's
 * checks and the payload's splice take (an 8-id prompt: ~1.3 us parsed and written against ~3.3 us kept); a long
 * prompt's ids are the engine request's bulk (2,000 ids: ~6 KB) and are kept.
 */
export const KEEP_MIN_IDS = 64;

/**
 * JSON.parse(text), and a token-id prompt's JSON text kept with the array it gave (src/engine/prompt-json.ts
 * keepIdsJson), for the engine's request: where the body's `prompt` is an array of KEEP_MIN_IDS ids or more and the text spells `"prompt"` once,
 * as `"prompt":[`, with no `\u` escape (so no other spelling of a key `prompt`), that one spelling is the body's own
 * key, and its array runs to the first `]` when keepIdsJson finds only digits and commas in it.
 */
export function parseJsonBody(text: string): unknown {
  const body: unknown = JSON.parse(text);
  const prompt = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).prompt : undefined;
  if (!Array.isArray(prompt) || prompt.length < KEEP_MIN_IDS) return body;
  const at = text.indexOf(PROMPT_IDS);
  if (at < 0 || text.indexOf('"prompt"') !== at || text.indexOf('"prompt"', at + 1) >= 0 || text.indexOf('\\u') >= 0) return body;
  const open = at + PROMPT_IDS.length - 1;
  const close = text.indexOf(']', open);
  if (close > open) keepIdsJson(prompt as number[], text, open, close);
  return body;
}
