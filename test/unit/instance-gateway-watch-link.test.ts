/**
 * The instance manager's watch of the gateways streaming its direct legs (actors/instance-manager/gateway-watch.ts)
 * against its own NATS outage: while its link is down it hears no gateway, and that silence is its own. No leg ends
 * during the outage, and back, the outage is not counted in any gateway's silence. On a virtual clock, the link's
 * statuses emitted as the Bus emits them (test/helpers/virtual-bus.ts).
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { GatewayWatch, GONE_AFTER_MS } from '../../actors/instance-manager/gateway-watch.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import type { Heartbeat } from '../../protocols/index.ts';

const START = 1_700_000_000_000;
const GRACE_MS = 10_000;
const beat = (clock: ManualClock): Heartbeat => ({ v: 1, kind: 'gateway', id: 'gw', startedMs: 1, state: 'running', seq: 0, sentMs: clock.now() }) as unknown as Heartbeat;

function watched() {
  const clock = new ManualClock(START);
  const bus = new VirtualBus(clock);
  const w = new GatewayWatch(clock, GRACE_MS);
  w.start(bus as unknown as Bus);
  w.observe(beat(clock));
  const out = { gone: false };
  w.watch({ id: 'gw', startedMs: 1 }, () => (out.gone = true));
  /** `ms` on the clock, the watch's checks firing as they come */
  const pass = (ms: number) => {
    for (let t = 0; t < ms; t += 100) clock.advance(100);
  };
  return { clock, bus, w, out, pass };
}

describe('GatewayWatch and its own link', () => {
  it('an outage of 14 s of its own ends no leg of a live gateway; back, the outage does not count as the gateway\'s silence', () => {
    const { bus, out, pass, w } = watched();
    pass(1000);
    bus.emit('status', { type: 'staleConnection' });
    bus.emit('status', { type: 'disconnect' });
    pass(14_000);
    expect(out.gone).toBe(false);
    bus.emit('status', { type: 'reconnect' });
    // the outage is not the gateway's silence: the 1 s before it and the time since the return are
    pass(GONE_AFTER_MS + GRACE_MS - 1000 - 500);
    expect(out.gone).toBe(false);
    pass(1000);
    expect(out.gone).toBe(true);
    w.stop();
  });

  it('with its link up, a silent gateway is gone after the bound', () => {
    const { out, pass, w } = watched();
    pass(GONE_AFTER_MS + GRACE_MS + 600);
    expect(out.gone).toBe(true);
    w.stop();
  });
});
