/**
 * A supervisor's children of one group (src/runtime/supervisor.ts; `up` groups a role's managers and a gateway
 * replica's processes), on a virtual clock: a child killed during its start (before it said it was ready: a failed
 * start, src/policy/restart-backoff.ts) backs off while another child of its group is up, but the last one of its group
 * to be killed is restarted after the initial backoff, whatever its failed starts: in `dynamollm chaos --kinds
 * pool,nats` at load 14-45 pool managers were killed 5-10 s into their starts, and both, flapping, waited the 5-s cap
 * before their restarts while neither was up (a new pool leader 25 s after the leader's kill). A process killed at every
 * start (out of memory) is not restarted every initialMs for ever: past twice the flapping threshold it backs off.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, Supervisor, silentLogger } from '../../src/runtime/index.ts';

const idle = (name: string) => ({ name, group: 'pool', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1e9)'], output: 'ignore' as const });

describe('Supervisor groups', () => {
  it('a killed child backs off while its group has another up; the last one up is restarted after initialMs', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({ children: [idle('a'), idle('b')], log: silentLogger(), backoff: { initialMs: 100, maxMs: 1000, factor: 2 }, flapping: { maxRestarts: 2, windowMs: 60_000 }, clock });
    const next = (event: 'spawn' | 'restart', name: string) => new Promise<{ pid?: number; delayMs?: number }>((resolve) => {
      const f = (e: { name: string; pid?: number; delayMs?: number }) => {
        if (e.name !== name) return;
        sup.off(event, f);
        resolve(e);
      };
      sup.on(event, f);
    });
    const up = [next('spawn', 'a'), next('spawn', 'b')];
    await sup.start();
    let [a, b] = (await Promise.all(up)).map((e) => e.pid!);
    try {
      // a killed three times while b is up: 100, 200, then flapping (past 2 restarts in the window): the cap
      const delays: number[] = [];
      for (let i = 0; i < 3; i++) {
        const restart = next('restart', 'a');
        process.kill(a!, 'SIGKILL');
        const { delayMs } = await restart;
        delays.push(delayMs!);
        const spawned = next('spawn', 'a');
        clock.advance(delayMs!);
        a = (await spawned).pid!;
      }
      expect(delays).toEqual([100, 200, 1000]);
      // b killed while a is up: its own backoff (its first: 100); not restarted yet when a is killed again
      const bRestart = next('restart', 'b');
      process.kill(b!, 'SIGKILL');
      expect((await bRestart).delayMs).toBe(100);
      // a killed while b waits: the group has no process up, so no backoff (the cap otherwise: 1000)
      const aRestart = next('restart', 'a');
      process.kill(a!, 'SIGKILL');
      expect((await aRestart).delayMs).toBe(100);
      const both = [next('spawn', 'a'), next('spawn', 'b')];
      clock.advance(100);
      [a, b] = (await Promise.all(both)).map((e) => e.pid!);
      expect(sup.children().map((c) => c.state)).toEqual(['running', 'running']);
    } finally {
      await sup.stop();
    }
  });

  it('the last one up killed at every start: initialMs up to twice the flapping threshold, then the cap', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({ children: [idle('solo')], log: silentLogger(), backoff: { initialMs: 100, maxMs: 1000, factor: 2 }, flapping: { maxRestarts: 2, windowMs: 60_000 }, clock });
    const next = (event: 'spawn' | 'restart') => new Promise<{ pid?: number; delayMs?: number }>((resolve) => sup.once(event, resolve));
    const up = next('spawn');
    await sup.start();
    let pid = (await up).pid!;
    try {
      const delays: number[] = [];
      for (let i = 0; i < 6; i++) {
        const restart = next('restart');
        process.kill(pid, 'SIGKILL');
        const { delayMs } = await restart;
        delays.push(delayMs!);
        const spawned = next('spawn');
        clock.advance(delayMs!);
        pid = (await spawned).pid!;
      }
      expect(delays).toEqual([100, 100, 100, 100, 1000, 1000]);
    } finally {
      await sup.stop();
    }
  });
});
