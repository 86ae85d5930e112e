/**
 * The relayed stream's credit window across versions (docs/DATAPATH.md "A slow client on the NATS data path"): during a
 * rolling upgrade a gateway and an instance manager may disagree on the window. An instance paces a leg only when its
 * request says its gateway grants (InferenceRequest.relayCredit), and says so on the leg's first chunk
 * (TokenChunk.relayCredit); a gateway grants and bounds only a leg whose first chunk said so. Here the instance's engine
 * stream (actors/instance-manager/engine-stream.ts) runs on a virtual clock over a scripted engine, with no gateway
 * granting anything; and the gateway's leg queue (actors/gateway/relay-flow.ts) takes chunks from an instance that does
 * not pace (its chunks carry no mark).
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { LegReport, TokenChunk, subjects, type LegReport as LegReportT, type WireError } from '../../protocols/index.ts';
import { ChunkQueue } from '../../actors/gateway/chunk-queue.ts';
import { RelayFlow } from '../../actors/gateway/relay-flow.ts';
import { streamFromEngine } from '../../actors/instance-manager/engine-stream.ts';
import { pastCredit, whileNoCredit } from '../../actors/instance-manager/relay-pause.ts';
import { newRunning, type Held, type LegHost, type Running } from '../../actors/instance-manager/running.ts';
import { RELAY_GRANT_LAPSE_MS, RELAY_GRANT_REPEAT_MS, RELAY_HOLD_BYTES, RELAY_WINDOW_BYTES, heldBytesOf } from '../../src/policy/relay-flow.ts';
import type { EngineChunk } from '../../src/engine/engine.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const TEXT = ' word';
const PER = heldBytesOf({ v: 1, id: 'r1', seq: 1, text: TEXT, tokens: 1 });
/** three windows of one-token chunks: a stream far past what a pacing instance publishes without a grant */
const TOKENS = Math.ceil((3 * RELAY_WINDOW_BYTES) / PER);

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** An instance manager's parts the engine stream uses, its engine a script of `tokens` one-token events; nothing grants. */
function instanceStream(paced: boolean) {
  const clock = new ManualClock();
  const published: TokenChunk[] = [];
  const errors: WireError[] = [];
  const outcomes: string[] = [];
  const req = {
    v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'p', inputTokens: 1, maxTokens: TOKENS, arrivalMs: clock.now(), giveUpAtMs: clock.now() + 600_000,
    streamSubject: subjects.stream('r1'), type: 'SS', slo: { ttftMs: 1000, tbtMs: 100 }, ...(paced ? { relayCredit: true } : {}),
  } as unknown as Running['req'];
  const r = newRunning(req, clock.now());
  const running = new Map<string, Running>([['r1', r]]);
  const engine = {
    async *completion(_o: unknown, signal: AbortSignal): AsyncGenerator<EngineChunk> {
      for (let i = 0; i < TOKENS && !signal.aborted; i++) {
        const last = i === TOKENS - 1;
        yield { text: TEXT, tokenIndex: i, ...(last ? { finishReason: 'length' } : {}) };
      }
      yield { text: '', tokenIndex: TOKENS, usage: { promptTokens: 1, completionTokens: TOKENS } };
    },
  };
  const h = {
    id: 'i0', pool: 'p0', clock, running, engine, admitState: new Map(),
    bus: { publish: (_s: string, codec: typeof TokenChunk, c: TokenChunk) => void published.push(codec.decode(codec.encode(c))) },
    log: { warn: () => {}, debug: () => {} },
    config: { engine: { streamCoalesceMs: 0 }, timeouts: {}, emergency: { retryAfterS: 1 } },
    step: () => ({ effects: [] }), clockMhz: () => 0, gpuKind: () => 'emulated', sampleTtft: () => {}, sampleTbt: () => {}, ended: () => {},
    record: (_q: unknown, _t: unknown, outcome: string) => void outcomes.push(outcome),
    finishWithError: (_q: unknown, _s: number, e: WireError) => void errors.push(e),
  } as unknown as LegHost;
  const q: Held = { req, admittedMs: 0 };
  let done = false;
  void streamFromEngine(h, q, r).then(() => (done = true));
  return { clock, r, published, errors, outcomes, done: () => done };
}

/** the turns an engine stream of TOKENS events takes to publish them all (one every RELAY_TURN_CHUNKS events), with room */
async function turns(n = 400): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

describe('an instance whose leg\'s gateway grants no credit (its request without relayCredit)', () => {
  it('streams the whole leg unpaced and never waits: no end at the grant lapse, no mark on its chunks', async () => {
    const s = instanceStream(false);
    await turns();
    // nothing granted, no time passed: all TOKENS published, the done chunk last, recorded ok
    expect(s.done()).toBe(true);
    expect(s.errors).toEqual([]);
    expect(s.outcomes).toEqual(['ok']);
    expect(s.published.reduce((n, c) => n + c.tokens, 0)).toBe(TOKENS);
    expect(s.published.reduce((n, c) => n + heldBytesOf(c), 0)).toBeGreaterThan(2 * RELAY_WINDOW_BYTES);
    expect(s.published.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
    expect(s.published.some((c) => c.relayCredit !== undefined)).toBe(false);
    // its relay-pause logic: past any window, no wait, and a wait asked for returns at once without ending the request
    const r = newRunning({ id: 'r2' } as Running['req'], 0);
    expect(pastCredit(r, 10 * RELAY_WINDOW_BYTES)).toBe(false);
    const clock = new ManualClock();
    let returned = false;
    void whileNoCredit({ id: 'i0', clock, running: new Map([['r2', r]]) } as unknown as LegHost, r, 10 * RELAY_WINDOW_BYTES).then(() => (returned = true));
    await tick();
    clock.advance(RELAY_GRANT_LAPSE_MS);
    await tick();
    expect(returned).toBe(true);
    expect(r.ac.signal.aborted).toBe(false);
  });

  it('with relayCredit: marks its first chunk only, stops at the window, and ends the request when no grant comes', async () => {
    const s = instanceStream(true);
    await turns();
    expect(s.done()).toBe(false);
    const bytes = s.published.reduce((n, c) => n + heldBytesOf(c), 0);
    expect(bytes).toBeGreaterThanOrEqual(RELAY_WINDOW_BYTES);
    expect(bytes).toBeLessThan(RELAY_WINDOW_BYTES + PER);
    expect(s.published[0]!.relayCredit).toBe(true);
    expect(s.published.filter((c) => c.relayCredit !== undefined)).toHaveLength(1);
    s.clock.advance(RELAY_GRANT_LAPSE_MS);
    await turns(20);
    expect(s.done()).toBe(true);
    expect(s.errors).toEqual([expect.objectContaining({ code: 'unavailable', retryable: true })]);
  });
});

describe('a gateway whose leg\'s instance does not pace it (its first chunk without relayCredit)', () => {
  it('sends it no credit report and holds its chunks to the queue\'s chunk bound, not the relay bound', () => {
    const clock = new ManualClock();
    const bus = new VirtualBus(clock);
    const grants: LegReportT[] = [];
    bus.subscribe(subjects.instanceLeg('i0'), LegReport, (g) => void grants.push(g));
    const counters = { relayWaits: 0, relayOverflows: 0 };
    let overflowed = 0;
    const capacity = 8192;
    const q = new ChunkQueue(capacity, clock, new RelayFlow(bus as unknown as Bus, 'r1', clock, counters, () => { overflowed++; }));
    const chunk = (seq: number): TokenChunk => ({ v: 1, id: 'r1', seq, text: TEXT, tokens: 1, instance: 'i0' });
    // the client falls behind: three windows arrive, it takes half of them
    for (let i = 0; i < TOKENS; i++) q.push(chunk(i));
    expect(q.bytes).toBeGreaterThan(RELAY_HOLD_BYTES);
    for (let i = 0; i < TOKENS / 2; i++) expect(q.take()?.seq).toBe(i);
    clock.advance(5 * RELAY_GRANT_REPEAT_MS);
    // a client that keeps up, for four more windows
    for (let i = TOKENS; i < 3 * TOKENS; i++) {
      q.push(chunk(i));
      q.take();
    }
    clock.advance(5 * RELAY_GRANT_REPEAT_MS);
    expect(grants).toEqual([]);
    expect(counters).toEqual({ relayWaits: 0, relayOverflows: 0 });
    expect(overflowed).toBe(0);
    expect(q.failure).toBeNull();
    // the queue's own bound in chunks still holds
    for (let i = 3 * TOKENS; !q.failure; i++) q.push(chunk(i));
    expect(q.failure).toMatchObject({ code: 'mailbox_full', retryable: true });
  });
});
