/** The gateway's request ids: 96 random bits each (base64url), unique across gateway replicas and restarts. */
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
