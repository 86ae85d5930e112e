/**
 * A NATS server that is silent (a host partitioned away or hung: its kernel may still accept the TCP connection, but
 * nothing answers) among a client's servers. Real 3-server cluster; the silent one is a nats-server stopped with
 * SIGSTOP. The first connect does not dial it first (the servers answering are dialled first): it does not wait out
 * the silent server's dial deadline (NATS_DIAL_TIMEOUT_MS, 5 s), and neither does a reconnect after its server died.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { NATS_DIAL_TIMEOUT_MS } from '../../src/runtime/nats-dial.ts';
import { silentLogger } from '../../src/runtime/logger.ts';

let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
const buses: Bus[] = [];
const stopped = new Set<number>();

beforeAll(async () => {
  cluster = await startNatsCluster(3);
}, 60_000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone
    }
  }
  for (const b of buses) await b.close().catch(() => {});
  await cluster?.stop();
});

function silence(i: number): void {
  const pid = cluster.servers[i]!.pid;
  process.kill(pid, 'SIGSTOP');
  stopped.add(pid);
}
function kill(i: number): void {
  process.kill(cluster.servers[i]!.pid, 'SIGKILL');
}
function wake(i: number): void {
  const pid = cluster.servers[i]!.pid;
  process.kill(pid, 'SIGCONT');
  stopped.delete(pid);
}

async function connect(servers: string[]): Promise<Bus> {
  const b = await Bus.connect({ servers, noRandomize: true, name: 'silent-server', ...as('admin'), log: silentLogger() });
  buses.push(b);
  return b;
}

describe('a silent NATS server in the list', () => {
  it('the first connect goes to a server that answers, without waiting out the silent one listed first', async () => {
    const [s0, s1, s2] = cluster.urls as [string, string, string];
    silence(0);
    try {
      const t0 = Date.now();
      const b = await connect([s0, s1, s2]);
      const tookMs = Date.now() - t0;
      expect([s1, s2].map((u) => new URL(u).port)).toContain(b.nc.getServer().split(':').pop());
      await b.nc.flush();
      expect(tookMs, 'connected without dialling the silent server first').toBeLessThan(NATS_DIAL_TIMEOUT_MS / 2);
    } finally {
      wake(0);
    }
  }, 30_000);

  it('a reconnect after the server dies goes to a server that answers, without waiting out the silent one next in the list', async () => {
    const [s0, s1, s2] = cluster.urls as [string, string, string];
    const b = await connect([s0, s1, s2]);
    expect(b.nc.getServer()).toBe(new URL(s0).host);
    silence(1);
    try {
      const times: Record<string, number> = {};
      const reconnected = new Promise<void>((resolve) => {
        b.on('status', (st: { type: string }) => {
          if (st.type === 'disconnect' || st.type === 'reconnect') times[st.type] ??= Date.now();
          if (st.type === 'reconnect') resolve();
        });
      });
      kill(0);
      await reconnected;
      const tookMs = times.reconnect! - times.disconnect!;
      // nats.js dials the servers in the list's order: s0 (refused at once), then s1, which holds the attempt
      expect(b.nc.getServer(), 'reconnected to the server that answers').toBe(new URL(s2).host);
      await b.nc.flush();
      expect(tookMs, 'reconnected without dialling the silent server').toBeLessThan(NATS_DIAL_TIMEOUT_MS / 2);
    } finally {
      wake(1);
    }
  }, 30_000);
});
