import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor } from '../../src/runtime/actor.ts';
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
