/**
 * A streaming HTTP client that sends its request and reads nothing (its socket paused) until `read()`: the slow
 * client of the gateway's flow control tests (test/unit/gateway-slow-client.test.ts: the direct data path;
 * test/integration/gateway-nats-slow-client.test.ts: the NATS data path).
 */
import { connect } from 'node:net';

/** A client that POSTs `body` to `path` on `port` (connection: close) and reads nothing until `read()`. */
export function slowClient(port: number, body: string, path = '/v1/completions') {
  const s = connect(port, '127.0.0.1');
  s.pause();
  // the reads kept as they come and joined once per body(): a copy of all so far per read would make the client's
  // own CPU grow with the square of the stream, and a client busy copying reads too late for the gateway's stall bound
  const reads: Buffer[] = [];
  const ended = new Promise<void>((resolve) => s.on('close', () => resolve()));
  s.on('error', () => undefined);
  s.on('connect', () => s.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`));
  return {
    socket: s,
    read: () => {
      s.on('data', (d: Buffer) => void reads.push(d));
      s.resume();
    },
    ended,
    /** the response's body so far, its chunked framing removed. */
    body: (): string => {
      const raw = Buffer.concat(reads);
      return dechunk(raw.subarray(raw.indexOf('\r\n\r\n') + 4));
    },
  };
}

/** An HTTP/1.1 chunked body's bytes without their framing (up to the last whole chunk or the terminal one). */
export function dechunk(framed: Buffer): string {
  let b = framed, out = '';
  while (b.length > 0) {
    const nl = b.indexOf('\r\n');
    const n = parseInt(b.subarray(0, nl).toString(), 16);
    if (!(n > 0)) break;
    out += b.subarray(nl + 2, nl + 2 + n).toString();
    b = b.subarray(nl + 2 + n + 2);
  }
  return out;
}

/** The SSE events of a body (its `data: {...}` events, parsed). */
export function sseEvents<T = { choices: { index: number; text: string; finish_reason: string | null }[]; error?: unknown }>(body: string): T[] {
  return body.split('\n\n').filter((x) => x.startsWith('data: {')).map((x) => JSON.parse(x.slice(6)) as T);
}
