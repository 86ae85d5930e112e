/**
 * The relayed stream's credit window (src/policy/relay-flow.ts; docs/DATAPATH.md "A slow client on the NATS data path"),
 * each side on a virtual clock: the gateway's leg queue and its grants over an in-memory bus (actors/gateway/relay-flow.ts),
 * and the instance's wait for a grant (actors/instance-manager/relay-pause.ts). The integration test
 * (test/integration/gateway-nats-slow-client.test.ts) runs both over a real nats-server.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { DynError, LegReport, subjects, type LegReport as LegReportT, type TokenChunk } from '../../protocols/index.ts';
import { ChunkQueue } from '../../actors/gateway/chunk-queue.ts';
import { RelayFlow } from '../../actors/gateway/relay-flow.ts';
import { relayCredit, whileNoCredit } from '../../actors/instance-manager/relay-pause.ts';
import type { LegHost, Running } from '../../actors/instance-manager/running.ts';
import { newRunning } from '../../actors/instance-manager/running.ts';
import { RELAY_GRANT_LAPSE_MS, RELAY_GRANT_REPEAT_MS, RELAY_HOLD_BYTES, RELAY_WINDOW_BYTES, heldBytesOf, relayGrant } from '../../src/policy/relay-flow.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

/** a chunk of leg r1 from instance i0; its first (seq 0) says the instance paces the leg (`paced`, as a pacing instance's). */
const chunk = (seq: number, paced = true): TokenChunk => ({ v: 1, id: 'r1', seq, text: ' word', tokens: 1, instance: 'i0', ...(paced && seq === 0 ? { relayCredit: true } : {}) });
const PER = heldBytesOf(chunk(1));

function gatewayLeg() {
  const clock = new ManualClock();
  const bus = new VirtualBus(clock);
  const grants: LegReportT[] = [];
  bus.subscribe(subjects.instanceLeg('i0'), LegReport, (r) => void grants.push(r));
  const counters = { relayWaits: 0, relayOverflows: 0 };
  let overflowed = 0;
  const q = new ChunkQueue(1 << 20, clock, new RelayFlow(bus as unknown as Bus, 'r1', clock, counters, () => { overflowed++; }));
  return { clock, q, grants, counters, overflowed: () => overflowed };
}

describe('the gateway side', () => {
  it('grants a window past what the client took, once per half window, and nothing while the client takes nothing', () => {
    expect(relayGrant(0, RELAY_WINDOW_BYTES)).toBeUndefined();
    expect(relayGrant(RELAY_WINDOW_BYTES / 2 - 1, RELAY_WINDOW_BYTES)).toBeUndefined();
    expect(relayGrant(RELAY_WINDOW_BYTES / 2, RELAY_WINDOW_BYTES)).toBe(RELAY_WINDOW_BYTES * 1.5);
    const { q, grants, counters } = gatewayLeg();
    // a client that keeps up: every chunk taken as it comes, 4 windows' worth
    const n = Math.ceil((4 * RELAY_WINDOW_BYTES) / PER);
    for (let i = 0; i < n; i++) {
      q.push(chunk(i));
      expect(q.take()?.seq).toBe(i);
    }
    expect(grants.every((g) => g.phase === 'credit' && g.id === 'r1')).toBe(true);
    // one grant each time half a window more was taken (at the first chunk past it): a window past what was taken then
    const k = Math.ceil(RELAY_WINDOW_BYTES / 2 / PER);
    expect(grants.map((g) => g.creditBytes)).toEqual(Array.from({ length: Math.floor(n / k) }, (_, j) => (j + 1) * k * PER + RELAY_WINDOW_BYTES));
    expect(counters.relayWaits).toBe(0);
  });

  it('repeats its grant while a leg past a window is silent, and ends a leg held past its bound (retryable, cancelled)', async () => {
    const { clock, q, grants, counters, overflowed } = gatewayLeg();
    // the instance uses its whole window; the client takes nothing
    const w = Math.ceil(RELAY_WINDOW_BYTES / PER);
    for (let i = 0; i < w; i++) q.push(chunk(i));
    expect(counters.relayWaits).toBe(1);
    expect(q.bytes).toBe(w * PER);
    expect(grants).toHaveLength(0);
    clock.advance(RELAY_GRANT_REPEAT_MS);
    expect(grants).toHaveLength(1);
    expect(grants[0]!.creditBytes).toBe(RELAY_WINDOW_BYTES);
    clock.advance(3 * RELAY_GRANT_REPEAT_MS);
    expect(grants).toHaveLength(4);
    // an instance that does not wait: past RELAY_HOLD_BYTES the leg ends after what it holds
    let i = w;
    while (overflowed() === 0) q.push(chunk(i++));
    expect(q.bytes).toBeLessThanOrEqual(RELAY_HOLD_BYTES);
    expect(counters.relayOverflows).toBe(1);
    for (let k = 0; k < i - 1; k++) expect(q.take()?.seq).toBe(k);
    const e = await q.next(1000).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DynError);
    expect(e).toMatchObject({ code: 'mailbox_full', retryable: true });
    // no grant after the leg ended
    clock.advance(5 * RELAY_GRANT_REPEAT_MS);
    expect(grants).toHaveLength(4);
  });
});

function instance() {
  const clock = new ManualClock();
  const running = new Map<string, Running>();
  const h = { id: 'i0', clock, running } as unknown as LegHost;
  const r = newRunning({ id: 'r1', relayCredit: true } as Running['req'], clock.now());
  running.set('r1', r);
  return { clock, h, r };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('the instance side', () => {
  it('waits at its grant until a larger one, and not at a smaller one', async () => {
    const { clock, h, r } = instance();
    let done = false;
    void whileNoCredit(h, r, RELAY_WINDOW_BYTES).then(() => (done = true));
    await tick();
    clock.advance(RELAY_GRANT_LAPSE_MS - 1);
    await tick();
    expect(done).toBe(false);
    // the grant repeated (no larger): still waiting, and the lapse counts from it
    expect(relayCredit(h, { v: 1, id: 'r1', phase: 'credit', creditBytes: RELAY_WINDOW_BYTES }).ok).toBe(true);
    clock.advance(RELAY_GRANT_LAPSE_MS - 1);
    await tick();
    expect(done).toBe(false);
    relayCredit(h, { v: 1, id: 'r1', phase: 'credit', creditBytes: 2 * RELAY_WINDOW_BYTES });
    await tick();
    expect(done).toBe(true);
    expect(r.ac.signal.aborted).toBe(false);
    // a grant for a request it does not relay
    expect(relayCredit(h, { v: 1, id: 'nope', phase: 'credit', creditBytes: 1 }).ok).toBe(false);
  });

  it('ends the request when no grant comes for the lapse (its gateway gone), and stops waiting at a Cancel', async () => {
    const a = instance();
    let done = false;
    void whileNoCredit(a.h, a.r, RELAY_WINDOW_BYTES).then(() => (done = true));
    await tick();
    a.clock.advance(RELAY_GRANT_LAPSE_MS);
    await tick();
    expect(done).toBe(true);
    expect(a.r.ac.signal.reason).toMatchObject({ code: 'unavailable', retryable: true });
    const b = instance();
    let ended = false;
    void whileNoCredit(b.h, b.r, RELAY_WINDOW_BYTES).then(() => (ended = true));
    await tick();
    b.r.ac.abort(new DynError('cancelled', 'client disconnected', { retryable: false }));
    await tick();
    expect(ended).toBe(true);
  });
});
