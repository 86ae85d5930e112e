/**
 * A frozen engine (docs/DATAPATH.md "A hung engine"):
 * - an engine stream's idle deadline (src/policy engine-liveness.ts engineIdleBounds; src/engine/client.ts): an
 *   engine that goes silent mid-stream or before its first token ends the call with a retryable
 *   EngineStalledError within the bound, on the node:http client (the instance manager's) and on the lean
 *   client's pushed read (the gateway's direct read), not at the call's 60-s deadline; an engine that keeps
 *   sending slower than the first-token bound but faster than the next-token bound is not cut;
 * - the instance manager's health watch (actors/instance-manager/engine-health.ts) on the virtual clock: a
 *   silent /health is declared hung after `misses` probes, once per process; a healthy one never; tokens
 *   flowing skip the probes; a late answer of a killed process counts for nothing.
 */
import { createServer, Agent, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Pool } from '../../src/engine/http1.ts';
import { streamCompletionBatches, streamCompletionPush, type EngineTarget } from '../../src/engine/client.ts';
import type { EngineChunk, EngineCompletionRequest } from '../../src/engine/engine.ts';
import { EngineStalledError, EngineStreamError } from '../../src/engine/errors.ts';
import { DEFAULT_ENGINE_HEALTH, DEFAULT_ENGINE_IDLE, engineIdleBounds, healthProbeDue, healthProbed, newHealthWatch } from '../../src/policy/engine-liveness.ts';
import { EngineHealth } from '../../actors/instance-manager/engine-health.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const event = (i: number) => `data: ${JSON.stringify({ id: 'c', object: 'text_completion', choices: [{ index: 0, text: ` w${i}`, finish_reason: null }] })}\n\n`;

/**
 * An engine that sends its first event after `firstMs`, then `tokens - 1` more `everyMs` apart, then nothing more
 * (the connection stays open: a frozen engine), or [DONE] (`thenDone`).
 */
async function engine(tokens: number, everyMs: number, thenDone = false, firstMs = everyMs): Promise<number> {
  const srv = createServer((req, res: ServerResponse) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i < tokens) {
        res.write(event(i++));
        setTimeout(next, everyMs);
      } else if (thenDone) res.end('data: [DONE]\n\n');
    };
    if (tokens > 0) setTimeout(next, firstMs);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return (srv.address() as AddressInfo).port;
}

const req = (idle?: { firstMs: number; nextMs: number }): EngineCompletionRequest => ({ model: 'm', prompt: 'p', maxTokens: 100, timeoutMs: 60_000, ...(idle ? { idle } : {}) });
const classify = (e: unknown) => new EngineStreamError(`broke: ${(e as Error).message}`);

/** Reads the stream with the node:http client (`lean`: the gateway's pushed read); its tokens, its error and how long it took. */
async function read(port: number, r: EngineCompletionRequest, lean: boolean): Promise<{ tokens: number; err: unknown; ms: number }> {
  const t0 = performance.now();
  let tokens = 0;
  const count = (b: EngineChunk[]) => void (tokens += b.filter((c) => c.text !== '').length);
  const base = { host: '127.0.0.1', port, defaultTimeoutMs: 60_000 };
  try {
    if (lean) await streamCompletionPush({ ...base, pool: new Http1Pool() }, r, undefined, classify, count);
    else for await (const b of streamCompletionBatches({ ...base, agent: new Agent({ keepAlive: true }) } as EngineTarget, r, undefined, classify)) count(b);
    return { tokens, err: undefined, ms: performance.now() - t0 };
  } catch (err) {
    return { tokens, err, ms: performance.now() - t0 };
  }
}

describe('engine idle deadline (policy)', () => {
  it('derives the bounds from the SLO with floors', () => {
    // defaults: first token max(30 s, 20 x TTFT SLO), next max(10 s, 100 x TBT SLO)
    expect(engineIdleBounds({ ttftMs: 250, tbtMs: 100 }, { ttftMs: 2000, tbtMs: 100 })).toEqual({ firstMs: 30_000, nextMs: 10_000 });
    expect(engineIdleBounds({ ttftMs: 2000, tbtMs: 200 }, { ttftMs: 2000, tbtMs: 100 })).toEqual({ firstMs: 40_000, nextMs: 20_000 });
    // no SLO (not classified): the fallback's
    expect(engineIdleBounds(undefined, { ttftMs: 3000, tbtMs: 150 }, DEFAULT_ENGINE_IDLE)).toEqual({ firstMs: 60_000, nextMs: 15_000 });
    expect(engineIdleBounds({ ttftMs: 100, tbtMs: 10 }, { ttftMs: 0, tbtMs: 0 }, { firstTokenMultiple: 4, firstTokenFloorMs: 100, nextTokenMultiple: 3, nextTokenFloorMs: 20 })).toEqual({ firstMs: 400, nextMs: 30 });
  });
});

describe('engine idle deadline (client)', () => {
  for (const lean of [false, true]) {
    const which = lean ? 'the gateway\'s pushed read' : 'the node:http client';
    it(`${which}: an engine silent after 3 tokens ends the call with a retryable EngineStalledError within the next-token bound`, async () => {
      const port = await engine(3, 20);
      const r = await read(port, req({ firstMs: 5000, nextMs: 400 }), lean);
      expect(r.err).toBeInstanceOf(EngineStalledError);
      expect((r.err as EngineStalledError).retryable).toBe(true);
      expect(r.tokens).toBe(3);
      // 3 x 20 ms of tokens + 400 ms of silence; far from the first-token bound and the 60-s deadline
      expect(r.ms).toBeGreaterThanOrEqual(390);
      expect(r.ms).toBeLessThan(3000);
    }, 10_000);

    it(`${which}: an engine that never sends a token is cut at the first-token bound`, async () => {
      const port = await engine(0, 0);
      const r = await read(port, req({ firstMs: 500, nextMs: 100 }), lean);
      expect(r.err).toBeInstanceOf(EngineStalledError);
      expect(r.tokens).toBe(0);
      expect(r.ms).toBeGreaterThanOrEqual(490);
      expect(r.ms).toBeLessThan(3000);
    }, 10_000);
  }

  it('a slow first token (past the next-token bound, within the first-token bound) and steady tokens are not cut', async () => {
    // first event after 600 ms (past nextMs: only the first-token bound applies before it), then every 100 ms
    const port = await engine(6, 100, true, 600);
    const r = await read(port, req({ firstMs: 1500, nextMs: 300 }), false);
    expect(r.err).toBeUndefined();
    expect(r.tokens).toBe(6);
  }, 10_000);
});

describe('engine health watch (policy)', () => {
  const s = { intervalMs: 1000, deadlineMs: 500, misses: 3 };
  it('probes at the interval unless tokens came within it; hung after `misses` failures in a row', () => {
    let w = newHealthWatch();
    expect(healthProbeDue(w, true, 0, undefined, s)).toBe(true);
    expect(healthProbeDue(w, false, 0, undefined, s)).toBe(false); // not serving (restarting, sleeping)
    expect(healthProbeDue(w, true, 5000, 4500, s)).toBe(false); // tokens 500 ms ago
    w = { ...w, probing: true, lastProbeMs: 0 };
    expect(healthProbeDue(w, true, 2000, undefined, s)).toBe(false); // one out
    let r = healthProbed(w, false, s);
    expect(r.verdict).toBe('missed');
    r = healthProbed({ ...r.w, probing: true }, true, s);
    expect(r.verdict).toBe('healthy'); // an answer starts the count again
    r = healthProbed(r.w, false, s);
    r = healthProbed(r.w, false, s);
    expect(r.verdict).toBe('missed');
    r = healthProbed(r.w, false, s);
    expect(r.verdict).toBe('hung');
    expect(r.w.misses).toBe(0);
    expect(DEFAULT_ENGINE_HEALTH.misses).toBeGreaterThan(1);
  });
});

describe('engine health watch (instance manager, virtual clock)', () => {
  const settings = { intervalMs: 2000, deadlineMs: 1000, misses: 3 };
  function watch(answer: () => Promise<boolean>) {
    const clock = new ManualClock(0);
    const kills: number[] = [];
    const engine = {
      state: 'ready' as 'ready' | 'restarting', probes: 0, probeHealth: () => (engine.probes++, answer()),
      killHung: () => void kills.push(clock.now()),
    };
    const hungAt: number[] = [];
    const h = new EngineHealth({ clock, engine, settings, hung: () => void hungAt.push(clock.now()) });
    clock.setInterval(() => h.tick(), h.tickMs);
    return { clock, engine, h, hungAt, kills };
  }

  it('a silent /health (a frozen engine) is hung after 3 probes: within 3 intervals and a deadline; once', async () => {
    const w = watch(() => new Promise<boolean>(() => {}));
    await w.clock.advanceAsync(10_000, 100);
    // probes at 1 s (first tick), 3 s, 5 s; the third's deadline passes at 6 s
    expect(w.hungAt).toEqual([6000]);
    expect(w.kills).toEqual([6000]);
    // killed: restarting, no probes
    w.engine.state = 'restarting';
    const probes = w.engine.probes;
    await w.clock.advanceAsync(10_000, 100);
    expect(w.engine.probes).toBe(probes);
    expect(w.hungAt).toHaveLength(1);
  });

  it('a healthy engine is never hung; one refused probe is not enough', async () => {
    let n = 0;
    const w = watch(() => Promise.resolve(++n % 3 !== 0));
    await w.clock.advanceAsync(60_000, 100);
    expect(w.engine.probes).toBeGreaterThan(20);
    expect(w.hungAt).toEqual([]);
    expect(w.kills).toEqual([]);
  });

  it('tokens flowing skip the probe; a restarted engine starts a new count, and a killed process\'s late answer counts for nothing', async () => {
    let fail = true;
    const w = watch(() => Promise.resolve(!fail));
    // tokens every 500 ms: no probe at all
    const tok = w.clock.setInterval(() => w.h.tokens(), 500);
    await w.clock.advanceAsync(10_000, 100);
    expect(w.engine.probes).toBe(0);
    w.clock.clearInterval(tok);
    // silent from here: two misses, then a restart (a new process): the count starts again
    while (w.engine.probes < 2) await w.clock.advanceAsync(100, 100);
    await w.clock.advanceAsync(100, 100);
    w.h.restarted();
    // the new process answers late for a while: its first two probes fail too, then it answers
    let late = 2;
    w.engine.probeHealth = () => (w.engine.probes++, Promise.resolve(late-- <= 0));
    await w.clock.advanceAsync(30_000, 100);
    expect(w.hungAt).toEqual([]);
    // had the count not started again, the third miss in a row (two before the restart, one after) would be hung
    fail = true;
    const t = w.clock.now();
    w.engine.probeHealth = () => (w.engine.probes++, Promise.resolve(!fail));
    await w.clock.advanceAsync(20_000, 100);
    // (the fake engine is never killed: it is found hung again every 3 probes)
    expect(w.hungAt.length).toBeGreaterThanOrEqual(1);
    expect(w.hungAt[0]! - t).toBeGreaterThanOrEqual(2 * settings.intervalMs);
    expect(w.hungAt[0]! - t).toBeLessThanOrEqual(3 * settings.intervalMs + settings.deadlineMs);
  });
});
