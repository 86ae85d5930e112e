import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor, STOP_START_WAIT_MS } from '../../src/runtime/actor.ts';
import { BUS_DRAIN_TIMEOUT_MS } from '../../src/runtime/bus.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';

// An actor whose start never finishes (an engine that never gets healthy) must still drain and stop within its
// deadlines when told to (a signal, or its supervisor gone), and end what the start began (onStop).
class HangingStart extends Actor {
  stopped = 0;
  protected override async onStart(): Promise<void> {
    await new Promise<void>(() => {}); // never settles
  }
  protected override async onStop(): Promise<void> {
    this.stopped++;
  }
}

let nats: TestNats;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
});

describe('an actor stopped while its start hangs', () => {
  it('drain() returns within the grace (+ stop wait) and runs onStop; stop() alone within its bounded wait', async () => {
    for (const how of ['drain', 'stop'] as const) {
      const a = new HangingStart({ kind: 'instance', id: `hang-${how}`, servers: nats.url, user: nats.as('instance').user, pass: nats.as('instance').pass, log: silentLogger(), drainGraceMs: 800, drainForceMs: 200 });
      const started = a.start();
      await new Promise((r) => setTimeout(r, 500));
      expect(a.state, how).toBe('starting');
      const t0 = Date.now();
      await (how === 'drain' ? a.drain() : a.stop());
      const took = Date.now() - t0;
      expect(took, how).toBeLessThan(how === 'drain' ? 800 + 2000 + 1500 : 2000 + 1500);
      expect(a.state, how).toBe('stopped');
      expect(a.stopped, how).toBe(1);
      void started.catch(() => {});
    }
  });
});

// A step of the stop that never settles (a clock reset or an engine call that hangs, an onStop waiting on a peer
// that is gone) must not keep the process, and its GPUs, alive: stop() closes anyway past stopHookMs.
class HangingStop extends Actor {
  protected override async onStart(): Promise<void> {}
  protected override async onStop(): Promise<void> {
    await new Promise<void>(() => {}); // never settles
  }
}

// A drain that never settles, whatever the cause: the signal handlers' backstop ends the process.
class HangingDrain extends Actor {
  protected override async onStart(): Promise<void> {}
  override drain(): Promise<void> {
    return new Promise<void>(() => {});
  }
}

describe('an actor whose stop hangs', () => {
  it('stop() returns past stopHookMs with the connection closed, state stopped', async () => {
    const a = new HangingStop({ kind: 'instance', id: 'hang-stop', servers: nats.url, user: nats.as('instance').user, pass: nats.as('instance').pass, log: silentLogger(), stopHookMs: 300 });
    await a.start();
    expect(a.state).toBe('running');
    const t0 = Date.now();
    const done = await Promise.race([a.stop().then(() => 'stopped' as const), new Promise((r) => setTimeout(() => r('hung'), 4000))]);
    expect(done).toBe('stopped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(a.state).toBe('stopped');
  });

  it('a supervised process whose supervisor is gone exits(1) once the shutdown limit passes, even if its drain never settles', async () => {
    const clock = new ManualClock();
    const a = new HangingDrain({ kind: 'instance', id: 'hang-drain', servers: nats.url, log: silentLogger(), clock, drainGraceMs: 1000, drainForceMs: 500, stopHookMs: 700 });
    const exits: number[] = [];
    const saved = { sup: process.env.DYNAMOLLM_SUPERVISED, pid: process.env.DYNAMOLLM_SUPERVISOR_PID };
    process.env.DYNAMOLLM_SUPERVISED = '1';
    process.env.DYNAMOLLM_SUPERVISOR_PID = String(process.ppid + 1_000_000); // not this process's parent: the supervisor is gone
    let dispose: (() => void) | undefined;
    try {
      dispose = a.installSignalHandlers((code) => exits.push(code));
      // the drain's grace and force, a start's wait, onStop, the Bus's drain, and 5 s
      const limit = 1000 + 500 + STOP_START_WAIT_MS + 700 + BUS_DRAIN_TIMEOUT_MS + 5000;
      clock.advance(limit - 1);
      await Promise.resolve();
      expect(exits).toEqual([]);
      clock.advance(1);
      expect(exits).toEqual([1]);
    } finally {
      dispose?.();
      if (saved.sup === undefined) delete process.env.DYNAMOLLM_SUPERVISED;
      else process.env.DYNAMOLLM_SUPERVISED = saved.sup;
      if (saved.pid === undefined) delete process.env.DYNAMOLLM_SUPERVISOR_PID;
      else process.env.DYNAMOLLM_SUPERVISOR_PID = saved.pid;
    }
  });
});
