/**
 * A TCP proxy in front of a real nats-server that can hold back what the server sends, as a slow or congested
 * link does: a client's writes reach the server (and are applied) while their answers arrive late (held bytes are
 * delivered in order when the stall ends); or cut every connection with a request in flight, its answer lost.
 */
import { createServer, connect, type Socket } from 'node:net';

export interface StallProxy {
  /** nats://127.0.0.1:<port> of the proxy. */
  url: string;
  /** hold back everything the server sends to the clients for `ms` from now. */
  stall(ms: number): void;
  /**
   * hold back what the server sends for `ms` as soon as a client sends bytes containing `pattern` (e.g. the
   * subject of a write): that write reaches the server, its answer comes `ms` late. Once.
   */
  stallAfter(pattern: string, ms: number): Promise<void>;
  /**
   * as soon as a client sends bytes containing `pattern`: that request reaches the server, nothing the server
   * sends comes back, and `afterMs` later every connection through the proxy is cut (a NATS node or link dying
   * with a request in flight: its answer is lost, the client reconnects). Once.
   */
  cutAfter(pattern: string, afterMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startStallProxy(target: string): Promise<StallProxy> {
  const { hostname, port } = new URL(target);
  const pairs = new Set<{ c: Socket; u: Socket }>();
  let heldUntil = 0;
  let held: { c: Socket; data: Buffer }[] = [];
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  let trigger: { pattern: string; ms: number; cut: boolean; fired: () => void } | undefined;
  let dropping = false;

  const flush = () => {
    flushTimer = undefined;
    const out = held;
    held = [];
    for (const { c, data } of out) if (!c.destroyed) c.write(data);
  };
  const stall = (ms: number) => {
    heldUntil = Date.now() + ms;
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = setTimeout(flush, ms);
  };

  const server = createServer((c) => {
    const u = connect(Number(port), hostname);
    const pair = { c, u };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
    c.on('data', (d: Buffer) => {
      u.write(d);
      if (trigger && d.includes(trigger.pattern)) {
        const t = trigger;
        trigger = undefined;
        if (t.cut) {
          dropping = true;
          setTimeout(() => {
            for (const x of [...pairs]) {
              x.c.destroy();
              x.u.destroy();
            }
            dropping = false;
          }, t.ms);
        } else stall(t.ms);
        t.fired();
      }
    });
    u.on('data', (d: Buffer) => {
      if (dropping) return;
      if (Date.now() < heldUntil || held.length) held.push({ c, data: d });
      else c.write(d);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const p = (server.address() as { port: number }).port;
  return {
    url: `nats://127.0.0.1:${p}`,
    stall,
    stallAfter: (pattern, ms) => new Promise<void>((fired) => {
      trigger = { pattern, ms, cut: false, fired };
    }),
    cutAfter: (pattern, afterMs = 100) => new Promise<void>((fired) => {
      trigger = { pattern, ms: afterMs, cut: true, fired };
    }),
    close: async () => {
      if (flushTimer) clearTimeout(flushTimer);
      for (const { c, u } of pairs) {
        c.destroy();
        u.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
