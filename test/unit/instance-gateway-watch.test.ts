/**
 * The instance's watch of the gateway processes streaming its direct legs (actors/instance-manager/gateway-watch.ts),
 * on a manual clock: a leg ends once its own gateway process has been silent for GONE_AFTER_MS plus the resume grace;
 * another process beating under the same id (the replica's standby, serving now) does not keep it; a process never
 * heard of ends nothing; an unwatched leg (ended by its report or a resume) is left alone.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { GONE_AFTER_MS, GatewayWatch, gatewayGone, watchLeg } from '../../actors/instance-manager/gateway-watch.ts';
import type { Heartbeat } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const GRACE = 10_000;
const beat = (id: string, startedMs: number, seq: number): Heartbeat => ({ v: 1, kind: 'gateway', id, seq, startedMs, sentMs: T0, state: 'running', load: { queued: 0, running: 0 } });

describe('gateway watch', () => {
  it('ends a leg once its gateway process is silent past the lapse and the grace; the standby beating under the same id does not keep it', () => {
    const clock = new ManualClock(T0);
    const w = new GatewayWatch(clock, GRACE);
    const serving = { id: 'gw-0', startedMs: T0 - 60_000 };
    const standby = { id: 'gw-0', startedMs: T0 - 30_000 };
    w.observe(beat(serving.id, serving.startedMs, 1));
    const ended: string[] = [];
    w.watch(serving, () => ended.push('a'));
    // the serving process dies now; its standby takes the port and beats every second under the same id
    for (let t = 1000; t <= GONE_AFTER_MS + GRACE; t += 1000) {
      clock.advance(1000);
      w.observe(beat(standby.id, standby.startedMs, t));
      w.check();
    }
    expect(ended).toEqual([]);
    clock.advance(1000);
    w.check();
    expect(ended).toEqual(['a']);
    // once only
    clock.advance(1000);
    w.check();
    expect(ended).toEqual(['a']);
  });

  it('a leg whose gateway beats on, or was never heard of, or was unwatched, is not ended', () => {
    const clock = new ManualClock(T0);
    const w = new GatewayWatch(clock, GRACE);
    const ended: string[] = [];
    w.observe(beat('gw-1', T0, 1));
    w.watch({ id: 'gw-1', startedMs: T0 }, () => ended.push('alive'));
    w.watch({ id: 'gw-9', startedMs: T0 }, () => ended.push('unknown'));
    w.observe(beat('gw-2', T0, 1));
    const unwatch = w.watch({ id: 'gw-2', startedMs: T0 }, () => ended.push('unwatched'));
    unwatch();
    for (let t = 0; t < 60; t++) {
      clock.advance(1000);
      w.observe(beat('gw-1', T0, t + 2));
      w.check();
    }
    expect(ended).toEqual([]);
    expect(gatewayGone(undefined, T0 + 3_600_000, GRACE)).toBe(false);
  });

  it('watchLeg aborts the leg as a retryable timeout, and watches a leg once', () => {
    const clock = new ManualClock(T0);
    const w = new GatewayWatch(clock, GRACE);
    w.observe(beat('gw-0', T0, 1));
    const leg: { ac: AbortController; unwatchGateway?: () => void } = { ac: new AbortController() };
    watchLeg(w, leg, { id: 'gw-0', startedMs: T0 });
    const first = leg.unwatchGateway;
    watchLeg(w, leg, { id: 'gw-0', startedMs: T0 });
    expect(leg.unwatchGateway).toBe(first);
    clock.advance(GONE_AFTER_MS + GRACE + 1);
    w.check();
    expect(leg.ac.signal.aborted).toBe(true);
    expect(leg.ac.signal.reason).toMatchObject({ code: 'timeout', retryable: true });
  });
});
