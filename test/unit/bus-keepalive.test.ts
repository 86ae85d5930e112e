/**
 * The NATS keep-alive against the liveness death window (src/policy/bus-keepalive.ts): the ping period each actor's
 * connection gets from liveness.deadAfterMs, the config's refusal of a window too short for a stale detection plus a
 * reconnect, and, on a real nats-server (test/helpers/nats.ts, its own port) stopped by SIGSTOP, a Bus with the
 * default window's period calls its connection stale well before that window ends.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { BUS_RECONNECT_MS, busPingMs, busStaleMs, deathWindowFits, deathWindowProblem, DEFAULT_BUS_PING_MS, minDeadAfterMs } from '../../src/policy/bus-keepalive.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { as, startNatsServer, type TestNats } from '../helpers/nats.ts';

describe('the keep-alive of the death window', () => {
  it('every window that fits leaves a stale detection and a reconnect inside it', () => {
    for (let d = minDeadAfterMs(); d <= 20_000; d += 50) {
      expect(busStaleMs(busPingMs(d)) + BUS_RECONNECT_MS, `${d}`).toBeLessThan(d);
    }
    expect(deathWindowFits(minDeadAfterMs() - 50)).toBe(false);
    // the default window: a ping every 450 ms, stale within 1.8 s, 600 ms left of 3 s after a reconnect
    expect(busPingMs(3000)).toBe(450);
    expect(DEFAULT_BUS_PING_MS).toBe(450);
  });

  it('config validation refuses a death window a stale connection and its reconnect do not fit in, naming the figures', () => {
    expect(deathWindowProblem(3000)).toBeUndefined();
    expect(() => parseConfig({ liveness: { statusIntervalMs: 100, deadAfterMs: 600, leaseTtlMs: 600 } })).toThrow(
      /liveness\.deadAfterMs: 600 ms must exceed a NATS connection's stale detection \(200 ms: a ping every 50 ms, 4 periods\) plus a reconnect to another node \(600 ms\), 800 ms: .*at least 850 ms/,
    );
    expect(() => parseConfig({ liveness: { statusIntervalMs: 100, deadAfterMs: 850, leaseTtlMs: 600 } })).not.toThrow();
  });
});

describe('a silent NATS server (SIGSTOP)', () => {
  let nats: TestNats | undefined;
  afterAll(async () => {
    if (nats) process.kill(nats.pid, 'SIGCONT');
    await nats?.stop();
  });

  it('a Bus with the default window\'s ping period calls its connection stale before the window less a reconnect', async () => {
    nats = await startNatsServer();
    const bus = await Bus.connect({ servers: [nats.url], name: 'keepalive', ...as('admin'), log: silentLogger(), pingIntervalMs: busPingMs(3000) });
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    const stale = new Promise<number>((resolve) => bus.on('status', (s: { type: string }) => (s.type === 'staleConnection' || s.type === 'disconnect') && resolve(Date.now() - t0)));
    process.kill(nats.pid, 'SIGSTOP');
    const ms = await Promise.race([stale, new Promise<number>((r) => setTimeout(() => r(Infinity), 6000))]);
    process.kill(nats.pid, 'SIGCONT');
    await bus.close().catch(() => {});
    // measured from the stop (a ping period may have just begun): at most BUS_MAX_PING_OUT + 1 periods, and room for a reconnect
    expect(ms).toBeLessThanOrEqual(busStaleMs(busPingMs(3000)) + 250);
    expect(ms + BUS_RECONNECT_MS).toBeLessThan(3000);
  });
});
