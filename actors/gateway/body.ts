/**
 * A request body read with a size limit (the gateway's HTTP layer, server.ts): past it a 413, not retryable.
 */
import type { IncomingMessage } from 'node:http';
import { HttpError } from './openai.ts';

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
