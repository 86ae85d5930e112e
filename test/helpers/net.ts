import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (the OS picks it; the listener is closed before returning). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

/**
 * A local HTTP endpoint on 127.0.0.1 (an OpenAI-compatible stand-in for client tests): `answer` runs once each request's
 * body is read. `close` ends its connections and stops it.
 */
export async function localEndpoint(answer: (rq: IncomingMessage, rs: ServerResponse) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createHttpServer((rq, rs) => {
    rq.resume();
    rq.on('end', () => answer(rq, rs));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
