/**
 * Real actor processes (`node --import tsx test/fixtures/actors/main.ts test-echo`) under a Supervisor on a real nats-server:
 * a SIGKILLed actor is declared dead by its peers, restarted by its supervisor, and rejoins; an orderly
 * stop (SIGTERM) drains in-flight work first.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startNatsServer, REPO_ROOT, type TestNats } from '../helpers/nats.ts';
import { Bus, LivenessTracker, Supervisor, silentLogger, type LivenessEvent } from '../../src/runtime/index.ts';
import { Admission, InferenceRequest, subjects, type InferenceRequest as Req } from '../../protocols/index.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';

let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, name: 'test-peer', ...nats.as('pool'), log: silentLogger() });
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const req = (id: string) => ({ ...(SAMPLES.InferenceRequest as object), id, streamSubject: subjects.stream(id) }) as Req;

function waitFor<T>(em: NodeJS.EventEmitter, event: string, pred: (e: T) => boolean, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      em.off(event, on);
      reject(new Error(`timed out waiting for ${event} (${timeoutMs} ms)`));
    }, timeoutMs);
    const on = (e: T) => {
      if (!pred(e)) return;
      clearTimeout(t);
      em.off(event, on);
      resolve(e);
    };
    em.on(event, on);
  });
}

describe('actor processes under a supervisor', () => {
  it('SIGKILL: declared dead after its missed beats, restarted, rejoins; SIGTERM: drains in-flight work then stops', async () => {
    const { user, pass } = nats.creds('instance');
    const sup = new Supervisor({
      children: [
        {
          name: 'e1',
          command: process.execPath,
          args: ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/actors/main.ts'), 'test-echo', '--id', 'e1', '--nats', nats.url, '--user', user, '--pass', pass,
            '--set', 'heartbeatMs=500', '--set', 'delayMs=600', '--log-level', 'warn'],
          cwd: REPO_ROOT,
          stopGraceMs: 5000,
          restart: 'on-failure',
        },
      ],
      log: silentLogger(),
      // the restart comes after the peers' verdict (3 x 500 ms), so the test sees the death, then the rejoin;
      // a restart faster than the verdict would (rightly) show up only as 'restarted'
      backoff: { initialMs: 3000, maxMs: 3000, factor: 2 },
    });
    // peers watch with the actor's heartbeat period (500 ms) and the default 3 missed beats
    const tracker = new LivenessTracker({ bus, periodMs: 500, missed: 3, kinds: ['instance'] });
    tracker.start();
    try {
      const alive = waitFor<LivenessEvent>(tracker, 'alive', (e) => e.id === 'e1', 45_000);
      await sup.start();
      const first = await alive;
      const a1 = await bus.request(subjects.instanceAdmit('e1'), InferenceRequest, req('a1'), Admission, { timeoutMs: 3000 });
      expect(a1).toMatchObject({ id: 'a1', ok: true, instance: 'e1' });

      // SIGKILL
      const pid1 = sup.children()[0].pid!;
      const dead = waitFor<LivenessEvent>(tracker, 'dead', (e) => e.id === 'e1', 10_000);
      const restarted = waitFor<LivenessEvent>(tracker, 'restarted', (e) => e.id === 'e1', 30_000);
      const tKill = Date.now();
      process.kill(pid1, 'SIGKILL');
      const verdict = await dead;
      const deadAfterMs = Date.now() - tKill;
      // the verdict comes from silence: no earlier than 3 missed periods (3 x 500 ms) after the last beat it
      // saw. How soon after that it comes is the tracker's rule, tested on a virtual clock
      // (test/unit/runtime-core.test.ts); the wall time here depends on the machine's load, so it is only logged.
      expect(Date.now() - verdict.heartbeat.sentMs).toBeGreaterThanOrEqual(3 * 500);
      expect(verdict.heartbeat.sentMs).toBeLessThanOrEqual(tKill);
      const again = await restarted;
      expect(again.heartbeat.startedMs).toBeGreaterThan(first.heartbeat.startedMs);
      expect(tracker.isAlive('instance', 'e1')).toBe(true);
      const ch = sup.children()[0];
      expect(ch.restarts).toBe(1);
      expect(ch.pid).not.toBe(pid1);
      const a2 = await bus.request(subjects.instanceAdmit('e1'), InferenceRequest, req('a2'), Admission, { timeoutMs: 3000 });
      expect(a2.ok).toBe(true);

      // orderly stop while a request is in flight: the actor drains it, announces 'stopped', exits 0
      const exit = waitFor<{ code: number | null }>(sup, 'exit', () => true, 15_000);
      const inflight = bus.request(subjects.instanceAdmit('e1'), InferenceRequest, req('a3'), Admission, { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 100));
      const stoppedBeat = waitFor<LivenessEvent>(tracker, 'dead', (e) => e.id === 'e1' && e.heartbeat.state === 'stopped', 10_000);
      await sup.stop();
      expect((await inflight).ok).toBe(true);
      expect((await exit).code).toBe(0);
      await stoppedBeat;
      expect(sup.children()[0].restarts).toBe(1);
      console.log(`SIGKILLed actor declared dead after ${deadAfterMs} ms (heartbeat 500 ms, 3 missed)`);
    } finally {
      tracker.stop();
      await sup.stop();
    }
  });
});
