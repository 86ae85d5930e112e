/**
 * Which NATS servers to dial first. nats.js tries the servers of a connection one at a time, and one that is
 * silent (a host partitioned away or hung: packets dropped, not refused; a stopped process whose kernel still
 * accepts the TCP connection) holds the attempt until its deadline. Before a first connect, every server of the
 * list is asked at once for the INFO line a nats-server sends as soon as it accepts a connection; the servers
 * that answered are dialled first, the others after them. The probe ends shortly after the first answer (as long
 * again as that one took, at least GRACE_MS, so the other live servers of a cluster answer too and clients still
 * spread over them), or at its deadline (none answered: the order is left as given).
 */
import { connect as tcpConnect, type Socket } from 'node:net';

/**
 * Deadline of one connection attempt to one NATS server, ms, at the first connect and at each reconnect (nats.js's
 * `timeout`); a silent server holds an attempt this long before the next server is tried. Not shorter: in
 * `dynamollm chaos` on a loaded 2-core VM, 2 s failed attempts at live servers whose answer a CPU-starved client
 * had not read in time (the server closing them with "Authentication Timeout"), and reconnects took 2 s p50 / 5-11 s
 * p90 instead of 0.5-1.1 s / 1.2-1.7 s. The first connect does not wait for it (answeringFirst).
 */
export const NATS_DIAL_TIMEOUT_MS = 5000;

/** after the first answer, the probe waits at least this long for the others, ms. */
const GRACE_MS = 25;

/** host and port of a server URL as nats.js reads it (`nats://h:p`, `tls://h:p`, `h:p`, `h`; default port 4222). */
export function hostPort(url: string): { host: string; port: number } | undefined {
  const m = /^(?:[a-z]+:\/\/)?(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/i.exec(url.trim());
  if (!m) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 4222 };
}

/**
 * `servers` with those answering first: the ones that sent their INFO line by the end of the probe (in the order
 * given when `keepOrder`, else shuffled, which spreads clients over a cluster as nats.js's own randomizing does),
 * then the rest in the order given. With `keepOrder` the probe ends as soon as the first server of the list that
 * did not refuse has answered (the order stays as given). One server, or none answering within `ms`: as given.
 */
export async function answeringFirst(servers: readonly string[], ms: number, keepOrder = false): Promise<string[]> {
  if (servers.length < 2) return [...servers];
  const state = servers.map((): 'pending' | 'answered' | 'failed' => 'pending');
  const sockets: Socket[] = [];
  const t0 = Date.now();
  await new Promise<void>((done) => {
    let timer = setTimeout(done, ms);
    let graced = false;
    const settle = () => {
      clearTimeout(timer);
      done();
    };
    const decided = (i: number, how: 'answered' | 'failed') => {
      if (state[i] !== 'pending') return;
      state[i] = how;
      if (!state.includes('pending')) return settle();
      if (keepOrder && state.find((x) => x !== 'failed') === 'answered') return settle();
      if (how === 'answered' && !graced) {
        // wait as long again as the first answer took (at least GRACE_MS) for the others
        graced = true;
        const took = Date.now() - t0;
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, Math.min(ms - took, Math.max(GRACE_MS, took))));
      }
    };
    servers.forEach((url, i) => {
      const hp = hostPort(url);
      if (!hp) return decided(i, 'failed');
      const s = tcpConnect({ host: hp.host, port: hp.port });
      sockets.push(s);
      s.once('data', (d: Buffer) => decided(i, d.subarray(0, 4).toString('latin1').toUpperCase() === 'INFO' ? 'answered' : 'failed'));
      s.once('error', () => decided(i, 'failed'));
      s.once('close', () => decided(i, 'failed'));
    });
  });
  for (const s of sockets) s.destroy();
  const first = servers.filter((_, i) => state[i] === 'answered');
  if (!first.length) return [...servers];
  if (!keepOrder) shuffle(first);
  return [...first, ...servers.filter((_, i) => state[i] !== 'answered')];
}

function shuffle(xs: string[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
}
